"""The Segment-compatible HTTP collector (`analyticspro collector`): app.py (the ASGI service), sinks.py (folder,
S3, Kinesis), spool.py (while the sink is down), writer.py (group commit), openapi.py, config.py (env vars)."""
