"""The loader's validation workers (ingestion.chunks.ChunkRunner): started from a thread that then ends (the loader
prepares loads in a background thread), they keep working, and the pool shuts down."""

from __future__ import annotations

import operator
import threading

from ingestion.chunks import ChunkRunner


def test_workers_started_by_a_thread_outlive_it_and_the_pool_shuts_down():
    outcome: dict[str, object] = {}

    def from_a_thread(runner: ChunkRunner) -> None:
        outcome["first"] = list(runner.map(operator.add, [(n, 1) for n in range(8)]))

    def run() -> None:
        with ChunkRunner(2) as runner:
            starter = threading.Thread(target=from_a_thread, args=(runner,))
            starter.start()  # the workers are spawned from this thread, which then ends
            starter.join()
            outcome["second"] = list(runner.map(operator.mul, [(n, 2) for n in range(8)]))
        outcome["shut down"] = True

    main = threading.Thread(target=run, daemon=True)
    main.start()
    main.join(timeout=120)
    # with PR_SET_PDEATHSIG the workers died with the thread: the second map broke, or the shutdown never returned
    assert outcome == {"first": list(range(1, 9)), "second": [n * 2 for n in range(8)], "shut down": True}
