"""Speed of the compiled deformable attention against the pure-PyTorch reference, same inputs, same run.

Shapes of the NTAVS pixel decoder at 224x224 input (levels 28x28, 14x14, 7x7; 8 heads x 32 channels;
4 points; every pixel a query), forward and forward+backward, on CPU and (if present) CUDA.
Usage: python benchmarks/ms_deform_attn.py [--batch 2] [--repeats 5] [--dtype float32]
"""

from __future__ import annotations

import argparse
import time

import torch

from cuda_ext import backend, ms_deform_attn, ms_deform_attn_reference


def _inputs(device: str, dtype: torch.dtype, batch: int, side: int = 224):
    shapes = torch.tensor([[side // 8, side // 8], [side // 16, side // 16], [side // 32, side // 32]], device=device)
    starts = torch.cat([shapes.new_zeros(1), (shapes[:, 0] * shapes[:, 1]).cumsum(0)[:-1]])
    s = int((shapes[:, 0] * shapes[:, 1]).sum())
    value = torch.randn(batch, s, 8, 32, device=device, dtype=dtype, requires_grad=True)
    loc = torch.rand(batch, s, 8, 3, 4, 2, device=device, dtype=dtype, requires_grad=True)
    weights = torch.rand(batch, s, 8, 3, 4, device=device, dtype=dtype).softmax(-1).requires_grad_(True)
    return value, shapes, starts, loc, weights


def _time(fn, device: str, repeats: int) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--dtype", default="float32")
    args = parser.parse_args()
    dtype = getattr(torch, args.dtype)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, batch {args.batch}, {args.dtype}")
    print(f"{'device':6s} {'pass':9s} {'kernel ms':>10s} {'reference ms':>13s} {'speed-up':>9s}")
    for device in devices:
        inputs = _inputs(device, dtype, args.batch)
        for label, backward in (("forward", False), ("fwd+bwd", True)):
            def run(fn, backward=backward, inputs=inputs):
                out = fn(*inputs)
                if backward:
                    out.sum().backward()
            ours = _time(lambda run=run: run(ms_deform_attn), device, args.repeats)
            ref = _time(lambda run=run: run(ms_deform_attn_reference), device, args.repeats)
            print(f"{device:6s} {label:9s} {ours * 1e3:10.2f} {ref * 1e3:13.2f} {ref / ours:8.2f}x"
                  f"   ({backend(device)})")


if __name__ == "__main__":
    main()
