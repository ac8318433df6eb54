"""Start `analyticspro dashboard` / `collector` (and, for the Redis-outage test, a redis-server of its own) as real
processes."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def analyticspro_process(command: list[str], env: dict[str, str], log: Path, what: str) -> Iterator[str]:
    """`analyticspro <command>` (a service taking --port) on a free port; yields its base URL once /health answers."""
    port = free_port()
    argv = [str(Path(sys.executable).parent / "analyticspro"), *command, "--port", str(port)]
    with log.open("ab") as handle:
        process = subprocess.Popen(argv, env={**os.environ, **env}, stdout=handle, stderr=subprocess.STDOUT, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise AssertionError(f"the {what} exited with {process.returncode}:\n{log.read_text()[-4000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code in (200, 503):
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"the {what} did not start:\n{log.read_text()[-4000:]}")
            time.sleep(0.2)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def dashboard_process(env: dict[str, str], log: Path, workers: int = 1) -> Iterator[str]:
    """The dashboards service on a free port; yields its base URL once /health answers."""
    command = ["dashboard", "--no-access-log", "--log-level", "WARNING", "--workers", str(workers)]
    with analyticspro_process(command, env, log, "dashboard") as url:
        yield url


@contextmanager
def collector_process(env: dict[str, str], log: Path, workers: int = 1) -> Iterator[str]:
    """The collector on a free port; yields its base URL once /health answers."""
    with analyticspro_process(["collector", "--workers", str(workers)], env, log, "collector") as url:
        yield url


class RedisServer:
    """A redis-server of the test's own, so it can be stopped and started without touching the shared one."""

    def __init__(self, workdir: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise AssertionError("redis-server is not installed: run scripts/ensure-services.sh")
        self.binary = binary
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.workdir),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
            self.process = None
