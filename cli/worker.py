"""`analyticspro worker`: a Celery worker for the steps of runs started with DAGSTER_EXECUTOR=celery."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import yaml

from common.console import say
from common.settings import redact_url
from orchestration.engines import EngineError, celery_config, use_engine
from orchestration.instance import prepare_dagster_home


def cmd_worker(args: argparse.Namespace) -> int:
    """A Celery worker that runs the steps of Dagster runs started with DAGSTER_EXECUTOR=celery. The process becomes
    `celery worker` (exec), so a stop signal reaches Celery itself (warm shutdown: running steps finish)."""
    try:  # optional dependency: the `celery` extra
        from dagster_celery.cli import get_config_dir, get_worker_name
    except ImportError:
        raise EngineError(
            "`analyticspro worker` needs dagster-celery, the `celery` extra: run `uv sync --extra celery` "
            "or `pip install 'analyticspro[celery]'`"
        ) from None
    prepare_dagster_home()  # the worker reads and writes the runs' events in the same Dagster instance
    if args.engine:
        use_engine(args.engine)
    config = celery_config()
    queue = config["config_source"]["task_default_queue"]
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as handle:
        yaml.safe_dump({"execution": {"config": config}}, handle)
        handle.flush()
        config_dir = get_config_dir(handle.name)  # a module with the broker settings, on the worker's PYTHONPATH
    celery = Path(sys.executable).parent / "celery"
    argv = [
        str(celery),
        "-A",
        "orchestration.celery_app",
        "worker",
        "--prefetch-multiplier=1",
        f"--concurrency={args.concurrency}",
        "--loglevel",
        args.log_level,
        "-Q",
        queue,
        "-n",
        get_worker_name(args.name),
    ]
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (config_dir, env.get("PYTHONPATH")) if p)
    say(f"Celery worker on queue {queue!r}, broker {redact_url(config['broker'])}, {args.concurrency} step(s) at once")
    sys.stdout.flush()
    os.execve(str(celery), argv, env)
    return 0  # not reached
