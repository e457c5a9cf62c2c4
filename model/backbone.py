"""Visual backbones through timm: four levels at strides 4/8/16/32, each projected to the model width."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn


def _out_indices(name: str) -> tuple[int, ...]:
    # ResNets expose the stem as feature 0; their stride-4..32 stages are 1..4
    return (1, 2, 3, 4) if name.startswith(("resnet", "resnext", "wide_resnet")) else (0, 1, 2, 3)


class Backbone(nn.Module):
    """timm feature extractor + per-level 1x1 conv and GroupNorm(32) to `d_model` channels.

    Input float [B, 3, H, W] (H, W divisible by 32). Output: list of 4 tensors [B, d_model, H/s, W/s],
    s = 4, 8, 16, 32. `weights`: optional local state-dict file for the timm model (never downloaded).
    """

    def __init__(self, name: str, d_model: int, weights: str | Path | None = None):
        super().__init__()
        import timm

        local: dict[str, object] = {}
        if weights is not None:
            if not Path(weights).is_file():
                raise FileNotFoundError(f"backbone weights {weights} not found (weights are never downloaded)")
            # timm reads a local file given as the pretrained source: no network involved
            local = {"pretrained": True, "pretrained_cfg_overlay": {"file": str(weights)}}
        self.body = timm.create_model(name, features_only=True, out_indices=_out_indices(name),
                                      **({"pretrained": False} | local))
        reductions = self.body.feature_info.reduction()
        if reductions != [4, 8, 16, 32]:
            raise ValueError(f"backbone {name!r} has strides {reductions}; need 4/8/16/32")
        channels = self.body.feature_info.channels()
        self.proj = nn.ModuleList(nn.Sequential(nn.Conv2d(c, d_model, 1), nn.GroupNorm(32, d_model)) for c in channels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return [proj(f) for proj, f in zip(self.proj, self.body(images), strict=True)]
