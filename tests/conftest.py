"""Shared fixtures: one tiny synthetic AVSBench per test session, copied where a test corrupts it."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from components.common import free_ports
from components.synth.generate import generate, resolve_config


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine tiny synthetic AVSBench (seed 0). Never modify it; use `tiny_copy`."""
    out = tmp_path_factory.mktemp("synth") / "avsbench"
    generate(out, resolve_config("tiny"), seed=0)
    return out


@pytest.fixture
def tiny_copy(tiny_data: Path, tmp_path: Path) -> Path:
    """A private copy of the tiny synthetic AVSBench that a test may corrupt."""
    dst = tmp_path / "avsbench"
    shutil.copytree(tiny_data, dst)
    return dst


@contextmanager
def moto_s3_server(env: dict[str, str] | None = None) -> Iterator[str]:
    """A moto S3 server on a free loopback port; yields its endpoint URL, stops it on exit."""
    port = free_ports(1)[0]
    server = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "moto server did not start"
                time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(timeout=10)
