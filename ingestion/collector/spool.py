"""The local spool: where accepted events wait, durably, while the sink is down (`COLLECTOR_SPOOL_DIR`) — and, in
buffer mode (`COLLECTOR_BUFFER_SECONDS`), every accepted batch until it is shipped in a larger object.

Each batch the sink refused becomes one file, `<time>-<name>.jsonl.gz`, written to a temporary name, fsynced,
renamed and its folder fsynced before the requests it holds are answered 200. The collector drains the spool
oldest first when the sink answers again, under the same batch name, so a batch drained twice (a crash between
the sink's write and the file's removal) overwrites itself in a folder or bucket and merges on message id when
loaded from Kinesis. Several worker processes (and several collectors on one disk) share a spool: a file is taken
with an exclusive `flock` while it is drained, so no two drain it at once.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from ingestion.collector.sinks import Sink, SinkError, batch_name, gzip_lines

SUFFIX = ".jsonl.gz"


@dataclass(frozen=True)
class SpoolStats:
    files: int
    bytes: int


class Spool:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def write(self, lines: Sequence[bytes], name: str, received: datetime) -> Path:
        """Keep the lines durably; raise OSError when even the local disk cannot take them."""
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / f"{received.astimezone(UTC):%Y%m%dT%H%M%S%f}--{name}{SUFFIX}"
        partial = target.with_name(f".{target.name}.part")
        with open(partial, "wb") as handle:
            handle.write(gzip_lines(lines))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(partial, target)
        descriptor = os.open(self.folder, os.O_RDONLY)
        try:
            os.fsync(descriptor)
        finally:
            os.close(descriptor)
        return target

    def files(self) -> list[Path]:
        """Spooled batches, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(path for path in self.folder.iterdir() if path.name.endswith(SUFFIX) and path.name[0] != ".")

    def stats(self) -> SpoolStats:
        files = self.files()
        size = 0
        for path in files:
            with contextlib.suppress(FileNotFoundError):  # drained meanwhile
                size += path.stat().st_size
        return SpoolStats(len(files), size)

    def drain(self, sink: Sink, merge: bool = False, max_lines: int = 200_000) -> int:
        """Write spooled batches to the sink, oldest first, removing the files once written: one object per spooled
        batch, or with `merge` (buffer mode) as few objects as possible of up to `max_lines` events. An object is
        named after its oldest batch, so a drain repeated after a crash overwrites it. Stops at the first write the
        sink refuses (a partial write keeps what is left as a new file) and raises its SinkError. Returns the
        number of events drained."""
        drained = 0
        while True:
            with contextlib.ExitStack() as stack:
                taken: list[tuple[Path, list[bytes]]] = []
                total = 0
                for path in self.files():
                    if taken and (not merge or total >= max_lines):
                        break
                    if not stack.enter_context(_claimed(path)):
                        continue
                    lines = _lines(path)
                    taken.append((path, lines))
                    total += len(lines)
                if not taken:
                    return drained
                name, received = _parse_name(taken[0][0])
                batch = [line for _, lines in taken for line in lines]
                try:
                    sink.write(batch, name, received)
                except SinkError as exc:
                    if len(exc.remaining) < len(batch):  # a partial write (Kinesis): keep only what is left
                        self.write(exc.remaining, batch_name(received), received)  # a new, unique file
                        for path, _ in taken:
                            path.unlink()
                        drained += len(batch) - len(exc.remaining)
                    raise
                for path, _ in taken:
                    path.unlink()
                drained += len(batch)


def _parse_name(path: Path) -> tuple[str, datetime]:
    """(batch name, time received) of a spooled file `<time>--<name>.jsonl.gz`."""
    stamp, _, rest = path.name.partition("--")
    return rest.removesuffix(SUFFIX), datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)


def _lines(path: Path) -> list[bytes]:
    return [line for line in gzip.decompress(path.read_bytes()).split(b"\n") if line]


@contextmanager
def _claimed(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking lock on a spooled file; False when another process holds it or it is gone."""
    try:
        handle = open(path, "rb")  # noqa: SIM115 - held for the duration of the drain
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield path.exists()  # drained and removed by another process between listing and locking
    finally:
        handle.close()
