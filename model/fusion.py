"""Maskige fusion (SE per level) and the Stepping Stones stage-2 prior inputs (docs/design.md, Maskiges;
Stepping Stones)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class SqueezeExcite(nn.Module):
    """SE gate: global pool -> FC(d -> d/16) -> ReLU -> FC -> sigmoid. [B, d, h, w] -> [B, d, 1, 1]."""

    def __init__(self, d: int, reduction: int = 16):
        super().__init__()
        hidden = max(1, d // reduction)
        self.fc = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, d), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.mean((2, 3)))[:, :, None, None]


class MaskigeFusion(nn.Module):
    """feat = feat + SE(mfeat) * mfeat, per level."""

    def __init__(self, d: int, levels: int = 4):
        super().__init__()
        self.gates = nn.ModuleList(SqueezeExcite(d) for _ in range(levels))

    def forward(self, feats: list[torch.Tensor], mask_feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [f + gate(m) * m for f, m, gate in zip(feats, mask_feats, self.gates, strict=True)]


SILENT, UNCERTAIN, SOUNDING = 0, 1, 2


def prior_states(prior: torch.Tensor, low: float = 0.4, high: float = 0.6) -> torch.Tensor:
    """int64 map: SILENT where prior <= low, SOUNDING where prior >= high, UNCERTAIN in between."""
    states = torch.full_like(prior, UNCERTAIN, dtype=torch.long)
    states[prior <= low] = SILENT
    states[prior >= high] = SOUNDING
    return states


class PriorInputs(nn.Module):
    """The three ways the stage-1 prior (foreground probability [B, H, W]) enters stage 2.

    1. `mask_features(features, prior)`: a 1x1-conv embedding of the bilinearly resized prior is added.
    2. `level_positions(prior, sizes)`: per decoder level, one of three learned embeddings (silent,
       uncertain, sounding) per pixel, added to that level's positional encoding.
    3. `first_blocked(prior, sizes)`: the first masked attention is blocked where the prior < 0.5.
    """

    def __init__(self, d: int):
        super().__init__()
        self.to_features = nn.Conv2d(1, d, 1)
        self.state_embed = nn.Embedding(3, d)

    def mask_features(self, features: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        resized = F.interpolate(prior[:, None], size=features.shape[-2:], mode="bilinear", align_corners=False)
        return features + self.to_features(resized)

    def level_positions(self, prior: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        out = []
        for size in sizes:
            resized = F.interpolate(prior[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
            out.append(self.state_embed(prior_states(resized)).permute(0, 3, 1, 2))   # [B, d, h, w]
        return out

    @staticmethod
    def first_blocked(prior: torch.Tensor, sizes: list[tuple[int, int]]) -> list[torch.Tensor]:
        return [(F.interpolate(prior[:, None], size=size, mode="bilinear", align_corners=False) < 0.5).flatten(1)
                for size in sizes]
