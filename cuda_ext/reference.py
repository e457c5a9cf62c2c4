"""Multi-scale deformable attention in pure PyTorch (the grid_sample form): the reference for the kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ms_deform_attn_reference(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                             sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Deformable attention by bilinear `grid_sample` per level (zero padding, align_corners=False).

    value [N, S, M, D]; spatial_shapes [L, 2] as (H, W); level_start_index [L];
    sampling_locations [N, Lq, M, L, P, 2] as (x, y) in [0, 1]; attention_weights [N, Lq, M, L, P].
    Returns [N, Lq, M * D]. Differentiable in value, sampling_locations and attention_weights.
    """
    n, _, m, d = value.shape
    _, lq, _, levels, points, _ = sampling_locations.shape
    shapes = [(int(h), int(w)) for h, w in spatial_shapes.tolist()]
    starts = [int(s) for s in level_start_index.tolist()]
    grids = 2 * sampling_locations - 1
    sampled = []
    for lvl, (h, w) in enumerate(shapes):
        v = value[:, starts[lvl]:starts[lvl] + h * w]                       # [N, HW, M, D]
        v = v.permute(0, 2, 3, 1).reshape(n * m, d, h, w)                  # [N*M, D, H, W]
        g = grids[:, :, :, lvl].transpose(1, 2).reshape(n * m, lq, points, 2)
        sampled.append(F.grid_sample(v, g, mode="bilinear", padding_mode="zeros", align_corners=False))
    stacked = torch.stack(sampled, dim=-2).flatten(-2)                      # [N*M, D, Lq, L*P]
    weights = attention_weights.transpose(1, 2).reshape(n * m, 1, lq, levels * points)
    out = (stacked * weights).sum(-1).view(n, m * d, lq)
    return out.transpose(1, 2).contiguous()
