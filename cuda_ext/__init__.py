"""Multi-scale deformable attention, compiled for CPU and CUDA, with a pure-PyTorch fallback.

    from cuda_ext import ms_deform_attn, ms_deform_attn_reference, backend

`ms_deform_attn` runs the compiled kernel for the tensors' device when one is available and the
reference otherwise, so importing and calling never fail for lack of a compiler (one warning says so).
"""

from __future__ import annotations

import torch

from cuda_ext import ops
from cuda_ext.reference import ms_deform_attn_reference

__all__ = ["backend", "ms_deform_attn", "ms_deform_attn_reference"]

if ops.build.library_path(ops.build.cuda_buildable()).is_file():
    ops.load()  # a cached build loads in milliseconds; building waits for the first call


def backend(device: torch.device | str) -> str:
    """Which implementation runs for tensors on `device`: "cpu-kernel", "cuda-kernel" or "reference"."""
    device_type = torch.device(device).type
    if device_type in ("cpu", "cuda") and ops.has_kernel(device_type):
        return f"{device_type}-kernel"
    return "reference"


def ms_deform_attn(value: torch.Tensor, spatial_shapes: torch.Tensor, level_start_index: torch.Tensor,
                   sampling_locations: torch.Tensor, attention_weights: torch.Tensor) -> torch.Tensor:
    """Multi-scale deformable attention.

    value [N, S, M, D] (S = sum of H_l * W_l); spatial_shapes [L, 2] int64 as (H, W); level_start_index [L]
    int64; sampling_locations [N, Lq, M, L, P, 2] as (x, y), [0, 1] inside the map (outside reads zeros);
    attention_weights [N, Lq, M, L, P]. Returns [N, Lq, M * D] in value's dtype. Differentiable in value,
    sampling_locations and attention_weights; works under torch.compile and torch.export.
    """
    if not torch.compiler.is_compiling():
        ops.load()  # compiled graphs see the state left by an eager call or the import
    if ops.kernel_ready(value.device.type):
        return torch.ops.avs_ext.ms_deform_attn(value, spatial_shapes, level_start_index, sampling_locations,
                                                attention_weights)
    return ms_deform_attn_reference(value, spatial_shapes, level_start_index, sampling_locations, attention_weights)
