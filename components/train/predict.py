"""Running a trained network over a dataset: probabilities per frame, and the validation score."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

from components.common import StepError
from components.train.data import ClipDataset, collate
from model.metrics import avss_scores, s4_miou
from model.ntavs import semantic_map


def require_priors(net: torch.nn.Module, priors: Path | None, name: str) -> None:
    """StepError naming `name` (the model, or the stage being trained) when `net` takes the stage-1 prior
    input and no priors folder was given; a network without the prior input needs none."""
    if net.cfg.prior and priors is None:
        raise StepError(f"{name} takes the stage-1 prior: pass the output of avs predict-masks as --priors "
                        "(a single-stage model sets train.model.prior: false)")


def run_model(model: torch.nn.Module, batch: dict, device: torch.device) -> list[dict[str, torch.Tensor]]:
    """The network's predictions for a collated batch, passing the maskige and prior only if it uses them."""
    net = getattr(model, "module", model)
    extra = {name: batch[name].to(device) for name in ("maskige", "prior") if getattr(net.cfg, name)}
    return model(batch["frames"].to(device), batch["audio"].to(device), **extra)


@torch.no_grad()
def predict(model: torch.nn.Module, dataset: ClipDataset, device: torch.device,
            ) -> Iterator[tuple[int, torch.Tensor, dict]]:
    """Yield (clip index, probabilities [T, C, S, S], the collated one-clip batch) for every clip.

    The batch holds "frames" [1, T, 3, S, S], "labels" [T, S, S] and "has_gt" [T] among others.
    """
    model.eval()
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        preds = run_model(model, batch, device)
        probs = semantic_map(preds[-1], tuple(batch["frames"].shape[-2:])).float().cpu()
        yield index, probs, batch


def score(model: torch.nn.Module, dataset: ClipDataset, device: torch.device) -> float:
    """Validation mIoU over frames with ground truth: binary AVSBench mIoU (stage 1) or AVSS mIoU (stage 2)."""
    probs, labels = [], []
    for _, p, batch in predict(model, dataset, device):
        probs.append(p[batch["has_gt"]])
        labels.append(batch["labels"][batch["has_gt"]])
    if not probs:
        return 0.0
    p, lab = torch.cat(probs), torch.cat(labels)
    if dataset.stage == 1:
        return s4_miou(p[:, 1], lab == 1)
    return avss_scores(p.argmax(1), lab, num_classes=p.shape[1])["miou"]
