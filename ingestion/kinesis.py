"""The Kinesis source: every shard of a stream (`KINESIS_STREAM_NAME`, or `analyticspro load kinesis://STREAM`).

It prepares loads for the one dlt source (ingestion/pipeline.py), with boto3; the AWS endpoint, region and
credentials come from the standard AWS variables
(`AWS_ENDPOINT_URL` included), so the same code reads a real stream and a local one.

- Every shard the stream lists is read, closed parents after a reshard included; a child shard is read only
  once its parents are finished, so a reshard keeps each key's order.
- Each shard's last sequence number is kept in dlt state, which dlt commits in the same load package as the
  rows. A killed run therefore resumes exactly where the last committed load ended: a load that was
  extracted but not loaded is finished first (with its state), a load that was not extracted is read again.
- A record may hold one event, a JSON array of events or newline-delimited events, optionally gzipped; the
  record's arrival time stands in for a missing `receivedAt`. Bad events go to `raw.rejected_events` with
  `shard <id> seq <sequence number>` (and the item or line inside the record) as their position.
- Throttling (`ProvisionedThroughputExceededException`, `LimitExceededException`) is retried with
  exponential backoff and jitter.
"""

from __future__ import annotations

import copy
import random
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from common.aws import aws_endpoint, aws_region
from ingestion.batches import PreparedLoad
from ingestion.chunks import ChunkRunner, process_records
from ingestion.validation import DEFAULT_OPTIONS, Options

THROTTLED = {"ProvisionedThroughputExceededException", "LimitExceededException", "ThrottlingException"}
RECORDS_PER_JOB = 1000
GET_RECORDS_LIMIT = 10000


class StreamNotFound(ValueError):
    """The stream does not exist (or these credentials cannot see it)."""


def kinesis_client() -> Any:
    endpoint = aws_endpoint("kinesis")
    # our own backoff handles throttling (below); botocore keeps its defaults for network errors
    return boto3.client(
        "kinesis", region_name=aws_region(), endpoint_url=endpoint, config=Config(retries={"mode": "standard"})
    )


def call_with_backoff(
    fn: Callable[..., dict],
    *,
    attempts: int = 8,
    base_delay: float = 0.2,
    sleep: Callable[[float], None] = time.sleep,
    **kwargs: Any,
) -> dict:
    """Call a Kinesis API, retrying throttling errors with exponential backoff and full jitter."""
    for attempt in range(attempts):
        try:
            return fn(**kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code not in THROTTLED or attempt == attempts - 1:
                raise
            sleep(random.uniform(0, base_delay * 2**attempt))
    raise AssertionError("unreachable")


def list_shards(client: Any, stream: str) -> list[dict]:
    shards: list[dict] = []
    kwargs: dict[str, Any] = {"StreamName": stream}
    try:
        while True:
            page = call_with_backoff(client.list_shards, **kwargs)
            shards.extend(page["Shards"])
            if not page.get("NextToken"):
                return shards
            kwargs = {"NextToken": page["NextToken"]}
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            raise StreamNotFound(
                f"Kinesis stream {stream!r} was not found in {aws_region()}: check KINESIS_STREAM_NAME (or the "
                f"kinesis://STREAM argument), AWS_REGION and, for a local endpoint, AWS_ENDPOINT_URL"
            ) from None
        raise


def read_order(shards: list[dict], finished: set[str]) -> list[dict]:
    """Shards to read now, parents before children: a shard waits until every parent that still exists is
    finished (read to its end), so the records of one partition key keep their order across a reshard."""
    known = {shard["ShardId"] for shard in shards}
    ready: list[dict] = []
    done = set(finished)
    remaining = [shard for shard in shards if shard["ShardId"] not in done]
    progress = True
    while remaining and progress:
        progress = False
        for shard in list(remaining):
            parents = [shard.get("ParentShardId"), shard.get("AdjacentParentShardId")]
            if all(p is None or p not in known or p in done for p in parents):
                ready.append(shard)
                remaining.remove(shard)
                # a closed shard becomes finished while it is read; its children follow in this same pass
                if shard.get("SequenceNumberRange", {}).get("EndingSequenceNumber"):
                    done.add(shard["ShardId"])
                progress = True
    return ready


def shard_iterator(client: Any, stream: str, shard: dict, position: dict) -> str | None:
    """An iterator just after the shard's saved position, or at its oldest record when there is none."""
    kwargs: dict[str, Any] = {"StreamName": stream, "ShardId": shard["ShardId"]}
    if position.get("sequence_number"):
        kwargs.update(ShardIteratorType="AFTER_SEQUENCE_NUMBER", StartingSequenceNumber=position["sequence_number"])
    else:
        kwargs.update(ShardIteratorType="TRIM_HORIZON")
    return call_with_backoff(client.get_shard_iterator, **kwargs)["ShardIterator"]


def _shard_records(
    client: Any, stream: str, shard: dict, position: dict, budget: Callable[[], bool]
) -> Iterator[list[dict]]:
    """Pages of records of one shard after the saved position, until caught up (open shard) or the end
    (closed shard, then position["finished"] is set) or the load's budget is spent."""
    iterator = shard_iterator(client, stream, shard, position)
    while iterator and budget():
        page = call_with_backoff(client.get_records, ShardIterator=iterator, Limit=GET_RECORDS_LIMIT)
        records = page.get("Records", [])
        if records:
            yield records
        iterator = page.get("NextShardIterator")
        if iterator is None:
            position["finished"] = True  # a closed shard, read to its end
            return
        if not records and page.get("MillisBehindLatest", 0) == 0:
            return  # caught up with an open shard


def has_new_records(stream: str, positions: dict[str, Any], client: Any = None) -> bool:
    """True when some shard holds a record after its committed position (a sensor's probe: one GetShardIterator
    and at most a few GetRecords of one record per unfinished shard)."""
    client = client or kinesis_client()
    for shard in list_shards(client, stream):
        position = positions.get(shard["ShardId"], {})
        if position.get("finished"):
            continue
        iterator = shard_iterator(client, stream, shard, position)
        for _ in range(5):  # an empty page can precede records (trimmed or sparse shard); look a little further
            if iterator is None:
                break
            page = call_with_backoff(client.get_records, ShardIterator=iterator, Limit=1)
            if page.get("Records"):
                return True
            if page.get("MillisBehindLatest", 0) == 0:
                break
            iterator = page.get("NextShardIterator")
    return False


def prepare_kinesis_loads(
    stream: str,
    positions: dict[str, dict],
    options: Options = DEFAULT_OPTIONS,
    runner: ChunkRunner | None = None,
    max_lines: int | None = None,
) -> Iterator[PreparedLoad]:
    """Loads of every shard's records after `positions` (the committed ones, updated as records are handed
    over), each of about `max_lines` lines, until every shard is caught up. Each load carries a copy of the
    positions after it, which dlt commits together with the load's rows."""
    runner = runner or ChunkRunner(1)
    client = kinesis_client()
    source = f"kinesis://{stream}"
    while True:
        shards = list_shards(client, stream)
        finished = {shard_id for shard_id, pos in positions.items() if pos.get("finished")}
        load = PreparedLoad()

        def budget(load: PreparedLoad = load) -> bool:
            return max_lines is None or load.counts.lines_read < max_lines

        def jobs(shards: list[dict] = shards, finished: set[str] = finished) -> Iterator[tuple[Any, ...]]:
            for shard in read_order(shards, finished):
                if not budget():
                    return
                shard_id = shard["ShardId"]
                position = positions.setdefault(shard_id, {})
                for page in _shard_records(client, stream, shard, position, budget):
                    for start in range(0, len(page), RECORDS_PER_JOB):
                        if not budget():  # the rest of the page is read again by the next load
                            return
                        part = page[start : start + RECORDS_PER_JOB]
                        records = [
                            (f"shard {shard_id} seq {r['SequenceNumber']}", r["Data"], _arrival(r)) for r in part
                        ]
                        # the position moves when the job is handed over; it is committed only with the load
                        position["sequence_number"] = part[-1]["SequenceNumber"]
                        yield records, source, options

        for result in runner.map(process_records, jobs()):
            load.add(result.events, result.message_ids, result.rejected, result.counts)
        load.close()
        load.positions = copy.deepcopy(positions)
        yield load
        if not budget():
            continue  # more to read
        return


def _arrival(record: dict) -> datetime | None:
    arrival = record.get("ApproximateArrivalTimestamp")
    if isinstance(arrival, datetime):
        return arrival if arrival.tzinfo else arrival.replace(tzinfo=UTC)
    return None
