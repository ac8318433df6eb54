"""`analyticspro query SPEC`: one insights question, answered exactly, printed as JSON on standard output."""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime

from common.db import ensure_database
from common.settings import get_settings, insight_max_days
from insights.engine import Engine, StoreMissing
from insights.spec import load_spec
from insights.store import sync_store


def _note(message: str) -> None:
    """Progress on standard error: standard output is the answer, for scripts to read."""
    print(f"[analyticspro {datetime.now().strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def cmd_query(args: argparse.Namespace) -> int:
    if args.spec == "-":
        text = sys.stdin.read()
    else:
        try:
            with open(args.spec, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as error:
            raise ValueError(
                f"cannot read the spec {args.spec!r}: {error.strerror}; give a JSON file or - for stdin"
            ) from None
    spec = load_spec(text, insight_max_days())
    settings = get_settings()
    if not args.no_refresh:
        ensure_database(settings)
        result = sync_store(settings, say=_note)
        if result.days_written or result.days_removed or result.no_events_table:
            _note(result.describe())
    try:
        if args.engine == "spark":
            try:
                from insights.spark import SparkEngine  # pyspark and a JVM: only when asked for
            except ImportError as error:
                raise ValueError(str(error)) from None

            _note("insights: starting Spark and reading the columnar copy")
            engine: Engine | SparkEngine = SparkEngine()
            engine.refresh()
        else:
            engine = Engine()
            engine.refresh(say=_note)
    except StoreMissing as error:
        raise ValueError(str(error)) from None
    answer = engine.run(spec)
    try:
        json.dump(answer, sys.stdout, indent=2 if args.pretty else None)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # the reader stopped early (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0
