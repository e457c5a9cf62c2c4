"""How hard is the synthetic benchmark without audio? Prints the audio-blind baseline per subset.

Usage: python benchmarks/synthetic_baselines.py [--params params.yaml] [--size demo] [--seed 0] [--splits test]
The data knobs (object sizes, distractors, noise, ...) come from the `synth` section of --params.
The baseline predicts every visible object as sounding; a perfect audio-visual model scores 1.0 on S4/MS3
("perfect" for AVSS, whose mIoU averages over all 71 classes; "present" averages over the classes that
occur, the form the gate reads).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from components.params import load_params
from components.synth.baseline import audio_blind_scores
from components.synth.generate import resolve_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--size", help="default: synth.size of --params")
    parser.add_argument("--seed", type=int, help="default: synth.seed of --params")
    parser.add_argument("--splits", nargs="+", default=["test"])
    args = parser.parse_args()
    synth = load_params(args.params, values={"synth.size": args.size, "synth.seed": args.seed}).synth
    args.size, args.seed = synth.size, synth.seed
    start = time.perf_counter()
    scores = audio_blind_scores(resolve_config(synth.size, **synth.knobs()), synth.seed, tuple(args.splits))
    print(f"audio-blind baseline ('segment every visible object'), size={args.size} seed={args.seed} "
          f"splits={','.join(args.splits)}  ({time.perf_counter() - start:.1f} s)")
    print(f"{'subset':8s} {'baseline':>9s} {'perfect':>8s} {'ratio':>6s} {'present':>8s}")
    for part, (miou, perfect, present) in scores.items():
        print(f"{part:8s} {miou:9.3f} {perfect:8.3f} {miou / perfect:6.3f} {present:8.3f}")


if __name__ == "__main__":
    main()
