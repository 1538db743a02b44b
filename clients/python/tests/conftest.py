"""Fixtures: a live rasterd server from bin/rasterd.js, an in-process fake RasterService, and the nuPlan adapter."""

from __future__ import annotations

import importlib
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

# Test the sources in this folder, not an installed copy of rasterd_client.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rasterd_client  # noqa: E402
from rasterd_client import RasterClient, RasterdUnavailableError  # noqa: E402

import fake_nuplan  # noqa: E402
from fake_server import FakeRasterService, start_fake_server  # noqa: E402
from fixture_data import RASTERD_BIN, REPO_ROOT, maps_root  # noqa: E402

SERVER_START_TIMEOUT_S = 60.0
ADAPTER_MODULE = "rasterd_client.nuplan"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class LiveServer:
    """A rasterd server process that this test session started."""

    target: str
    process: subprocess.Popen
    log_path: Path

    def log_tail(self, max_chars: int = 4000) -> str:
        """Return the end of the server's stdout and stderr."""
        return self.log_path.read_text(encoding="utf-8", errors="replace")[-max_chars:]


@pytest.fixture(scope="session")
def live_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Start `node bin/rasterd.js serve` on a free port of 127.0.0.1 and wait until it is ready.

    Skips when the server is not built or node or the maps are missing, and fails
    when the server exits or is not ready within SERVER_START_TIMEOUT_S.
    """
    if not RASTERD_BIN.is_file():
        pytest.skip(f"rasterd server not built: {RASTERD_BIN} is missing")
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not on PATH, so the rasterd server cannot start")
    maps = maps_root()
    if maps is None:
        pytest.skip("no maps root with nuplan-maps-v1.0.json; set RASTERD_TEST_MAPS_ROOT")

    port = free_port()
    target = f"127.0.0.1:{port}"
    log_path = tmp_path_factory.mktemp("rasterd") / "server.log"
    command = [node, str(RASTERD_BIN), "serve", "--host", "127.0.0.1", "--port", str(port), "--maps-root", str(maps)]
    with open(log_path, "wb") as log:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT)
    server = LiveServer(target, process, log_path)

    try:
        _wait_for_server(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _wait_for_server(server: LiveServer) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT_S
    with RasterClient(server.target, timeout=5.0, retry_attempts=1) as client:
        while True:
            exit_code = server.process.poll()
            if exit_code is not None:
                pytest.fail(f"rasterd server exited with code {exit_code} before it was ready:\n{server.log_tail()}")
            try:
                client.wait_until_ready(timeout=1.0, poll_interval=0.1)
                return
            except RasterdUnavailableError as error:
                if time.monotonic() > deadline:
                    pytest.fail(
                        f"rasterd server on {server.target} not ready after {SERVER_START_TIMEOUT_S} s: {error}\n"
                        f"{server.log_tail()}"
                    )


@pytest.fixture
def live_client(live_server: LiveServer) -> Iterator[RasterClient]:
    """A RasterClient for the live server, with a 30 s deadline per call."""
    with RasterClient(live_server.target, timeout=30.0) as client:
        yield client


@pytest.fixture
def fake_service() -> Iterator[FakeRasterService]:
    """An in-process RasterService on a free port of 127.0.0.1; `.target` is its address."""
    service, server = start_fake_server()
    try:
        yield service
    finally:
        server.stop(grace=None)


def forget_adapter_module() -> None:
    """Drop rasterd_client.nuplan from sys.modules so that the next import runs it again."""
    sys.modules.pop(ADAPTER_MODULE, None)
    if hasattr(rasterd_client, "nuplan"):
        delattr(rasterd_client, "nuplan")


@pytest.fixture
def nuplan_adapter(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """rasterd_client.nuplan imported against the fake `nuplan.*` modules, which are removed afterwards."""
    fake_nuplan.install(monkeypatch)
    forget_adapter_module()
    try:
        yield importlib.import_module(ADAPTER_MODULE)
    finally:
        forget_adapter_module()
