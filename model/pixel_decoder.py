"""The Mask2Former-style pixel decoder on our compiled multi-scale deformable attention (docs/design.md, The network).

A deformable-attention encoder runs over the stride-8/16/32 levels; an FPN branch brings the result to
stride 4, and a 1x1 conv gives the mask features.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from cuda_ext import ms_deform_attn
from model.positional import sine_position


class MSDeformAttn(nn.Module):
    """Multi-scale deformable attention with learned offsets and weights.

    query [B, Lq, d]; reference [B, Lq, L, 2] (x, y in [0, 1]); value [B, S, d] over the flattened levels.
    Returns [B, Lq, d].
    """

    def __init__(self, d: int, heads: int, levels: int, points: int):
        super().__init__()
        self.heads, self.levels, self.points = heads, levels, points
        self.sampling_offsets = nn.Linear(d, heads * levels * points * 2)
        self.attention_weights = nn.Linear(d, heads * levels * points)
        self.value_proj = nn.Linear(d, d)
        self.output_proj = nn.Linear(d, d)
        self._reset()

    def _reset(self) -> None:
        # offsets start as a ring of directions, one per head, growing with the point index
        nn.init.zeros_(self.sampling_offsets.weight)
        angles = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        grid = torch.stack([angles.cos(), angles.sin()], -1)
        grid = grid / grid.abs().max(-1, keepdim=True)[0]
        grid = grid.view(self.heads, 1, 1, 2).repeat(1, self.levels, self.points, 1)
        grid *= torch.arange(1, self.points + 1, dtype=torch.float32).view(1, 1, -1, 1)
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(grid.flatten())
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        for lin in (self.value_proj, self.output_proj):
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, value: torch.Tensor,
                shapes: torch.Tensor, starts: torch.Tensor) -> torch.Tensor:
        b, lq, d = query.shape
        v = self.value_proj(value).view(b, value.shape[1], self.heads, d // self.heads)
        offsets = self.sampling_offsets(query).view(b, lq, self.heads, self.levels, self.points, 2)
        weights = self.attention_weights(query).view(b, lq, self.heads, self.levels * self.points).softmax(-1)
        normaliser = shapes.flip(-1).to(query.dtype)                     # (W, H) per level
        loc = reference[:, :, None, :, None, :] + offsets / normaliser[None, None, None, :, None, :]
        out = ms_deform_attn(v, shapes, starts, loc, weights.view(b, lq, self.heads, self.levels, self.points))
        return self.output_proj(out)


class EncoderLayer(nn.Module):
    """Deformable self-attention + FFN, post-norm, no dropout."""

    def __init__(self, d: int, heads: int, levels: int, points: int, ffn: int):
        super().__init__()
        self.attn = MSDeformAttn(d, heads, levels, points)
        self.norm1 = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, d))
        self.norm2 = nn.LayerNorm(d)

    def forward(self, src, pos, reference, shapes, starts):
        src = self.norm1(src + self.attn(src + pos, reference, src, shapes, starts))
        return self.norm2(src + self.ffn(src))


class PixelDecoder(nn.Module):
    """maps: 4 tensors [B, d, H/s, W/s] for s = 4, 8, 16, 32.

    Returns (mask features [B, d, H/4, W/4], decoder levels [s32, s16, s8] each [B, d, h, w]).
    """

    def __init__(self, d: int, layers: int, heads: int, points: int, ffn: int):
        super().__init__()
        self.level_embed = nn.Parameter(torch.randn(3, d) * 0.02)
        self.layers = nn.ModuleList(EncoderLayer(d, heads, 3, points, ffn) for _ in range(layers))
        self.lateral = nn.Sequential(nn.Conv2d(d, d, 1, bias=False), nn.GroupNorm(32, d))
        self.output = nn.Sequential(nn.Conv2d(d, d, 3, padding=1, bias=False), nn.GroupNorm(32, d),
                                    nn.ReLU(inplace=True))
        self.mask_features = nn.Conv2d(d, d, 1)

    def forward(self, maps: list[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        levels = [maps[3], maps[2], maps[1]]                                   # low to high resolution
        b, d = levels[0].shape[:2]
        sizes = [tuple(x.shape[-2:]) for x in levels]
        shapes = torch.tensor(sizes, dtype=torch.long, device=levels[0].device)
        starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
        src = torch.cat([x.flatten(2).transpose(1, 2) for x in levels], 1)   # [B, S, d]
        pos = torch.cat([
            (sine_position(h, w, d, x.device, x.dtype) + self.level_embed[i].view(1, d, 1, 1)).flatten(2).mT
            for i, (x, (h, w)) in enumerate(zip(levels, sizes, strict=True))
        ], 1)
        reference = torch.cat([_centres(h, w, x.device, x.dtype) for x, (h, w) in zip(levels, sizes, strict=True)])
        reference = reference[None, :, None, :].expand(b, -1, len(levels), 2)
        for layer in self.layers:
            src = layer(src, pos, reference, shapes, starts)
        outs = [o.transpose(1, 2).reshape(b, d, h, w)
                for o, (h, w) in zip(src.split([h * w for h, w in sizes], 1), sizes, strict=True)]
        fine = self.lateral(maps[0]) + F.interpolate(outs[-1], size=maps[0].shape[-2:], mode="bilinear",
                                                     align_corners=False)
        return self.mask_features(self.output(fine)), outs


def _centres(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised pixel centres [h * w, 2] as (x, y)."""
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    return torch.stack(torch.meshgrid(xs, ys, indexing="xy"), -1).reshape(-1, 2)
