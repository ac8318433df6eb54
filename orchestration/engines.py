"""Where the marts are built (the engine) and how Dagster runs a job's steps (the executor), both from the
environment, read when the definitions are built.

ANALYTICSPRO_ENGINE   postgres (default): dbt's `dev` target, the marts in PostgreSQL.
                      spark: the lake is synced from raw.events (warehouse/lake.py), then the same dbt models build
                      on a `spark` target (DBT_SPARK_TARGET: spark = a local pyspark session, spark_thrift,
                      spark_http) into <EVENTS_LAKE_URL>/marts/<model>/.
DAGSTER_EXECUTOR      multiprocess (default): each step in its own process on this machine.
                      in_process: every step in the run's process (fastest to start; what the tests use).
                      celery: steps go to Celery workers (`analyticspro worker`, on any machine that shares the
                      Dagster instance, DAGSTER_PG_URL) through CELERY_BROKER_URL (default: REDIS_URL).
                      k8s: each step a Kubernetes Job (dagster-k8s; deploy/helm/values.yaml).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import dagster as dg

from common.settings import DEFAULT_STATE_DIR, PROJECT_ROOT, get_settings
from warehouse.lake import lake_url

ENGINES = ("postgres", "spark")
EXECUTORS = ("multiprocess", "in_process", "celery", "k8s")
SPARK_TARGETS = ("spark", "spark_thrift", "spark_http")
DEFAULT_CELERY_QUEUE = "analyticspro"


class EngineError(ValueError):
    """A setting or an installation the chosen engine or executor needs is missing."""


def current_engine() -> str:
    engine = (os.environ.get("ANALYTICSPRO_ENGINE") or "postgres").strip().lower()
    if engine not in ENGINES:
        raise EngineError(f"ANALYTICSPRO_ENGINE={engine!r} is not one of {', '.join(ENGINES)}: set one of them")
    return engine


def dbt_target(engine: str | None = None) -> str:
    """The dbt target (profiles.yml) the marts build on."""
    if (engine or current_engine()) == "postgres":
        return os.environ.get("DBT_TARGET") or "dev"
    target = os.environ.get("DBT_SPARK_TARGET") or "spark"
    if target not in SPARK_TARGETS:
        raise EngineError(f"DBT_SPARK_TARGET={target!r} is not one of {', '.join(SPARK_TARGETS)} (profiles.yml)")
    return target


def spark_environment() -> dict[str, str]:
    """The environment dbt's spark targets read: the lake's URL (absolute), the local metastore, the log config."""
    metastore = str(Path(os.environ.get("SPARK_METASTORE_DIR") or DEFAULT_STATE_DIR / "spark").resolve())
    return {
        "EVENTS_LAKE_URL": lake_url(),
        "SPARK_METASTORE_DIR": metastore,
        "ANALYTICSPRO_SPARK_LOG4J": str(PROJECT_ROOT / "dbt_project" / "log4j2.properties"),
    }


def check_spark_installed() -> None:
    """A clear error now rather than a Java stack trace in the middle of a build."""
    if (os.environ.get("DBT_SPARK_TARGET") or "spark") != "spark":
        return  # a cluster: nothing local to check
    try:
        # optional dependencies: the `spark` extra
        import pyspark  # noqa: F401
        from dbt.adapters import spark  # noqa: F401
    except ImportError:
        raise EngineError(
            "the spark engine needs pyspark and dbt-spark, the `spark` extra: run `uv sync --extra spark` "
            "(or `make test`, which installs it), or `pip install 'analyticspro[spark]'`"
        ) from None
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise EngineError(
            "the spark engine runs Spark in this process and needs Java 17 or later: install it "
            "(Debian/Ubuntu: sudo apt-get install openjdk-17-jre-headless) or set JAVA_HOME"
        )


def current_executor() -> str:
    name = (os.environ.get("DAGSTER_EXECUTOR") or "multiprocess").strip().lower()
    if name not in EXECUTORS:
        raise EngineError(f"DAGSTER_EXECUTOR={name!r} is not one of {', '.join(EXECUTORS)}: set one of them")
    return name


def celery_config() -> dict[str, Any]:
    """The celery executor's config: the broker and result backend (Redis by default) and the queue."""
    broker = os.environ.get("CELERY_BROKER_URL") or get_settings().redis_url
    return {
        "broker": broker,
        "backend": os.environ.get("CELERY_RESULT_BACKEND") or broker,
        "config_source": {
            "task_default_queue": os.environ.get("DAGSTER_CELERY_QUEUE") or DEFAULT_CELERY_QUEUE,
            # results are read once by the run and then deleted; never kept for a day
            "result_expires": 3600,
        },
    }


def pipeline_executor() -> Any:
    """The Dagster executor of the marts job, by DAGSTER_EXECUTOR."""
    name = current_executor()
    if name == "in_process":
        return dg.in_process_executor
    if name == "multiprocess":
        limit = os.environ.get("DAGSTER_MAX_CONCURRENT_STEPS")
        if not limit:
            return dg.multiprocess_executor
        return dg.multiprocess_executor.configured({"max_concurrent": int(limit)}, name="multiprocess_executor")
    if name == "celery":
        try:
            from dagster_celery import celery_executor  # optional: the `celery` extra
        except ImportError:
            raise EngineError(
                "DAGSTER_EXECUTOR=celery needs dagster-celery, the `celery` extra: run `uv sync --extra celery` "
                "or `pip install 'analyticspro[celery]'`"
            ) from None
        return celery_executor.configured(celery_config(), name="celery_executor")
    try:
        from dagster_k8s import k8s_job_executor  # optional: the `k8s` extra
    except ImportError:
        raise EngineError(
            "DAGSTER_EXECUTOR=k8s needs dagster-k8s, the `k8s` extra: run `uv sync --extra k8s` or "
            "`pip install 'analyticspro[k8s]'` (the image deploy/Dockerfile builds has it)"
        ) from None
    return k8s_job_executor


def use_engine(engine: str) -> None:
    """Select the engine the marts build on for this process and the processes it starts (ANALYTICSPRO_ENGINE)."""
    if engine not in ENGINES:
        raise ValueError(f"--engine {engine!r} is not one of {', '.join(ENGINES)}")
    os.environ["ANALYTICSPRO_ENGINE"] = engine
    if engine == "spark":
        check_spark_installed()
        os.environ.update(spark_environment())
