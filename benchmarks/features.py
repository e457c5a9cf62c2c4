"""Speed of the features step.

1. Clips per second of the three-scale log-mel (windows 256/512/1024) on 5 s and 10 s clips: our
   batched torch implementation against the per-clip numpy implementation of the same recipe
   (tests/numpy_logmel.py, its window and filterbank built once per scale as ours are), measured in the
   same run; prints the ratio. Like with like: both on one thread (torch and numpy's BLAS held to 1),
   then ours on every thread against numpy spread over the same number of threads, one clip per task.
2. The whole `avs features` step on a synthetic set (default: demo), split into audio, proposals, I/O.

Usage: python benchmarks/features.py [--clips 64] [--size demo] [--skip-step]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from components.features.logmel import NTAVS_WINDOWS, log_mel_batch, scale_of  # noqa: E402
from components.features.proposals import RegionProposer  # noqa: E402
from components.features.step import compute_features, summary_line  # noqa: E402
from components.synth.generate import generate, resolve_config  # noqa: E402
from tests.numpy_logmel import numpy_log_mel, numpy_tables  # noqa: E402


def _best_of(fn, repeats: int = 3) -> float:
    fn()  # warm-up: allocator, caches, thread pool
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def audio_throughput(num_clips: int, seconds: int, batch: int, threads: int) -> tuple[float, float]:
    """(torch clips/s, numpy clips/s) for the three scales on `num_clips` random clips, each side on
    `threads` threads (numpy: a pool of `threads` workers, one clip per task, BLAS on one thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    clips = rng.standard_normal((num_clips, seconds * 16000)) * 0.1
    waves = torch.from_numpy(clips)
    tables = {w: numpy_tables(scale_of(w).window, scale_of(w).n_fft, scale_of(w).f_min, scale_of(w).f_max)
              for w in NTAVS_WINDOWS}

    def ours() -> None:
        for start in range(0, num_clips, batch):
            for w in NTAVS_WINDOWS:
                log_mel_batch(waves[start:start + batch], w)

    def one_clip(x: np.ndarray) -> None:
        for w in NTAVS_WINDOWS:
            sc = scale_of(w)
            numpy_log_mel(x, sc.window, sc.n_fft, sc.f_min, sc.f_max, tables[w])

    def baseline() -> None:
        if threads == 1:
            for x in clips:
                one_clip(x)
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            list(pool.map(one_clip, clips))

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(limits=1):
            return num_clips / _best_of(ours), num_clips / _best_of(baseline)
    finally:
        torch.set_num_threads(before)


def main() -> None:
    parser = argparse.ArgumentParser(description="features step benchmark")
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", default="demo")
    parser.add_argument("--skip-step", action="store_true")
    args = parser.parse_args()

    print(f"torch {torch.__version__}, up to {torch.get_num_threads()} threads")
    print(f"{'clip':>6s} {'threads':>7s} {'torch clips/s':>14s} {'numpy clips/s':>14s} {'ratio':>6s}")
    for threads in sorted({1, torch.get_num_threads()}):
        for seconds in (5, 10):
            ours, base = audio_throughput(args.clips, seconds, args.batch, threads)
            print(f"{seconds:>5d}s {threads:>7d} {ours:14.1f} {base:14.1f} {ours / base:6.2f}x")

    if not args.skip_step:
        with tempfile.TemporaryDirectory() as tmp:
            data = Path(tmp) / "data"
            generate(data, resolve_config(args.size), seed=0)
            summary = compute_features(data, Path(tmp) / "features", RegionProposer())
            print(f"whole step on the {args.size} set: {summary_line(summary)}")


if __name__ == "__main__":
    main()
