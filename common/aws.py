"""AWS from the standard variables (AWS_REGION / AWS_DEFAULT_REGION, AWS_ENDPOINT_URL[_<SERVICE>]), so the same code
runs against AWS and a local endpoint. No dlt here: the collector and the SDK import it."""

from __future__ import annotations

import os


def aws_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


def aws_endpoint(service: str) -> str | None:
    """AWS_ENDPOINT_URL_<SERVICE> (e.g. _S3, _KINESIS), else AWS_ENDPOINT_URL, else None (AWS itself)."""
    return os.environ.get(f"AWS_ENDPOINT_URL_{service.upper()}") or os.environ.get("AWS_ENDPOINT_URL")
