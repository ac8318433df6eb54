"""The insights engine: ad-hoc product questions (funnels, trends, retention, paths, stickiness, lifecycle) answered
exactly, in under a second, over every event.

    spec.py      a question as JSON -> typed, validated spec (errors name the field)
    store.py     the columnar copy: analytics.fct_events (and archived days) as sorted Parquet, one file per day
    engine.py    an in-memory DuckDB holding that copy, refreshed day by day; runs a spec
    filters.py   event/person conditions as bound SQL (identifiers never come from the request)
    funnels.py, trends.py, retention.py, paths.py, people.py (stickiness, lifecycle): one kind each

PostgreSQL stays the system of record; the copy is derived, can be deleted at any time and is rebuilt from it.
"""
