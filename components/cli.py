"""The `avs` command: one subcommand per pipeline step, each a thin shell over a plain function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from components.common import StepError


def _cmd_synth(args: argparse.Namespace) -> int:
    from components.synth.generate import generate, resolve_config

    cfg = resolve_config(args.size, image_size=args.image_size, min_distractors=args.min_distractors,
                         max_distractors=args.max_distractors, max_sources=args.max_sources,
                         noise_level=args.noise_level)
    counts = generate(args.out, cfg, seed=args.seed, overwrite=args.overwrite)
    print(f"synth: wrote {sum(counts.values())} clips to {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from components.validate.run import validate_dataset
    from components.validate.suite import Thresholds

    th = Thresholds(sample_rate=args.sample_rate, min_rms=args.min_rms,
                    min_duration_fraction=args.min_duration_fraction)
    summary = validate_dataset(args.data, args.out, th, metrics=args.metrics)
    docs = Path(args.out) / "data_docs" / "index.html"
    if summary["success"]:
        print(f"validate: OK, {summary['clips']} clips pass every check; data docs: {docs}")
        return 0
    print(f"validate: FAILED, {summary['failing_clips']} clip(s) fail "
          f"{len(summary['failed_checks'])} check(s) ({', '.join(summary['failed_checks'])})", file=sys.stderr)
    for line in summary["failures"]:
        print(f"  {line}", file=sys.stderr)
    print(f"validate: details in {Path(args.out) / 'results.json'}; data docs: {docs}", file=sys.stderr)
    return 1


def _cmd_features(args: argparse.Namespace) -> int:
    from components.common import write_json_atomic
    from components.features.proposals import make_proposer
    from components.features.step import compute_features, summary_line

    checkpoint = Path(args.sam_checkpoint) if args.sam_checkpoint else None  # "" from params.yaml means none
    proposer = make_proposer(args.mask_source, checkpoint, args.sam_model_type)
    summary = compute_features(args.data, args.out, proposer, args.maskige_size, args.batch_size)
    if args.metrics is not None:
        write_json_atomic(args.metrics, summary)
    print(summary_line(summary))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `avs` with every step's subcommand."""
    parser = argparse.ArgumentParser(
        prog="avs", description="Audio-visual segmentation pipeline: each subcommand is one pipeline step.")
    sub = parser.add_subparsers(dest="command", metavar="STEP", required=True)

    p = sub.add_parser("synth", help="write a synthetic AVSBench (S4, MS3, AVSS) in the real layout")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", default="demo", help="tiny | demo | large (default: demo)")
    p.add_argument("--image-size", type=int, help="S4/MS3 frame side in pixels (AVSS: frame height)")
    p.add_argument("--min-distractors", type=int, help="fewest silent visible objects per clip")
    p.add_argument("--max-distractors", type=int, help="most silent visible objects per clip")
    p.add_argument("--max-sources", type=int, help="most sounding objects in multi-source clips")
    p.add_argument("--noise-level", type=float, help="background noise RMS relative to a source")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("validate", help="check an AVSBench copy with a great-expectations suite")
    p.add_argument("--data", type=Path, required=True, help="folder holding AVSBench_object/ and/or AVSBench_semantic/")
    p.add_argument("--out", type=Path, required=True, help="report folder (manifest, results, HTML data docs)")
    p.add_argument("--metrics", type=Path, help="also write the summary JSON here (for DVC)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--min-rms", type=float, default=1e-3)
    p.add_argument("--min-duration-fraction", type=float, default=0.9)
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("features", help="hierarchical log-mel scales and maskiges for every clip")
    p.add_argument("--data", type=Path, required=True, help="folder holding AVSBench_object/ and/or AVSBench_semantic/")
    p.add_argument("--out", type=Path, required=True, help="output folder (mirrors the dataset layout)")
    p.add_argument("--metrics", type=Path, help="also write counts and timings as JSON here (for DVC)")
    p.add_argument("--mask-source", default="regions", help="regions (offline default) | sam")
    p.add_argument("--sam-checkpoint", default="", help="local SAM checkpoint file for --mask-source sam")
    p.add_argument("--sam-model-type", default="vit_b", help="SAM registry name of the checkpoint")
    p.add_argument("--maskige-size", type=int, default=224, help="side of the saved maskiges in pixels")
    p.add_argument("--batch-size", type=int, default=32, help="clips per batched spectrogram computation")
    p.set_defaults(func=_cmd_features)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run `avs` with `argv`; returns the exit code (0 ok, 1 check failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except StepError as exc:
        print(f"avs {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
