"""Eyes, ears or binding? Stage 1 of the recipe against three diagnostics, over seeds, on the demo data.

  recipe        stage 1 as params.yaml trains it
  label oracle  the audio replaced by the classes that sound in each second (a multi-hot read from the
                generator, through a learned embedding; no audio pretraining): perfect hearing, so the
                score is the ceiling of the visual side and the binding in the same budget
  audio swapped every clip hears another clip's audio at train and test: what the model gets without
                the audio
  audio-blind   no training: every visible object predicted sounding (the data's own baseline)

Reading: a recipe far below the oracle loses on hearing; an oracle far below 1 loses on seeing or binding;
a recipe close to "audio swapped" does not use the audio. Each trained figure is the test (and val) mIoU
of the best-on-val checkpoint, given as mean +- standard deviation over the seeds (`train.seed`; the data
stay those of `synth.seed`).

Runs are kept under --out and resumed, so the table can be built in parts (`--variants recipe` and
`--variants oracle swapped` in two processes of one thread each, then once without --variants to print).
The recipe rows can instead be read from the pipeline's own evaluations at the same seeds
(`--recipe-metrics` with one metrics/evaluation.json per seed, e.g. of `dvc exp run -S train.seed=N`):
its stage 1 is the recipe, trained and scored the same way.
Usage: python benchmarks/diagnostics.py [--params params.yaml] [--set KEY=VALUE ...] [--seeds 0 1 2]
       [--steps N] [--out DIR] [--variants recipe oracle swapped] [--threads N]
       [--recipe-metrics EVALUATION.json ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

from components.common import write_json_atomic
from components.features.proposals import RegionProposer
from components.features.step import compute_features
from components.synth.baseline import audio_blind_scores
from components.synth.generate import generate, resolve_config, sounding_classes
from components.train.checkpoint import load_trained
from components.train.data import ClipDataset
from components.train.loop import TrainConfig, train
from components.train.predict import predict
from model.metrics import s4_miou

_spec = importlib.util.spec_from_file_location("synthetic_table", Path(__file__).with_name("synthetic_table.py"))
table = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(table)

VARIANTS = ("recipe", "oracle", "swapped")
SUBSETS = ("s4", "ms3")


def variant_config(name: str, base: TrainConfig, seed: int) -> TrainConfig:
    """Stage 1's TrainConfig of one diagnostic at one training seed."""
    cfg = dataclasses.replace(base, seed=seed)
    if name == "oracle":
        return dataclasses.replace(cfg, audio_pretrain_steps=0, model={**cfg.model, "audio_input": "classes"})
    if name == "swapped":
        return dataclasses.replace(cfg, audio_swap=True)
    return cfg


def scores(run: Path, data: Path, features: Path, audio_classes: dict | None, swap: bool) -> dict:
    """{subset: {split: mIoU}} of run/best.pt on the S4 and MS3 val and test clips."""
    from components.train.loop import _swap_permutation

    net, cfg = load_trained(run / "best.pt")
    out: dict[str, dict[str, float]] = {}
    for subset in SUBSETS:
        out[subset] = {}
        for split in ("val", "test"):
            dataset = ClipDataset(data, features, 1, split, cfg["input_size"], subsets=(subset,),
                                  audio_classes=audio_classes)
            if swap:
                dataset.audio_swap = _swap_permutation(len(dataset), cfg["seed"])
            probs, truth = [], []
            for _, p, batch in predict(net, dataset, torch.device("cpu")):
                probs.append(p[batch["has_gt"], 1])
                truth.append(batch["labels"][batch["has_gt"]] == 1)
            out[subset][split] = s4_miou(torch.cat(probs), torch.cat(truth))
    return out


def run_one(name: str, cfg: TrainConfig, data: Path, features: Path, work: Path,
            audio_classes: dict | None) -> dict:
    """Train one diagnostic at one seed (resuming), score it, keep the scores in its folder."""
    folder = work / f"{name}-seed{cfg.seed}"
    if (folder / "scores.json").is_file():
        return json.loads((folder / "scores.json").read_text())
    began = time.perf_counter()
    train(cfg, data, features, folder, progress=False, audio_classes=audio_classes if name == "oracle" else None)
    result = scores(folder, data, features, audio_classes if name == "oracle" else None, name == "swapped")
    result["minutes"] = (time.perf_counter() - began) / 60
    write_json_atomic(folder / "scores.json", result)
    return result


def recipe_from_evaluation(path: Path) -> dict:
    """{subset: {split: mIoU}} of the S4/MS3 stage-1 figures in a pipeline's metrics/evaluation.json."""
    try:
        metrics = json.loads(path.read_text())
        return {subset: {split: metrics[subset][split]["miou"] for split in ("val", "test")} for subset in SUBSETS}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SystemExit(f"{path}: not an evaluation with S4/MS3 val and test mIoU ({exc!r})") from None


def summary(values: list[float]) -> str:
    """'mean +- std' (std over the seeds; 0 for one seed)."""
    spread = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.3f} +- {spread:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="change one parameter of --params for this run (repeatable)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="training seeds")
    parser.add_argument("--steps", type=int, help="stage-1 steps (default: train.stage1.steps of --params)")
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temporary folder)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, help="train only these (then stop)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--recipe-metrics", type=Path, nargs="+", metavar="EVALUATION_JSON",
                        help="the recipe rows from these pipeline evaluations (one per seed, in --seeds order)")
    args = parser.parse_args()
    if args.recipe_metrics and len(args.recipe_metrics) != len(args.seeds):
        raise SystemExit(f"--recipe-metrics: {len(args.recipe_metrics)} files for {len(args.seeds)} seeds")
    if args.threads:
        torch.set_num_threads(args.threads)
    work = args.out or Path(tempfile.mkdtemp(prefix="avs-diagnostics-"))
    params, record = table.load(args.params, args.set)
    base, _ = table.train_configs(params, args.steps, None, None)
    synth = params.synth
    data, features = work / "data", work / "features"
    table.claim(work / "params.json", record, "other parameters", data.is_dir())
    table.claim(work / "schedule.json", {"steps1": base.steps}, "another schedule")
    synth_cfg = resolve_config(synth.size, **synth.knobs())
    if not data.is_dir():
        generate(data, synth_cfg, seed=synth.seed)
    if not features.is_dir():
        compute_features(data, features, RegionProposer())
    oracle = {key: torch.from_numpy(hot) for key, hot in sounding_classes(synth_cfg, synth.seed).items()}
    rows: dict[str, list[dict]] = {}
    if args.recipe_metrics:
        rows["recipe"] = [recipe_from_evaluation(path) for path in args.recipe_metrics]
    for name in args.variants or VARIANTS:
        if name in rows:
            continue
        for seed in args.seeds:
            result = run_one(name, variant_config(name, base, seed), data, features, work, oracle)
            rows.setdefault(name, []).append(result)
            print(f"{name} seed {seed}: " + ", ".join(f"{s} {result[s]['test']:.3f}" for s in SUBSETS)
                  + f" ({result['minutes']:.1f} min)", flush=True)
    if args.variants:
        return
    blind = {split: audio_blind_scores(synth_cfg, synth.seed, (split,)) for split in ("val", "test")}
    write_json_atomic(work / "diagnostics.json", {"runs": rows, "audio_blind": blind})
    print(f"\nstage 1, {base.steps} steps, preset {base.preset} at {base.input_size} px, seeds "
          f"{' '.join(map(str, args.seeds))}; test (val) mIoU, mean +- std over seeds ({work})")
    print("| diagnostic | S4 test | MS3 test | S4 val | MS3 val |\n| --- | --- | --- | --- | --- |")
    for name, runs in rows.items():
        cells = [summary([r[s][split] for r in runs]) for split in ("test", "val") for s in SUBSETS]
        print(f"| {name} | {' | '.join(cells)} |")
    cells = [f"{blind[split][s].miou:.3f}" for split in ("test", "val") for s in SUBSETS]
    print(f"| audio-blind | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
