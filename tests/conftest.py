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
def _torch_threads(threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="module")
def one_thread() -> Iterator[None]:
    """One CPU thread for a module (`pytestmark = pytest.mark.usefixtures("one_thread")`): on a shared 2-core
    machine, two spinning OpenMP threads per process run ten times slower."""
    with _torch_threads(1):
        yield


# -- a tiny two-stage model, trained once per session -------------------------------------------------------------
TRAIN_PARAMS = {
    # stage 1 trains long enough (the demo's loss) to mark some pixels and not others, so that tests of
    # serving and prediction compare a real segmentation; stage 2 only needs to run
    # whole clips, no augmentation, backbone at 0.1 x lr, no audio pretraining
    "train": {"preset": "tiny", "input_size": 64, "batch_clips": 2, "frames": 0, "lr": 1e-3, "clip_grad": 1.0,
              "backbone_lr_mult": 0.1, "flip": False, "max_zoom": 1.0, "checkpoint_every": 50, "val_every": 50,
              "seed": 0, "model": {"semantic_weight": 5}},
    "train_stage1": {"steps": 40, "audio_pretrain_steps": 0},
    "train_stage2": {"steps": 2, "prior_truth": 1.0},
    "features": {"mask_source": "regions", "maskige_size": 64},
    "package": {"model_name": "avs", "batch_size": 4, "max_batch_delay_ms": 300, "max_seconds": 6,
                "max_payload_mb": 0.5, "warmup_seconds": 2, "warmup_size": 64, "threads": 1},
}


@pytest.fixture(scope="session")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> dict:
    """features -> stage 1 (40 steps) -> predict-masks -> stage 2 (2 steps) on the tiny synthetic set, one
    CPU thread. "folder" holds stage1/best.pt and stage2/best.pt as the pipeline's models/ does; "params"
    is the parameters file (TRAIN_PARAMS, also under "settings") the steps read."""
    import yaml

    from components.cli import main

    root = tmp_path_factory.mktemp("trained")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(TRAIN_PARAMS))
    features, priors, folder = root / "features", root / "priors", root / "models"
    stage1, stage2 = folder / "stage1" / "best.pt", folder / "stage2" / "best.pt"
    common = ["--data", str(tiny_data), "--features", str(features)]
    with _torch_threads(1):
        assert main(["features", "--data", str(tiny_data), "--out", str(features), "--maskige-size", "64"]) == 0
        assert main(["train", "--stage", "1", *common, "--out", str(stage1.parent), "--params", str(params)]) == 0
        assert main(["predict-masks", *common, "--model", str(stage1), "--out", str(priors)]) == 0
        assert main(["train", "--stage", "2", *common, "--priors", str(priors), "--init", str(stage1),
                     "--out", str(stage2.parent), "--params", str(params)]) == 0
    return {"root": root, "params": params, "settings": TRAIN_PARAMS, "features": features, "priors": priors,
            "data": tiny_data, "folder": folder, "stage1": stage1, "stage2": stage2}


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
