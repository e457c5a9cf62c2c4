"""Parameters, FLOPs and CPU forward latency of every model preset, one clip of T frames at SIZE x SIZE.

FLOPs are counted by torch's FlopCounterMode (matmuls and convolutions; the deformable-attention
sampling itself is not counted). Latency is the best of --repeats forward passes after one warm-up,
on this machine's CPU threads, with the compiled deformable-attention kernel when built.
Usage: python benchmarks/model_presets.py [--size 224] [--frames 5] [--repeats 2] [--presets tiny ...]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from cuda_ext import backend
from model import PRESETS, create_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--presets", nargs="+", default=list(PRESETS))
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, deformable attention: {backend('cpu')}, "
          f"input 1 x {args.frames} x 3 x {args.size} x {args.size}")
    print(f"{'preset':10s} {'params M':>9s} {'trainable M':>12s} {'GFLOPs':>8s} {'latency s':>10s} {'s/frame':>8s}")
    for name in args.presets:
        torch.manual_seed(0)
        net = create_model(name).eval()
        total = sum(p.numel() for p in net.parameters()) / 1e6
        trainable = sum(p.numel() for p in net.parameters() if p.requires_grad) / 1e6
        frames = torch.randn(1, args.frames, 3, args.size, args.size)
        audio = torch.randn(1, args.frames, 3, 96, 64)
        extra = {"maskige": torch.randn_like(frames)} if net.cfg.maskige else {}
        counter = FlopCounterMode(display=False)
        with counter:  # also the warm-up pass; grad mode on, as FlopCounterMode's module tracker needs
            net(frames, audio, **extra)
        with torch.no_grad():
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                net(frames, audio, **extra)
                best = min(best, time.perf_counter() - start)
        gflops = counter.get_total_flops() / 1e9
        print(f"{name:10s} {total:9.1f} {trainable:12.1f} {gflops:8.1f} {best:10.2f} {best / args.frames:8.3f}",
              flush=True)


if __name__ == "__main__":
    main()
