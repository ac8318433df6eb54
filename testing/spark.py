"""Spark in a test's own process: dbt builds on the `spark` target through dbtRunner, one JVM for a sequence of them
(imports pyspark: the `spark` extra)."""

from __future__ import annotations

from pathlib import Path

from dbt.cli.main import dbtRunner
from pyspark import SparkContext
from pyspark.sql import SparkSession

from testing.dbt import dbt_paths


def dbt_in_process(root: Path, *args: str) -> None:
    """`dbt <args>` in this process (dbtRunner), for a test's sequence of builds on the `spark` target: the Spark
    session's JVM starts once and its compiled code stays warm from one build to the next, where a `dbt` process per
    build starts a JVM each time (about a third of a small incremental Spark build). After each build the session is
    put back to what a new process starts from (reset_spark_session()); stop_spark() ends the JVM."""
    try:
        result = dbtRunner().invoke([*args, *dbt_paths(root)])
    finally:
        reset_spark_session()
    failed = [
        f"{node.node.unique_id}: {node.message}"
        for node in getattr(result.result, "results", None) or []
        if str(node.status) in ("error", "fail")  # RunStatus.Error, TestStatus.Fail
    ]
    assert result.success, f"dbt {' '.join(args)} failed: {result.exception or ''} {failed}"


def reset_spark_session() -> None:
    """The running Spark session (if any) as a new process finds it: no temporary views, nothing cached, and every
    table's file listing read again (the loader, the lake sync and `analyticspro forget` write the lake's files outside
    Spark)."""
    if SparkContext._active_spark_context is None:
        return
    session = SparkSession.builder.getOrCreate()
    session.catalog.clearCache()
    for database in session.catalog.listDatabases():
        for table in session.catalog.listTables(database.name):
            if table.tableType != "VIEW" and not table.isTemporary:
                session.catalog.refreshTable(f"{database.name}.{table.name}")
    for table in session.catalog.listTables():
        if table.isTemporary:
            session.catalog.dropTempView(table.name)


def stop_spark() -> None:
    """End this process's Spark session and its JVM (stopping the session alone keeps the JVM, idle but collecting
    garbage, until the process exits): its memory and CPU back for the next tests."""
    if SparkContext._active_spark_context is not None:
        SparkSession.builder.getOrCreate().stop()
    gateway = SparkContext._gateway
    if gateway is not None:
        gateway.shutdown()
        gateway.proc.kill()
        gateway.proc.wait()
        SparkContext._gateway = SparkContext._jvm = None
