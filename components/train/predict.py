"""Running a trained network over a dataset: probabilities per frame, and the validation score."""

from __future__ import annotations

from collections.abc import Iterator

import torch

from components.train.data import ClipDataset, collate
from model.metrics import avss_scores, s4_miou
from model.ntavs import semantic_map


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: ClipDataset, device: torch.device,
            ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Yield (clip index, probabilities [T, C, S, S], labels [T, S, S], has_gt [T]) for every clip."""
    model.eval()
    net = getattr(model, "module", model)
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        extra = {}
        if net.cfg.maskige:
            extra["maskige"] = batch["maskige"].to(device)
        if net.cfg.prior:
            extra["prior"] = batch["prior"].to(device)
        preds = model(batch["frames"].to(device), batch["audio"].to(device), **extra)
        probs = semantic_map(preds[-1], tuple(batch["frames"].shape[-2:])).float().cpu()
        yield index, probs, batch["labels"], batch["has_gt"]


def score(model: torch.nn.Module, dataset: ClipDataset, device: torch.device) -> float:
    """Validation mIoU over frames with ground truth: binary AVSBench mIoU (stage 1) or AVSS mIoU (stage 2)."""
    probs, labels = [], []
    for _, p, lab, has_gt in predict(model, dataset, device):
        probs.append(p[has_gt])
        labels.append(lab[has_gt])
    if not probs:
        return 0.0
    p, lab = torch.cat(probs), torch.cat(labels)
    if dataset.stage == 1:
        return s4_miou(p[:, 1], lab == 1)
    return avss_scores(p.argmax(1), lab, num_classes=p.shape[1])["miou"]
