"""The insights engine inside the dashboards service: one Engine per process, loaded on the first question and
refreshed before each one (reading the copy's manifest costs microseconds; a changed day is loaded in the background
of that question). Questions run in threads: DuckDB works outside the event loop and several run side by side."""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from common.settings import Settings
from dashboards.insight import InsightError
from insights.engine import Engine, StoreMissing
from insights.spec import Spec
from insights.store import store_dir

log = logging.getLogger("analyticspro.dashboards")


class Questions:
    def __init__(self, settings: Settings, timeout_ms: int) -> None:
        self.folder = store_dir(settings)
        self.timeout_seconds = timeout_ms / 1000
        self._engine: Engine | None = None
        self._creating = threading.Lock()

    def _engine_now(self) -> Engine:
        with self._creating:
            if self._engine is None:
                self._engine = Engine(self.folder)
            return self._engine

    def warm_up(self) -> None:
        """Load the engine in a background thread, if there is a copy to load; a question asked meanwhile waits
        for the load (the engine's refresh lock), never sees half of it."""

        def load() -> None:
            try:
                self._engine_now().refresh()
            except StoreMissing:
                log.info("insights: no columnar copy yet (`analyticspro materialize` writes it); loaded at first use")
            except Exception:  # the first question will report it
                log.exception("insights: loading the columnar copy failed")

        threading.Thread(target=load, name="insights-warm-up", daemon=True).start()

    def _ready(self) -> Engine:
        """The engine with the copy's latest days loaded; InsightError when there is no copy yet."""
        engine = self._engine_now()
        try:
            engine.refresh()
        except StoreMissing as error:
            raise InsightError(str(error)) from None
        return engine

    def _answer(self, spec: Spec) -> dict[str, Any]:
        return self._ready().run(spec, timeout_seconds=self.timeout_seconds)

    def _check(self, spec: Spec) -> None:
        self._ready().check(spec)

    async def check(self, spec: Spec) -> None:
        """SpecError when `spec` names an event or property the engine does not know (nothing is run)."""
        await asyncio.to_thread(self._check, spec)

    async def ask(self, spec: Spec) -> dict[str, Any]:
        """The engine's answer to `spec`; InsightError when there is nothing to answer from yet."""
        return await asyncio.to_thread(self._answer, spec)
