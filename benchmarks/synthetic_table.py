"""The project's accuracy table: the full two-stage recipe against three ablations, one budget, one run.

  full   stage 1 then stage 2 with the stage-1 prior (NTAVS queries)
  A      audio swapped between clips at train and test (the model cannot use the audio)
  B      single stage: the semantic model trained alone (no stage 1, no prior), after the same audio
         pretraining, for stage 1's and stage 2's steps together (--budget total, the default: the same
         compute as full) or for stage 2's steps (--budget per-stage: the paper's comparison, where each
         stage is trained to its own schedule and the semantic models get the same one)
  N      stage 2 trained without the prior input, from stage-1 weights (two stages, no prior)
  P      stage 2 trained on ground-truth priors only (the paper's recipe; full mixes in stage-1 predictions)
  C      trivial averaged-audio queries instead of the NTAVS queries

Every variant trains with the same steps on the same synthetic data (generated here from the `synth`
section of --params), then is evaluated on test; S4/MS3 come from stage 1, AVSS from stage 2, which
starts from its variant's stage-1 weights as in the pipeline. N (no prior input) and P (ground-truth
training priors only) change only stage 2, so they reuse the full recipe's stage 1 and priors (same
S4/MS3 numbers by construction). B has no stage 1, so no S4/MS3 numbers. AVSS is reported in the
AVSBench form (mean over 71 classes) and over the classes present in the test set.

A variant whose metrics exist under --out is not run again, and an interrupted training resumes, so
the table can be built in parts: e.g. `--variants full B` and `--variants A C` in two processes of one
thread each (after one `--prepare`), then a last call with no --variants prints the whole table.
`--set KEY=VALUE` changes one parameter of --params for this run (e.g. `--set synth.avss_classes=23`,
`--set train.seed=1`). The folder records the parameters it ran with (params.json) and its schedule
(schedule.json), and refuses a later call with others.
Usage: python benchmarks/synthetic_table.py [--params params.yaml] [--set KEY=VALUE ...] [--steps1 N]
       [--steps2 N] [--out DIR] [--budget total|per-stage] [--variants full A B N P C] [--threads N]
       [--prepare]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import torch

from components.common import StepError, write_json_atomic
from components.evaluate.run import evaluate
from components.features.proposals import RegionProposer
from components.features.step import compute_features
from components.params import Params, load_params
from components.synth.generate import generate, resolve_config
from components.train.loop import TrainConfig, train, train_config
from components.train.masks import predict_masks

VARIANTS = {
    "full": {},
    "A: audio swapped": {"audio_swap": True},
    "B: single stage": {"single_stage": True},
    "N: no prior input": {"no_prior": True},
    "P: ground-truth prior only": {"prior_truth": 1.0, "same_stage1": True},
    "C: trivial queries": {"model": {"queries": "trivial"}},
}


def run_variant(name: str, change: dict, base1: TrainConfig, base2: TrainConfig, data: Path, features: Path,
                work: Path, budget: str = "total") -> dict:
    """Train and evaluate one variant; returns its test metrics. budget: B's steps, "total" (stage 1's
    plus stage 2's) or "per-stage" (stage 2's)."""
    single_stage = change.pop("single_stage", False)
    no_prior = change.pop("no_prior", False)
    reuse = no_prior or change.pop("same_stage1", False)  # a stage-2-only change: full's stage 1 and priors
    # a variant's model overrides go on top of each stage's own, not instead of them
    cfg1, cfg2 = (dataclasses.replace(base, **{**change, "model": {**base.model, **change.get("model", {})}})
                  for base in (base1, base2))
    folder = work / name.split(":")[0]
    if (folder / "metrics.json").is_file():
        return json.loads((folder / "metrics.json").read_text())
    if single_stage:  # the same audio pretraining; with budget "total" stage 1's steps go to it too
        steps = cfg1.steps + cfg2.steps if budget == "total" else cfg2.steps
        cfg2 = dataclasses.replace(cfg2, steps=steps, model={**cfg2.model, "prior": False},
                                   audio_pretrain_steps=cfg1.audio_pretrain_steps,
                                   audio_pretrain_sources=cfg1.audio_pretrain_sources,
                                   audio_pretrain_head=cfg1.audio_pretrain_head,
                                   audio_pretrain_avss=cfg1.audio_pretrain_avss)
        train(cfg2, data, features, folder / "stage2")
        return evaluate(data, features, stage1=None, stage2=folder / "stage2" / "best.pt", priors=None,
                        out=folder / "report", metrics_path=folder / "metrics.json")
    stage1 = work / "full" / "stage1" if reuse else folder / "stage1"
    priors = work / "full" / "priors" if reuse else folder / "priors"
    if no_prior:
        cfg2 = dataclasses.replace(cfg2, model={**cfg2.model, "prior": False})
    if not reuse:
        train(cfg1, data, features, stage1)
        predict_masks(data, features, stage1 / "best.pt", priors)
    train(cfg2, data, features, folder / "stage2", priors, init=stage1 / "best.pt")
    return evaluate(data, features, stage1=stage1 / "best.pt", stage2=folder / "stage2" / "best.pt", priors=priors,
                    out=folder / "report", metrics_path=folder / "metrics.json")


def load(path: Path, overrides: list[str], **values: object) -> tuple[Params, dict]:
    """The typed parameters of `path` with `--set` overrides and the given synth values ({"size": ...},
    None: unchanged), and the same as a JSON mapping (the folder's record); SystemExit naming what is
    wrong."""
    try:
        params = load_params(path, overrides, {f"synth.{k}": v for k, v in values.items()})
    except StepError as exc:
        raise SystemExit(str(exc)) from None
    return params, json.loads(json.dumps(dataclasses.asdict(params)))


def train_configs(params: Params, steps1: int | None, steps2: int | None,
                  val_every: int | None) -> tuple[TrainConfig, TrainConfig]:
    """Stage 1's and stage 2's TrainConfig, with the given steps and validation interval where not None."""
    return (train_config(params, 1, steps=steps1, val_every=val_every),
            train_config(params, 2, steps=steps2, val_every=val_every))


def differences(held: object, wanted: object, prefix: str = "") -> list[str]:
    """Dotted keys at which two parameter mappings differ, e.g. ["train.seed: 0 -> 1"]."""
    if isinstance(held, dict) and isinstance(wanted, dict):
        return [line for key in sorted(set(held) | set(wanted), key=str)
                for line in differences(held.get(key), wanted.get(key), f"{prefix}{key}.")]
    return [] if held == wanted else [f"{prefix.rstrip('.')}: {held!r} -> {wanted!r}"]


def claim(record: Path, stamp: dict, what: str, unrecorded_runs: bool = False) -> None:
    """Record `stamp` in `record` (a JSON file in the --out folder), or exit naming the folder and what
    differs when the record holds another one (`what`, e.g. "other parameters"). Finished variants under
    --out are reused, so runs made otherwise must not mix in. unrecorded_runs: the folder already holds
    such runs but no record, which is refused too. The record is written whole (temp file, rename), so
    parts started together never read half of it."""
    held = json.loads(record.read_text()) if record.is_file() else None
    if held != stamp and (held is not None or unrecorded_runs):
        found = "; ".join(differences(held, stamp)) if held is not None else "not recorded"
        raise SystemExit(f"{record.parent} holds runs on {what} ({found}): use another --out")
    if held is None:
        write_json_atomic(record, stamp)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one parameter of --params for this run (repeatable)")
    parser.add_argument("--size", help="default: synth.size of --params")
    parser.add_argument("--seed", type=int, help="default: synth.seed of --params")
    parser.add_argument("--steps1", type=int)
    parser.add_argument("--steps2", type=int)
    parser.add_argument("--val-every", type=int, help="default: train.val_every of --params")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--budget", choices=["total", "per-stage"], default="total",
                        help="B's steps: stage 1's plus stage 2's (total) or stage 2's (per-stage)")
    parser.add_argument("--variants", nargs="+", choices=[v.split(":")[0] for v in VARIANTS],
                        help="run only these (N and P read full's stage 1 and priors: run them with or after full)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--prepare", action="store_true", help="only generate the data and features")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.out or Path(tempfile.mkdtemp(prefix="avs-table-"))
    start = time.perf_counter()
    params, record = load(args.params, args.set, size=args.size, seed=args.seed)
    base1, base2 = train_configs(params, args.steps1, args.steps2, args.val_every)
    data, features = work / "data", work / "features"
    claim(work / "params.json", record, "other parameters", data.is_dir())
    if not data.is_dir():
        generate(data, resolve_config(params.synth.size, **params.synth.knobs()), seed=params.synth.seed)
    if not features.is_dir():
        compute_features(data, features, RegionProposer())
    if args.prepare:
        return
    claim(work / "schedule.json", {"steps1": base1.steps, "steps2": base2.steps, "val_every": base1.val_every,
                                   "budget": args.budget}, "another schedule")
    rows = {}
    for name, change in VARIANTS.items():
        if args.variants and name.split(":")[0] not in args.variants:
            continue
        began = time.perf_counter()
        rows[name] = run_variant(name, dict(change), base1, base2, data, features, work, args.budget)
        print(f"{name}: {(time.perf_counter() - began) / 60:.1f} min", flush=True)
    if args.variants:
        return
    write_json_atomic(work / "table.json", rows)
    print(f"size={params.synth.size} seed={params.synth.seed} steps={base1.steps}/{base2.steps} budget={args.budget} "
          f"preset={base1.preset} ({(time.perf_counter() - start) / 60:.1f} min, runs in {work})")
    print("| variant | S4 mIoU | S4 F | MS3 mIoU | MS3 F | AVSS mIoU | AVSS F | AVSS mIoU (present) "
          f"| AVSS F (present) |\n|{' --- |' * 9}")
    for name, m in rows.items():
        cells = [f"{m[subset]['test'][key]:.3f}" if subset in m else "-"
                 for subset, key in (("s4", "miou"), ("s4", "fscore"), ("ms3", "miou"), ("ms3", "fscore"),
                                     ("avss", "miou"), ("avss", "fscore"), ("avss", "miou_present"),
                                     ("avss", "fscore_present"))]
        print(f"| {name} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
