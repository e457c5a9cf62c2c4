"""The compiled operator `torch.ops.avs_ext.ms_deform_attn`: loading, autograd and fake (meta) rules."""

from __future__ import annotations

import os
import threading
import warnings

import torch

from cuda_ext import build

_lock = threading.Lock()
_state: dict[str, object] = {}


def load() -> bool:
    """Load (building first if needed) the kernel library once; False, with one warning, if impossible."""
    if "loaded" in _state:
        return bool(_state["loaded"])
    with _lock:
        if "loaded" in _state:
            return bool(_state["loaded"])
        try:
            with_cuda = build.cuda_buildable()
            path = build.library_path(with_cuda)
            if not path.is_file():
                if os.environ.get("AVS_EXT_BUILD", "1") == "0":
                    raise RuntimeError(f"no cached build at {path} and AVS_EXT_BUILD=0")
                path = build.build(with_cuda)
            torch.ops.load_library(str(path))
            _register_python_rules()
            _state["kernels"] = frozenset(
                device for device, key in (("cpu", "CPU"), ("cuda", "CUDA"))
                if torch._C._dispatch_has_kernel_for_dispatch_key("avs_ext::ms_deform_attn", key))
            _state["loaded"] = True
        except Exception as exc:  # a compiler or loader failure must never break the caller
            warnings.warn(f"cuda_ext: compiled deformable attention unavailable ({exc}); "
                          "using the pure-PyTorch reference", RuntimeWarning, stacklevel=3)
            _state["loaded"] = False
        return bool(_state["loaded"])


def has_kernel(device_type: str) -> bool:
    """Whether a compiled kernel is registered for this device type ("cpu" or "cuda"), loading if needed."""
    load()
    return kernel_ready(device_type)


def kernel_ready(device_type: str) -> bool:
    """Like `has_kernel` but never loads: a plain lookup that torch.compile can trace through."""
    return device_type in _state.get("kernels", ())


def _register_python_rules() -> None:
    """Shape-only (fake) implementations and the autograd formula of the C++ operators."""
    if _state.get("rules"):
        return

    @torch.library.register_fake("avs_ext::ms_deform_attn")
    def _forward_fake(value, spatial_shapes, level_start_index, sampling_locations, attention_weights):
        n, _, m, d = value.shape
        return value.new_empty((n, sampling_locations.shape[1], m * d))

    @torch.library.register_fake("avs_ext::ms_deform_attn_backward")
    def _backward_fake(grad_output, value, spatial_shapes, level_start_index, sampling_locations,
                       attention_weights):
        return torch.empty_like(value), torch.empty_like(sampling_locations), torch.empty_like(attention_weights)

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs)

    def _backward(ctx, grad_output):
        value, shapes, starts, locations, weights = ctx.saved_tensors
        grad_value, grad_locations, grad_weights = torch.ops.avs_ext.ms_deform_attn_backward(
            grad_output.contiguous(), value, shapes, starts, locations, weights)
        return grad_value, None, None, grad_locations, grad_weights

    torch.library.register_autograd("avs_ext::ms_deform_attn", _backward, setup_context=_setup_context)
    _state["rules"] = True
