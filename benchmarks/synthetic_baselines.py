"""How hard is the synthetic benchmark without audio? Prints the audio-blind baseline per subset.

Usage: python benchmarks/synthetic_baselines.py [--size demo] [--seed 0] [--splits test]
The baseline predicts every visible object as sounding; a perfect audio-visual model scores 1.0.
"""

from __future__ import annotations

import argparse
import time

from components.synth.baseline import audio_blind_scores
from components.synth.generate import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="demo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--splits", nargs="+", default=["test"])
    args = parser.parse_args()
    start = time.perf_counter()
    scores = audio_blind_scores(resolve_config(args.size), args.seed, tuple(args.splits))
    print(f"audio-blind baseline ('segment every visible object'), size={args.size} seed={args.seed} "
          f"splits={','.join(args.splits)}  ({time.perf_counter() - start:.1f} s)")
    print(f"{'subset':8s} {'baseline':>9s} {'perfect':>8s} {'ratio':>6s}")
    for part, (miou, perfect) in scores.items():
        print(f"{part:8s} {miou:9.3f} {perfect:8.3f} {miou / perfect:6.3f}")


if __name__ == "__main__":
    main()
