"""cuda_ext: the compiled deformable attention against the pure-PyTorch reference, on CPU always and on
CUDA where a GPU exists. Inputs are random and fresh each run (the seed is printed on failure)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

import cuda_ext
from cuda_ext import backend, build, ms_deform_attn, ms_deform_attn_reference, ops

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
SEED = int(torch.seed() % 2**31)


@pytest.fixture(autouse=True)
def kernel_only(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """In a test parametrised by device, `ms_deform_attn` must run our kernel: the device's kernel must be
    loaded, and the dispatcher's fallback to the reference raises (the test's own reference calls, through
    its imported name, still run), so a missing build cannot turn a kernel test into reference vs itself."""
    device = getattr(request.node, "callspec", None) and request.node.callspec.params.get("device")
    if not device:
        return
    assert backend(device) == f"{device}-kernel", f"no {device} kernel: the test would check the reference alone"

    def fallback(*args, **kwargs):
        raise AssertionError(f"ms_deform_attn fell back to the reference on {device}")

    monkeypatch.setattr(cuda_ext, "ms_deform_attn_reference", fallback)


def _problem(device, dtype, shapes, n=3, m=2, d=8, lq=5, p=3, spread=0.3, seed=SEED, contiguous=True):
    """Random inputs; locations cover [-spread, 1 + spread] so some samples fall outside the map."""
    gen = torch.Generator().manual_seed(seed)
    spatial = torch.tensor(shapes, dtype=torch.long)
    starts = torch.cat([spatial.new_zeros(1), (spatial[:, 0] * spatial[:, 1]).cumsum(0)[:-1]])
    s, levels = int((spatial[:, 0] * spatial[:, 1]).sum()), len(shapes)
    value = torch.randn(n, s, m, d, generator=gen, dtype=torch.float64)
    loc = torch.rand(n, lq, m, levels, p, 2, generator=gen, dtype=torch.float64) * (1 + 2 * spread) - spread
    weights = torch.rand(n, lq, m, levels, p, generator=gen, dtype=torch.float64)
    weights = weights / weights.sum((-1, -2), keepdim=True)
    if not contiguous:  # same values, non-contiguous memory
        value = value.transpose(1, 3).contiguous().transpose(1, 3)
        loc = loc.permute(5, 0, 1, 2, 3, 4).contiguous().permute(1, 2, 3, 4, 5, 0)
        weights = weights.transpose(0, 4).contiguous().transpose(0, 4)
    to = {"device": device, "dtype": dtype}
    return value.to(**to), spatial.to(device), starts.to(device), loc.to(**to), weights.to(**to)


CASES = {
    "four levels incl. 1xW and Hx1": dict(shapes=[(6, 5), (3, 4), (1, 7), (5, 1)]),
    "one level": dict(shapes=[(7, 9)]),
    "odd batch 5, one query": dict(shapes=[(4, 4), (2, 2)], n=5, lq=1),
    "batch 1, many points": dict(shapes=[(8, 3), (4, 2), (2, 1)], n=1, p=7),
    "non-contiguous": dict(shapes=[(5, 6), (3, 3)], contiguous=False),
    "far outside": dict(shapes=[(4, 5)], spread=1.5),
}


def test_cpu_kernel_is_built_and_used() -> None:
    assert backend("cpu") == "cpu-kernel", f"seed {SEED}"
    if build.cuda_buildable():  # CUDA kernels compile even where no GPU can run them
        assert ops.has_kernel("cuda") and backend("cuda") == "cuda-kernel"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_forward_matches_reference(device: str, case: str) -> None:
    for dtype, tol in ((torch.float64, dict(rtol=1e-10, atol=1e-12)), (torch.float32, dict(rtol=0, atol=1e-5))):
        inputs = _problem(device, dtype, **CASES[case])
        out = ms_deform_attn(*inputs)
        ref = ms_deform_attn_reference(*inputs)
        assert out.shape == ref.shape and out.dtype == dtype
        torch.testing.assert_close(out, ref, **tol, msg=lambda m, dtype=dtype: f"{case} {dtype} seed {SEED}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_precision_accumulates_in_float32(device: str, dtype: torch.dtype) -> None:
    inputs = _problem(device, torch.float64, shapes=[(6, 5), (3, 4), (1, 7)], d=64)
    low = [t.to(dtype) if t.is_floating_point() else t for t in inputs]
    exact = ms_deform_attn_reference(*[t.double() if t.is_floating_point() else t for t in low])
    out = ms_deform_attn(*low)
    assert out.dtype == dtype
    # the only error left is the final rounding to the low-precision type
    torch.testing.assert_close(out.double(), exact, rtol=2 * torch.finfo(dtype).eps, atol=1e-3,
                               msg=lambda m: f"seed {SEED}: {m}")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("channels", [30, 32, 64, 71, 1025])
def test_gradcheck_all_inputs(device: str, channels: int) -> None:
    small = channels > 100
    value, shapes, starts, loc, weights = _problem(
        device, torch.float64, shapes=[(3, 2), (1, 3)] if small else [(4, 3), (2, 2), (1, 3)],
        n=1 if small else 2, m=1 if small else 2, d=channels, lq=2, p=2, spread=0.2)
    for t in (value, loc, weights):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda v, s, w: ms_deform_attn(v, shapes, starts, s, w), (value, loc, weights),
                                    eps=1e-6, atol=1e-5, rtol=1e-4, fast_mode=small)


@pytest.mark.parametrize("device", DEVICES)
def test_gradients_match_reference(device: str) -> None:
    inputs = _problem(device, torch.float64, shapes=[(6, 5), (3, 4), (1, 7), (5, 1)], d=16)
    grads = []
    for fn in (ms_deform_attn, ms_deform_attn_reference):
        leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
        out = fn(*leaves)
        (out * torch.linspace(-1, 1, out.numel(), dtype=out.dtype, device=device).view_as(out)).sum().backward()
        grads.append([leaves[i].grad for i in (0, 3, 4)])
    for ours, ref in zip(*grads, strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-9, atol=1e-10, msg=lambda m: f"seed {SEED}: {m}")


class _Block(torch.nn.Module):
    def forward(self, value, shapes, starts, loc, weights):
        return ms_deform_attn(value, shapes, starts, loc.sigmoid(), weights.softmax(-1)) * 2


def test_torch_compile_forward_and_backward() -> None:
    value, shapes, starts, loc, weights = _problem("cpu", torch.float32, shapes=[(6, 5), (3, 4)])
    loc = torch.logit(loc.clamp(0.01, 0.99)).requires_grad_(True)
    compiled = torch.compile(_Block(), backend="aot_eager", fullgraph=True)
    out = compiled(value, shapes, starts, loc, weights)
    torch.testing.assert_close(out, _Block()(value, shapes, starts, loc, weights))
    out.sum().backward()
    assert loc.grad is not None and loc.grad.abs().sum() > 0


def test_torch_export_keeps_the_custom_op() -> None:
    inputs = _problem("cpu", torch.float32, shapes=[(6, 5), (3, 4)])
    exported = torch.export.export(_Block(), inputs)
    assert "avs_ext.ms_deform_attn" in str(exported.graph)
    torch.testing.assert_close(exported.module()(*inputs), _Block()(*inputs))


def test_bad_inputs_give_clear_errors() -> None:
    value, shapes, starts, loc, weights = _problem("cpu", torch.float32, shapes=[(4, 4)])
    with pytest.raises(RuntimeError, match="share a dtype"):
        ms_deform_attn(value.double(), shapes, starts, loc, weights)
    with pytest.raises(RuntimeError, match="attention_weights"):
        ms_deform_attn(value, shapes, starts, loc, weights[..., :1])


def test_import_and_call_never_fail_without_a_build(tmp_path) -> None:
    code = (
        "import warnings, torch, cuda_ext\n"
        "v = torch.randn(1, 6, 1, 4); s = torch.tensor([[2, 3]]); st = torch.tensor([0])\n"
        "loc = torch.rand(1, 2, 1, 1, 2, 2); w = torch.rand(1, 2, 1, 1, 2)\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    a = cuda_ext.ms_deform_attn(v, s, st, loc, w); b = cuda_ext.ms_deform_attn(v, s, st, loc, w)\n"
        "assert torch.equal(a, cuda_ext.ms_deform_attn_reference(v, s, st, loc, w))\n"
        "assert cuda_ext.backend('cpu') == 'reference'\n"
        "print(sum('reference' in str(c.message) for c in caught))\n"
    )
    env = {**os.environ, "AVS_EXT_CACHE": str(tmp_path), "AVS_EXT_BUILD": "0"}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "1"  # warned exactly once


def test_package_exports() -> None:
    assert set(cuda_ext.__all__) == {"backend", "ms_deform_attn", "ms_deform_attn_reference"}
