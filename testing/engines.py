"""Compare the marts one dbt project builds on PostgreSQL and on Spark (the lake's Parquet tables)."""

from __future__ import annotations

import json
from datetime import UTC
from decimal import Decimal
from typing import Any

import pandas as pd
import psycopg2

from warehouse.lake import read_lake_table

# every model of the marts (schema analytics), as BI tools see them
MARTS = [
    "fct_events",
    "dim_users",
    "fct_sessions",
    "dim_event_properties",
    "daily_metrics",
    "fct_cohort_retention",
    "fct_funnel_steps",
    "fct_funnel_breakdown",
    "fct_mrr",
    "revenue_monthly",
]
# when a row was built (or its traits last changed) differs by engine and by run: not part of the comparison
SKIPPED_COLUMNS = {"_built_at", "_traits_changed_at"}
JSON_COLUMNS = {"properties", "traits", "context"}
FLOAT_TOLERANCE = 1e-9


def read_lake_mart(lake: str, model: str) -> pd.DataFrame:
    """A mart as the lake holds it (hive partition folders become columns; a merge-on-read mart merged)."""
    return read_lake_table(model, lake).to_pandas()


def read_postgres_mart(database_url: str, model: str) -> pd.DataFrame:
    connection = psycopg2.connect(database_url)
    try:
        with connection.cursor() as cursor:
            cursor.execute("set time zone 'UTC'")
            cursor.execute(f"select * from analytics.{model}")
            names = [column.name for column in cursor.description]
            return pd.DataFrame(cursor.fetchall(), columns=names)
    finally:
        connection.close()


def _normal(value: Any, column: str) -> Any:
    """One comparable form per value: numbers as float, timestamps as UTC ISO text, JSON parsed, dates as ISO."""
    if value is None or (isinstance(value, float) and pd.isna(value)) or value is pd.NaT:
        return None
    if column in JSON_COLUMNS or column.endswith("_attributes"):
        return json.loads(value) if isinstance(value, str) else value
    if isinstance(value, bool):
        return value
    if isinstance(value, Decimal | float | int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if hasattr(value, "isoformat"):
        if getattr(value, "tzinfo", None) is not None:
            value = value.astimezone(UTC).replace(tzinfo=None)
        return value.isoformat()
    return value


def _rows(frame: pd.DataFrame, columns: list[str]) -> list[tuple]:
    rows = []
    for record in frame[columns].itertuples(index=False, name=None):
        rows.append(tuple(_normal(value, column) for value, column in zip(record, columns, strict=True)))
    # the sort key rounds floats, so rows equal within the tolerance sort alike
    return sorted(
        rows,
        key=lambda row: json.dumps(
            [round(v, 6) if isinstance(v, float) else v for v in row], sort_keys=True, default=str
        ),
    )


def _same(left: Any, right: Any) -> bool:
    if isinstance(left, float) and isinstance(right, float):
        return abs(left - right) <= FLOAT_TOLERANCE * max(1.0, abs(left), abs(right))
    return left == right


def differences(
    postgres: pd.DataFrame, spark: pd.DataFrame, model: str, limit: int = 5, skipped: set[str] = SKIPPED_COLUMNS
) -> list[str]:
    """What differs between the two builds of one mart (empty when identical row for row), but the columns
    `skipped` (when a row was built; also its load id when the two builds loaded the events separately)."""
    found = []
    pg_columns = [c for c in postgres.columns if c not in skipped]
    spark_columns = [c for c in spark.columns if c not in skipped]
    if sorted(pg_columns) != sorted(spark_columns):
        return [f"{model}: columns differ: postgres {sorted(pg_columns)} vs spark {sorted(spark_columns)}"]
    if len(postgres) != len(spark):
        found.append(f"{model}: {len(postgres)} rows on postgres, {len(spark)} on spark")
    columns = sorted(pg_columns)
    for pg_row, spark_row in zip(_rows(postgres, columns), _rows(spark, columns), strict=False):
        bad = [f"{c}: {a!r} != {b!r}" for c, a, b in zip(columns, pg_row, spark_row, strict=True) if not _same(a, b)]
        if bad:
            found.append(f"{model}: {'; '.join(bad)}")
            if len(found) >= limit:
                break
    return found
