"""Audio pretraining before stage 1: the audio transformer learns to name the S4 categories heard in a clip.

The paper's audio encoder is CED, pretrained on AudioSet and then frozen. Without such weights (the demo
cannot download any) the audio transformer learns only through the segmentation loss; its tokens then
barely differ between sounds and the segmenter learns to ignore them. This step stands in for the
AudioSet pretraining, which is multi-label: a linear head on the mean token, binary cross-entropy over
the S4 categories of the training split. Each example is one second at one log-mel scale of an S4 clip,
or a mixture of up to `max_sources` such seconds of different categories at random relative gains, so
the tokens of a multi-source clip (MS3) name every source instead of falling between them. The head is
thrown away. With real CED weights (`train.model.audio_weights`) leave it off.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.common import StepError
from components.features.logmel import LOG_OFFSET, NTAVS_WINDOWS
from components.params import AUDIO_HEADS
from components.train.data import ClipDataset
from model.audio import AudioTransformer

SCALES = len(NTAVS_WINDOWS)  # log-mel scales per second
MIN_GAIN = 0.35              # relative loudness of a mixed-in source, drawn in [MIN_GAIN, 1]


def category_examples(dataset: ClipDataset, categories: list[str] | None = None,
                      ) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Every S4 clip's log-mel examples with its category index.

    Returns (examples float [N, 96, 64], labels int64 [N], categories); example i is at log-mel scale
    i % 3 (each clip contributes its seconds x 3 scales in order). `categories` fixes the label order
    (the training split's); clips of other categories are left out. Default: the sorted labels of
    `dataset`.
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


def labelled_seconds(dataset: ClipDataset, categories: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The AVSS clips' heard mixtures: every annotated second whose label map paints only classes of
    `categories` (S4 category names), at each log-mel scale, with those categories as its multi-hot.

    AVSS labels paint the sounding objects by class, so a second of a multi-source clip (v1m, v2) is a
    real mixture with its sources named. Seconds that paint nothing (nothing seen sounding) or a class
    outside the categories (its target would be incomplete) are left out. Returns (examples float
    [N, 96, 64], scale i % 3; targets float [N, len(categories)]), both empty without such seconds.
    """
    from components.avsbench.classes import AVSS_CLASSES, S4_CATEGORY_TO_AVSS
    from components.avsbench.reader import read_target

    column = {AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[name]): i for i, name in enumerate(categories)}
    examples, targets = [], []
    for files in dataset.clips:
        if files.subset != "avss":
            continue
        audio = None
        for t in range(files.num_frames):
            label = read_target(files, t)
            painted = set(np.unique(label).tolist()) - {0} if label is not None else set()
            if not painted or not painted <= column.keys():
                continue
            audio = dataset.read_audio(files) if audio is None else audio       # [seconds, scales, 96, 64]
            if t >= len(audio):
                continue
            hot = torch.zeros(len(categories))
            hot[[column[c] for c in painted]] = 1.0
            examples.append(audio[t])
            targets.append(hot.expand(len(audio[t]), -1))
    if not examples:
        return torch.zeros(0, 96, 64), torch.zeros(0, len(categories))
    return torch.cat(examples), torch.cat(targets)


class SoundMixer:
    """Draws pretraining examples, each a mixture of 1..max_sources examples of different categories.

    x: log-mel examples float [N, 96, 64] (scale i % 3), y: their category int64 [N]. The examples of each
    (scale, category) are indexed once here, not at every draw.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, num_categories: int):
        self.x, self.num_categories = x, num_categories
        scale = torch.arange(len(x)) % SCALES
        self.pools = {(s, c): torch.nonzero((scale == s) & (y == c)).flatten() for s in range(SCALES)
                      for c in range(num_categories)}
        self.present = [[c for c in range(num_categories) if len(self.pools[s, c])] for s in range(SCALES)]

    def draw(self, count: int, max_sources: int, draws: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """`count` mixtures. Each takes a scale, a number of sources k (uniform in 1..max_sources, at most
        the categories at that scale), k categories and one example of each at that scale; it adds their
        mel magnitudes (exp(x) - 0.01) weighted by gains drawn in [0.35, 1] (1 for a single source),
        divides by the gains' sum to keep the level, and takes the log again. Returns (mixtures float
        [count, 96, 64], multi-hot targets float [count, num_categories]); a single source is returned
        unchanged.
        """
        mixtures, targets = [], torch.zeros(count, self.num_categories)
        for b in range(count):
            s = int(torch.randint(SCALES, (1,), generator=draws))
            present = self.present[s]
            k = min(int(torch.randint(1, max_sources + 1, (1,), generator=draws)), len(present))
            chosen = [present[int(i)] for i in torch.randperm(len(present), generator=draws)[:k]]
            pools = [self.pools[s, c] for c in chosen]
            picks = [pool[int(torch.randint(len(pool), (1,), generator=draws))] for pool in pools]
            if k == 1:
                mixtures.append(self.x[picks[0]])
            else:
                gains = torch.empty(k).uniform_(MIN_GAIN, 1.0, generator=draws)
                magnitude = sum(g * (self.x[i].exp() - LOG_OFFSET).clamp_min(0)
                                for g, i in zip(gains, picks, strict=True))
                mixtures.append((magnitude / gains.sum() + LOG_OFFSET).log())
            targets[b, chosen] = 1.0
        return torch.stack(mixtures), targets


def _tokens(transformer: AudioTransformer, x: torch.Tensor, device: torch.device, chunk: int = 256) -> torch.Tensor:
    """The tokens [N, 24, dim] of each example of x [N, 96, 64], in eval mode, on `device`."""
    transformer.eval()
    with torch.no_grad():
        return torch.cat([transformer(x[i:i + chunk].to(device)) for i in range(0, len(x), chunk)])


def _logits(transformer: AudioTransformer, head: nn.Linear, x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The head's logits [N, C] on the mean token of each example of x [N, 96, 64]."""
    with torch.no_grad():
        return head(_tokens(transformer, x, device).mean(1)).cpu()


def _single_accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    return float((logits.argmax(1) == y).float().mean())


def _mixture_accuracy(logits: torch.Tensor, targets: torch.Tensor) -> float:
    """Share of mixtures whose k highest logits are exactly their k sources."""
    hits = [set(row.topk(int(t.sum())).indices.tolist()) == set(t.nonzero().flatten().tolist())
            for row, t in zip(logits, targets, strict=True)]
    return sum(hits) / len(hits)


def pretrain_audio(transformer: AudioTransformer, train_set: ClipDataset, val_set: ClipDataset, steps: int,
                   lr: float, seed: int, device: torch.device, batch: int = 64, max_sources: int = 3,
                   head_reads: str = "mean", heard_from: ClipDataset | None = None,
                   ) -> dict[str, float | None]:
    """Train `transformer` in place (weights and BatchNorm statistics) to name the S4 categories it hears.

    train_set / val_set: S4 clips (stage-1 datasets restricted to S4). AdamW, constant lr, `batch`
    mixtures of up to `max_sources` sounds per step (`SoundMixer`; 1: single sounds only), drawn with a
    generator seeded by `seed` (same seed, same machine: same weights). Returns {"categories",
    "train_accuracy", "val_accuracy" (single sounds, top class), "val_mixture_accuracy" (256 val mixtures,
    the k top classes are the k sources), "val_token_accuracy" (single sounds, the head on each token
    alone); the val figures None without val clips of a known category}. Parameters
    frozen on entry are trained here and frozen again on return. head_reads: "mean" (the head reads the
    mean token, as an AudioSet classifier does) or "tokens" (the loss asks every token to name every
    source, so each token the queries are made from carries the whole mixture; the reports read the
    mean either way). heard_from: AVSS clips whose labelled seconds (`labelled_seconds`) are real
    mixtures; when given and holding such seconds, half of each batch is drawn from them.
    """
    if head_reads not in AUDIO_HEADS:
        raise StepError(f"audio pretraining: head_reads={head_reads!r}, expected one of {AUDIO_HEADS}")
    if max_sources < 1:
        raise StepError(f"audio pretraining: max_sources={max_sources} must be >= 1")
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
    mixer = SoundMixer(x, y, len(categories))
    heard = labelled_seconds(heard_from, categories) if heard_from is not None else None
    draws = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        transformer.train()
        mixed, target = mixer.draw(batch, max_sources, draws)
        if heard is not None and len(heard[0]):
            half = torch.randint(len(heard[0]), (batch // 2,), generator=draws)
            mixed = torch.cat([mixed[: batch - len(half)], heard[0][half]])
            target = torch.cat([target[: batch - len(half)], heard[1][half]])
        tokens = transformer(mixed.to(device))                                   # [batch, 24, dim]
        if head_reads == "tokens":  # every token names every source, not only their mean
            logits, target = head(tokens), target[:, None].expand(-1, tokens.shape[1], -1)
        else:
            logits = head(tokens.mean(1))
        loss = F.binary_cross_entropy_with_logits(logits, target.to(device))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    for name, p in transformer.named_parameters():
        p.requires_grad_(name not in frozen)
    report: dict[str, float | None] = {
        "categories": float(len(categories)),
        "train_accuracy": _single_accuracy(_logits(transformer, head, x, device), y),
        "val_accuracy": None, "val_mixture_accuracy": None, "val_token_accuracy": None}
    if vx is not None:
        vmix, vtarget = SoundMixer(vx, vy, len(categories)).draw(256, max(max_sources, 2),
                                                                 torch.Generator().manual_seed(seed + 1))
        tokens = _tokens(transformer, vx, device)                                       # [N, 24, dim]
        with torch.no_grad():
            report["val_accuracy"] = _single_accuracy(head(tokens.mean(1)).cpu(), vy)
            per_token = head(tokens).cpu()                                              # [N, 24, C]
        report["val_mixture_accuracy"] = _mixture_accuracy(_logits(transformer, head, vmix, device), vtarget)
        report["val_token_accuracy"] = _single_accuracy(per_token.flatten(0, 1),
                                                        vy.repeat_interleave(per_token.shape[1]))
    return report
