"""Where files live: the bucket and the lake as fsspec filesystems (a folder or s3:// with the standard AWS
variables), and how a PostgreSQL table becomes Parquet (its columns and their Arrow types) for the cold tier, the
lake and exports."""

from __future__ import annotations

import os
from typing import Any

import pyarrow as pa
from dlt.common.configuration.specs import AwsCredentials
from dlt.common.storages.fsspec_filesystem import fsspec_filesystem

from common.aws import aws_endpoint, aws_region
from common.settings import Settings


def aws_credentials_from_env() -> AwsCredentials:
    """The standard AWS variables, so the same code runs against AWS and a local endpoint."""
    return AwsCredentials(
        aws_access_key_id=os.environ.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=os.environ.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=os.environ.get("AWS_SESSION_TOKEN"),
        region_name=aws_region(),
        endpoint_url=aws_endpoint("s3"),
    )


def filesystem(url: str) -> Any:
    """The fsspec filesystem of a folder or an s3:// URL (with the AWS variables: keys, region, endpoint)."""
    credentials = aws_credentials_from_env() if url.startswith("s3://") else None
    fs, _ = fsspec_filesystem(url, credentials)
    return fs


def bucket_filesystem(settings: Settings) -> Any:
    """The fsspec filesystem of EVENTS_BUCKET_URL (a folder, or s3:// with the AWS variables)."""
    return filesystem(settings.events_bucket_url)


def table_columns(cursor: Any, schema: str, table: str) -> list[tuple[str, str, int | None, int | None]]:
    """(name, data type, numeric precision, numeric scale) of a table's columns, in order."""
    cursor.execute(
        """
        select column_name, data_type, numeric_precision, numeric_scale
        from information_schema.columns where table_schema = %s and table_name = %s order by ordinal_position
        """,
        (schema, table),
    )
    return cursor.fetchall()


def arrow_type(data_type: str, precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type a PostgreSQL column is archived as (the cold tier's and the lake's Parquet)."""
    if data_type in ("text", "character varying", "jsonb", "json", "uuid"):
        return pa.string()
    if data_type == "timestamp with time zone":
        return pa.timestamp("us", "UTC")
    if data_type == "timestamp without time zone":
        return pa.timestamp("us")
    if data_type == "date":
        return pa.date32()
    if data_type == "boolean":
        return pa.bool_()
    if data_type in ("bigint", "integer", "smallint"):
        return pa.int64()
    if data_type in ("double precision", "real"):
        return pa.float64()
    if data_type == "numeric" and precision is not None:
        return pa.decimal128(precision, scale or 0)
    return pa.string()  # unconstrained numeric and anything else: PostgreSQL's text, which round-trips exactly
