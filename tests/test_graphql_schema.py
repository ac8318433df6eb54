"""The GraphQL schema the dashboards API serves, compared with tests/snapshots/schema.graphql: dashboards and
scripts build queries on it, so a change shows in the diff (UPDATE_SNAPSHOTS=1 rewrites the file)."""

import os
from pathlib import Path

from dashboards.schema import schema

SNAPSHOT = Path(__file__).parent / "snapshots" / "schema.graphql"


def test_graphql_schema_snapshot():
    current = schema.as_str().rstrip("\n") + "\n"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1":
        SNAPSHOT.write_text(current)
    assert current == SNAPSHOT.read_text(), (
        "the GraphQL schema changed; if intended, rerun with UPDATE_SNAPSHOTS=1 and commit the snapshot"
    )
    # the contract the page and the benchmarks rely on
    assert "dropOff: Int!" in current and "dropOffRate: Float" in current
