"""Sine positional encoding of feature maps (as in DETR / Mask2Former)."""

from __future__ import annotations

import math

import torch


def sine_position(height: int, width: int, dim: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised 2-D sine/cosine encoding: float [1, dim, height, width] (dim/2 channels per axis)."""
    half = dim // 2
    y = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) / height * 2 * math.pi
    x = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) / width * 2 * math.pi
    freqs = 10000 ** (2 * (torch.arange(half, device=device) // 2).float() / half)
    py = y[:, None] / freqs                                # [H, half]
    px = x[:, None] / freqs                                # [W, half]
    py = torch.stack([py[:, 0::2].sin(), py[:, 1::2].cos()], dim=2).flatten(1)
    px = torch.stack([px[:, 0::2].sin(), px[:, 1::2].cos()], dim=2).flatten(1)
    pos = torch.cat([py[:, None, :].expand(height, width, half), px[None, :, :].expand(height, width, half)], dim=2)
    return pos.permute(2, 0, 1).unsqueeze(0).to(dtype)
