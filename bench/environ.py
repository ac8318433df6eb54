"""Benchmarks point this process at databases and buckets of their own, then put the environment back."""

from __future__ import annotations

import os


def set_environ(values: dict[str, str]) -> dict[str, str | None]:
    """Set `values` in os.environ; returns what they replaced, for restore_environ."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    return saved


def restore_environ(saved: dict[str, str | None]) -> None:
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
