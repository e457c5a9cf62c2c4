"""`avs predict-masks`: the stage-1 model's foreground probabilities for every clip stage 2 reads."""

from __future__ import annotations

from pathlib import Path

import torch

from components.common import StepError, atomic_dir, progress
from components.train.checkpoint import load_trained
from components.train.data import STAGE2_SUBSETS, ClipDataset, prior_file
from components.train.predict import predict


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
