"""Audio pretraining before stage 1: the audio transformer learns to name each S4 training clip's category.

The paper's audio encoder is CED, pretrained on AudioSet and then frozen. Without such weights (the demo
cannot download any) the audio transformer learns only through the segmentation loss; its tokens then
barely differ between sounds and the segmenter learns to ignore them. This step stands in for the
AudioSet pretraining: a linear head on the mean token, cross-entropy over the S4 categories of the
training split, each second of each clip at each log-mel scale one example. The head is thrown away.
With real CED weights (`train.model.audio_weights`) leave it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from components.common import StepError
from components.train.data import ClipDataset
from model.audio import AudioTransformer


def category_examples(dataset: ClipDataset, categories: list[str] | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every S4 clip's log-mel examples with its category index.

    Returns (examples float [N, 96, 64], labels int64 [N], categories). `categories` fixes the label
    order (the training split's); clips of other categories are left out. Default: the sorted labels
    of `dataset`.
    """
    if categories is None:
        categories = sorted({c.label for c in dataset.clips})
    examples, labels = [], []
    for files in dataset.clips:
        if files.label not in categories:
            continue
        audio = dataset.read_audio(files).flatten(0, 1)   # [seconds * scales, 96, 64]
        examples.append(audio)
        labels.append(torch.full((len(audio),), categories.index(files.label)))
    if not examples:
        raise StepError(f"audio pretraining: no S4 clips of categories {categories} in the {dataset.split} split")
    return torch.cat(examples), torch.cat(labels), categories


def _accuracy(transformer: AudioTransformer, head: nn.Linear, x: torch.Tensor, y: torch.Tensor,
              device: torch.device, chunk: int = 256) -> float:
    transformer.eval()
    with torch.no_grad():
        hits = sum((head(transformer(x[i:i + chunk].to(device)).mean(1)).argmax(1).cpu() == y[i:i + chunk]).sum()
                   for i in range(0, len(x), chunk))
    return float(hits) / len(x)


def pretrain_audio(transformer: AudioTransformer, train_set: ClipDataset, val_set: ClipDataset, steps: int,
                   lr: float, seed: int, device: torch.device, batch: int = 64) -> dict[str, float | None]:
    """Train `transformer` in place (weights and BatchNorm statistics) to classify S4 categories.

    train_set / val_set: S4 clips (stage-1 datasets restricted to S4). AdamW, constant lr, `batch`
    examples per step drawn with a generator seeded by `seed` (same seed, same machine: same weights).
    Returns {"categories", "train_accuracy", "val_accuracy" (None without val clips of a known category)}.
    Parameters frozen on entry are trained here and frozen again on return.
    """
    x, y, categories = category_examples(train_set)
    if len(categories) < 2:
        raise StepError(f"audio pretraining needs S4 clips of at least 2 categories; found {categories}")
    # a missing features file must still fail loudly, so only "no val clip of a known category" skips val
    has_val = any(c.label in categories for c in val_set.clips)
    vx, vy, _ = category_examples(val_set, categories) if has_val else (None, None, categories)
    frozen = {name for name, p in transformer.named_parameters() if not p.requires_grad}
    transformer.requires_grad_(True)
    head = nn.Linear(transformer.norm.normalized_shape[0], len(categories)).to(device)
    optimizer = torch.optim.AdamW([*transformer.parameters(), *head.parameters()], lr=lr, weight_decay=0.05)
    draws = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        transformer.train()
        index = torch.randint(len(x), (batch,), generator=draws)
        loss = F.cross_entropy(head(transformer(x[index].to(device)).mean(1)), y[index].to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for name, p in transformer.named_parameters():
        p.requires_grad_(name not in frozen)
    return {"categories": float(len(categories)), "train_accuracy": _accuracy(transformer, head, x, y, device),
            "val_accuracy": _accuracy(transformer, head, vx, vy, device) if vx is not None else None}
