"""Checkpoints on disk: the full training state, written atomically so a crash never leaves one
half-written, and the trained network read back from a `best.pt` (`load_trained`)."""

from __future__ import annotations

import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.common import StepError


def rng_state() -> dict[str, Any]:
    """Every random generator the training touches."""
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_atomic(payload: dict[str, Any], path: Path) -> None:
    """torch.save to a temporary file beside `path`, fsync, then rename over it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(payload, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_atomic` (it holds RNG states, so it is not weights-only)."""
    return torch.load(path, map_location="cpu", weights_only=False)


class CheckpointError(StepError):
    """A model file that cannot be used: missing, unreadable, or not written by `avs train`."""


def load_trained(path: Path) -> tuple[torch.nn.Module, dict[str, Any]]:
    """(the network in eval mode, its training config) from a `best.pt` written by `avs train`.

    The network is a model.ntavs.AVSegmenter built from the file's model config; the initial weights it
    started from (backbone_weights, audio_weights) are not read again: the trained tensors are all in
    the file. Raises CheckpointError naming the file when it is missing, unreadable or of another kind.
    """
    from model.config import ModelConfig
    from model.ntavs import AVSegmenter

    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {path} not found (train first)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
        config = {**saved["model_config"], "backbone_weights": None, "audio_weights": None}
        net = AVSegmenter(ModelConfig(**config))
        net.load_state_dict(saved["model"])
        return net.eval(), saved["train_config"]
    except (KeyError, TypeError, RuntimeError, EOFError, OSError, ValueError, AttributeError,
            pickle.UnpicklingError) as exc:
        raise CheckpointError(f"{path}: not a model written by avs train ({exc})") from exc
