"""`avs predict-masks`: the stage-1 model's foreground probabilities for every clip stage 2 reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from components.common import StepError, atomic_dir, progress
from components.train.data import STAGE2_SUBSETS, ClipDataset, prior_file
from components.train.predict import predict
from model.config import ModelConfig
from model.ntavs import AVSegmenter


def load_trained(path: Path) -> tuple[AVSegmenter, dict[str, Any]]:
    """A network and its training config from a `best.pt` written by `avs train`."""
    path = Path(path)
    if not path.is_file():
        raise StepError(f"model file {path} not found (train first)")
    saved = torch.load(path, map_location="cpu", weights_only=False)
    try:
        # the trained tensors are all in the file: the initial weights it started from are not read again
        config = {**saved["model_config"], "backbone_weights": None, "audio_weights": None}
        net = AVSegmenter(ModelConfig(**config))
        net.load_state_dict(saved["model"])
    except (KeyError, TypeError, RuntimeError) as exc:
        raise StepError(f"{path}: not a model written by avs train ({exc})") from exc
    return net.eval(), saved["train_config"]


def predict_masks(data: Path, features: Path, model_path: Path, out: Path) -> dict[str, int]:
    """Write `out/avss/{uid}.pt` (float16 [T, S, S] foreground probability) for every AVSS clip, all splits."""
    net, train_cfg = load_trained(model_path)
    if net.cfg.num_classes != 2 or net.cfg.prior:
        raise StepError(f"{model_path}: predict-masks needs a stage-1 (2-class, no prior) model")
    counts: dict[str, int] = {}
    with atomic_dir(Path(out), overwrite=True) as tmp:
        for split in ("train", "val", "test"):
            dataset = ClipDataset(data, features, 1, split, train_cfg["input_size"], subsets=STAGE2_SUBSETS)
            for index, probs, _ in progress(predict(net, dataset, torch.device("cpu")), f"predict-masks {split}",
                                               total=len(dataset)):
                path = prior_file(tmp, dataset.clips[index])
                path.parent.mkdir(parents=True, exist_ok=True)
                torch.save(probs[:, 1].to(torch.float16).clone(), path)
            counts[split] = len(dataset)
    return counts
