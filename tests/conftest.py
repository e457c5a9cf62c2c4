"""Shared fixtures: one tiny synthetic AVSBench per test session, copied where a test corrupts it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
