"""The `avs` command: one subcommand per pipeline step, each a thin shell over a plain function."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from components.common import StepError

if TYPE_CHECKING:
    from components.params import Params


def _params(args: argparse.Namespace, section: str, options: Sequence[str] = (), **values: object) -> Params:
    """The parameters of one step: --params (default ./params.yaml, else the defaults), its --set overrides,
    then each command-line option in `options` (its dest is the key in `section`) and each `values` entry
    (key in `section` -> value) that was given."""
    from components.params import load_params

    given = {f"{section}.{name}": getattr(args, name) for name in options}
    given.update({f"{section}.{name}": value for name, value in values.items()})
    return load_params(args.params, args.set, {k: str(v) if isinstance(v, Path) else v for k, v in given.items()})


SYNTH_OPTIONS = ("size", "seed", "image_size", "min_distractors", "max_distractors", "max_sources", "noise_level",
                 "min_radius", "max_radius", "s4_categories", "avss_classes", "quirks")


def _cmd_synth(args: argparse.Namespace) -> int:
    from components.synth.generate import generate, resolve_config

    synth = _params(args, "synth", SYNTH_OPTIONS).synth
    cfg = resolve_config(synth.size, **synth.knobs())
    counts = generate(args.out, cfg, seed=synth.seed, overwrite=args.overwrite, quirks=synth.quirks)
    print(f"synth: wrote {sum(counts.values())} clips to {args.out} "
          f"({', '.join(f'{k} {v}' for k, v in counts.items())})")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    from components.validate.run import validate_dataset

    th = _params(args, "validate", ("sample_rate", "min_rms", "min_duration_fraction")).validate
    summary = validate_dataset(args.data, args.out, th, metrics=args.metrics)
    docs = Path(args.out) / "data_docs" / "index.html"
    if summary["warnings"]:
        print(f"validate: {summary['warned_clips']} clip(s) warned by {', '.join(summary['warned_checks'])} "
              "(the steps handle these; validate.warnings in params.yaml lists the warning checks):", file=sys.stderr)
        for line in summary["warnings"]:
            print(f"  warning: {line}", file=sys.stderr)
    if summary["success"]:
        warned = f", {len(summary['warnings'])} warning(s) above" if summary["warnings"] else ""
        print(f"validate: OK, {summary['clips']} clips pass every error check{warned}; data docs: {docs}")
        return 0
    print(f"validate: FAILED, {summary['failing_clips']} clip(s) fail "
          f"{len(summary['failed_checks'])} check(s) ({', '.join(summary['failed_checks'])})", file=sys.stderr)
    for line in summary["failures"]:
        print(f"  {line}", file=sys.stderr)
    print(f"validate: details in {Path(args.out) / 'results.json'}; data docs: {docs}", file=sys.stderr)
    return 1


def _cmd_features(args: argparse.Namespace) -> int:
    from components.common import write_json_atomic
    from components.features.step import features_from_params, summary_line

    features = _params(args, "features", ("mask_source", "sam_checkpoint", "sam_model_type", "maskige_size",
                                          "batch_size")).features
    summary = features_from_params(args.data, args.out, features)
    if args.metrics is not None:
        write_json_atomic(args.metrics, summary)
    print(summary_line(summary))
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from components.train.loop import train, train_config

    cfg = train_config(_params(args, "train", ("seed",)), args.stage, steps=args.steps)
    summary = train(cfg, args.data, args.features, args.out, args.priors, init=args.init)
    print(f"train: stage {cfg.stage}, {summary['steps']} steps, best val mIoU {summary['best_val_miou']:.3f} "
          f"-> {Path(args.out) / 'best.pt'}")
    return 0


def _cmd_pretrain_visual(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from components.train.visual_pretrain import pretrain_visual
    from model.config import get_config

    params = _params(args, "pretrain_visual")
    train = params.train
    try:  # the backbone the training stages build: the preset's, or train.model.backbone
        backbone = train.model.get("backbone") or get_config(train.preset).backbone
    except KeyError as exc:
        raise StepError(f"train.preset: {exc.args[0]}") from None
    size = train.input_size
    report = pretrain_visual(backbone, size, args.out, **asdict(params.pretrain_visual))
    print(f"pretrain-visual: {backbone} at {size} px, {report['steps']} steps in {report['seconds']:.0f} s, "
          f"val accuracy on object pixels: colour {report['val_colour_accuracy']:.3f}, shape "
          f"{report['val_shape_accuracy']:.3f}, both {report['val_look_accuracy']:.3f} -> {args.out}")
    return 0


def _cmd_predict_masks(args: argparse.Namespace) -> int:
    from components.train.masks import predict_masks

    counts = predict_masks(args.data, args.features, args.model, args.out)
    print(f"predict-masks: priors for {sum(counts.values())} clips ({counts}) in {args.out}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from components.evaluate.run import evaluate, metrics_table

    runs = {f"stage{i}": p.parent for i, p in ((1, args.stage1), (2, args.stage2)) if p is not None}
    metrics = evaluate(args.data, args.features, stage1=args.stage1, stage2=args.stage2, priors=args.priors,
                       out=args.out, metrics_path=args.metrics, runs=runs)
    print(metrics_table(metrics))
    return 0


def _cmd_gate(args: argparse.Namespace) -> int:
    from components.evaluate.gate import gate

    params = _params(args, "gate").gate
    decision = gate(args.metrics, params.minimums, params.margin, args.champion, args.out)
    print(f"gate: {'PASS' if decision['passed'] else 'FAIL'} - " + "; ".join(decision["reasons"]))
    return 0 if decision["passed"] or not args.strict else 1


def _cmd_summary(args: argparse.Namespace) -> int:
    from components.evaluate.run import metrics_table

    try:
        metrics = json.loads(Path(args.metrics).read_text())
        decision = json.loads(Path(args.decision).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StepError(f"summary: {exc}") from exc
    print(metrics_table(metrics))
    print(f"\ngate: {'PASS' if decision['passed'] else 'FAIL'} - " + "; ".join(decision["reasons"]))
    return 0


def _drift_model(args: argparse.Namespace):
    if args.model is None:
        return None, None
    from components.drift.sources import load_predictor

    return load_predictor(args.model)


def _cmd_drift_reference(args: argparse.Namespace) -> int:
    from components.drift.run import build_reference

    predictor, info = _drift_model(args)
    split = _params(args, "drift", (), reference_split=args.split).drift.reference_split
    split = None if split == "all" else split
    table = build_reference(args.data, args.out, split, predictor, info, strict=args.strict)
    skipped = f", {len(table.skipped)} unreadable clip(s) skipped" if table.skipped else ""
    for line in table.skipped:
        print(f"  skipped {line}", file=sys.stderr)
    print(f"drift-reference: {len(table.rows)} clips ({split or 'every'} split of {args.data}){skipped}"
          f"{', with predictions' if predictor else ''} -> {args.out}")
    return 0


def _cmd_drift(args: argparse.Namespace) -> int:
    from components.drift.run import run_drift

    settings = _params(args, "drift", ("alpha",)).drift
    predictor, info = _drift_model(args)
    summary = run_drift(args.reference, args.current, args.out, settings, predictor, info,
                        split=None if args.split == "all" else args.split, last=args.last, strict=args.strict,
                        max_seconds=settings.max_seconds)
    for line in summary["current"]["skipped_clips"]:
        print(f"  skipped {line}", file=sys.stderr)
    if summary["current"]["skipped"]:
        print(f"drift: {summary['current']['skipped']} unreadable clip(s) skipped (--strict makes them fatal)",
              file=sys.stderr)
    for note in summary["notes"]:
        print(f"drift: note: {note}", file=sys.stderr)
    print(f"{summary['verdict']}; report: {Path(args.out) / 'report.html'}")
    return 1 if summary["drift"] else 0


def _cmd_package(args: argparse.Namespace) -> int:
    from components.serve.package import package

    params = _params(args, "package")
    record = package(args.stage1, args.stage2, args.out, args.gate, params.package, params.features, force=args.force)
    if record["packaged"]:
        print(f"package: {Path(args.out) / record['mar']} ({record['bytes'] / 1e6:.1f} MB, "
              f"sha256 {record['sha256'][:12]})")
    else:
        print(f"package: not built - {'; '.join(record['reasons'])} (recorded in {Path(args.out) / 'package.json'})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from components.serve import server

    if args.action == "start":
        options = ("model_store", "address", "inference_port", "management_port", "metrics_port", "token_auth",
                   "token_expiration_min")
        settings = server.settings_from(_params(args, "serve", options), args.run_dir)
        state = server.start(settings, timeout=args.timeout)
        auth = f"token auth on, keys in {state['key_file']}" if state["token_auth"] else "token auth off"
        print(f"serve: ready, POST videos to {state['predict_url']} ({auth}); metrics {state['metrics_url']}/metrics; "
              f"logs in {state['logs']}")
        return 0
    if args.action == "stop":
        stopped = server.stop(args.run_dir)
        print("serve: stopped" if stopped else f"serve: no server running from {args.run_dir}")
        return 0
    state = server.status(args.run_dir)
    print(json.dumps(state, indent=2))
    return 0 if state["ready"] else 1


def _cmd_deploy(args: argparse.Namespace) -> int:
    from components.deploy.run import run_deploy, settings_from_params

    params = _params(args, "deploy", ("namespace", "image", "replicas", "gpus", "model_uri", "s3_endpoint", "claim",
                                      "token_auth"), create_namespace=args.create_namespace or None,
                     timeout_s=args.timeout)
    settings = settings_from_params(params.deploy, params.package)
    timeout = params.deploy.timeout_s
    summary = run_deploy(settings, manifests=args.manifests, gate=args.gate, upload=args.upload, render_to=args.render,
                         kubeconfig=args.kubeconfig, context=args.context, timeout=timeout, force=args.force)
    if "rendered" in summary:
        if args.render != "-":
            print(f"deploy: {len(summary['objects'])} valid objects written to {args.render}", file=sys.stderr)
        return 0
    print(f"deploy: {settings.namespace}/avs-serving rolled out, {summary['ready']}/{summary['wanted']} ready "
          f"in {summary['seconds']} s ({', '.join(summary['applied'])})")
    return 0


def _cmd_predict(args: argparse.Namespace) -> int:
    from components.predict_video import predict_videos

    features = _params(args, "features").features
    outcomes = predict_videos(args.videos, args.model, args.out, fps=args.fps, window=args.window,
                              strict=args.strict, max_seconds=args.max_seconds, mask_format=args.mask_format,
                              device=args.device, features=features)
    failed = [o for o in outcomes if o.error]
    for o in outcomes:
        if o.error:
            print(f"  skipped {o.error}", file=sys.stderr)
        else:
            print(f"predict: {o.video}: {o.frames} frames ({o.seconds:.1f} s) -> {o.json}, {o.overlay}")
    if failed:
        print(f"predict: {len(failed)} of {len(outcomes)} video(s) failed (named above)", file=sys.stderr)
    return 1 if failed else 0


def _cmd_export_video(args: argparse.Namespace) -> int:
    from components.export_video import export_clip, find_clip

    clip = find_clip(args.data, args.clip, args.subset, args.split)
    record = export_clip(clip, args.out, fps=args.fps, height=args.height or None)
    print(f"export-video: {clip.key} ({record['seconds']} s, {record['size'][1]}x{record['size'][0]}) -> {args.out}")
    return 0


def _params_options(p: argparse.ArgumentParser, sections: str) -> None:
    """--params and --set for a step reading the params.yaml `sections` (named in the help)."""
    p.add_argument("--params", type=Path, default=Path("params.yaml"),
                   help=f"parameters file, sections {sections} (default ./params.yaml; without it, the defaults)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override one parameter (repeatable); the options below override these")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `avs` with every step's subcommand."""
    parser = argparse.ArgumentParser(
        prog="avs", description="Audio-visual segmentation pipeline: each subcommand is one pipeline step.")
    sub = parser.add_subparsers(dest="command", metavar="STEP", required=True)

    p = sub.add_parser("synth", help="write a synthetic AVSBench (S4, MS3, AVSS) in the real layout")
    p.add_argument("--out", type=Path, required=True, help="folder to create")
    _params_options(p, "synth")
    p.add_argument("--seed", type=int, help="generator seed (default synth.seed)")
    p.add_argument("--size", help="tiny | demo | large (default synth.size)")
    p.add_argument("--image-size", type=int, help="S4/MS3 frame side in pixels (AVSS: frame height)")
    p.add_argument("--min-distractors", type=int, help="fewest silent visible objects per clip")
    p.add_argument("--max-distractors", type=int, help="most silent visible objects per clip")
    p.add_argument("--max-sources", type=int, help="most sounding objects in multi-source clips")
    p.add_argument("--noise-level", type=float, help="background noise RMS relative to a source")
    p.add_argument("--min-radius", type=float, help="smallest object radius, as a fraction of the short side")
    p.add_argument("--max-radius", type=float, help="largest object radius, as a fraction of the short side")
    p.add_argument("--s4-categories", type=int, help="S4/MS3 categories used (2-23)")
    p.add_argument("--avss-classes", type=int, help="AVSS classes used (2-70)")
    p.add_argument("--quirks", action="store_true", default=None,
                   help="put the real data's quirks into the copy (44.1 kHz stereo AVSS audio, a short clip, "
                        "a train clip short of frames, stray label colours, label2idx.json from 0)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("validate", help="check an AVSBench copy with a great-expectations suite")
    p.add_argument("--data", type=Path, required=True, help="folder holding AVSBench_object/ and/or AVSBench_semantic/")
    p.add_argument("--out", type=Path, required=True, help="report folder (manifest, results, HTML data docs)")
    p.add_argument("--metrics", type=Path, help="also write the summary JSON here (for DVC)")
    _params_options(p, "validate")
    p.add_argument("--sample-rate", type=int, help="required audio sample rate in Hz (default validate.sample_rate)")
    p.add_argument("--min-rms", type=float, help="quieter audio counts as silent (default validate.min_rms)")
    p.add_argument("--min-duration-fraction", type=float,
                   help="shortest audio, as a fraction of the clip's seconds (default validate.min_duration_fraction)")
    p.set_defaults(func=_cmd_validate)

    p = sub.add_parser("features", help="hierarchical log-mel scales and maskiges for every clip")
    p.add_argument("--data", type=Path, required=True, help="folder holding AVSBench_object/ and/or AVSBench_semantic/")
    p.add_argument("--out", type=Path, required=True, help="output folder (mirrors the dataset layout)")
    p.add_argument("--metrics", type=Path, help="also write counts and timings as JSON here (for DVC)")
    _params_options(p, "features")
    p.add_argument("--mask-source", help="regions (offline) | sam (default features.mask_source)")
    p.add_argument("--sam-checkpoint", help="local SAM checkpoint file for --mask-source sam")
    p.add_argument("--sam-model-type", help="SAM registry name of the checkpoint (default features.sam_model_type)")
    p.add_argument("--maskige-size", type=int, help="maskige side in pixels (default features.maskige_size)")
    p.add_argument("--batch-size", type=int, help="clips per spectrogram batch (default features.batch_size)")
    p.set_defaults(func=_cmd_features)

    p = sub.add_parser("train", help="train stage 1 (class-agnostic) or stage 2 (semantic, with the prior)")
    p.add_argument("--stage", type=int, choices=[1, 2], required=True)
    p.add_argument("--data", type=Path, required=True, help="dataset root")
    p.add_argument("--features", type=Path, required=True, help="output of avs features")
    p.add_argument("--out", type=Path, required=True,
                   help="run folder (checkpoint, best.pt, curves); resumed if present")
    p.add_argument("--priors", type=Path, help="output of avs predict-masks (stage 2)")
    p.add_argument("--init", type=Path, help="start from the matching tensors of this best.pt (stage 2: stage 1's)")
    _params_options(p, "train, train_stage1 or train_stage2")
    p.add_argument("--steps", type=int, help="override train_stageN.steps")
    p.add_argument("--seed", type=int, help="override train.seed")
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("pretrain-visual", help="the stand-in for an ImageNet checkpoint: the image backbone "
                       "learns the object looks on rendered images")
    p.add_argument("--out", type=Path, required=True, help="weights file to write (a timm state dict)")
    _params_options(p, "pretrain_visual, train")
    p.set_defaults(func=_cmd_pretrain_visual)

    p = sub.add_parser("predict-masks", help="stage-1 foreground probabilities (the stage-2 prior) for every split")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--model", type=Path, required=True, help="stage-1 best.pt")
    p.add_argument("--out", type=Path, required=True)
    p.set_defaults(func=_cmd_predict_masks)

    p = sub.add_parser("evaluate", help="AVSBench metrics for every subset and split, plots, gallery, report")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--features", type=Path, required=True)
    p.add_argument("--stage1", type=Path, help="stage-1 best.pt (S4, MS3)")
    p.add_argument("--stage2", type=Path, help="stage-2 best.pt (AVSS)")
    p.add_argument("--priors", type=Path,
                   help="output of predict-masks (needed with a --stage2 model that takes the prior)")
    p.add_argument("--out", type=Path, required=True, help="report folder")
    p.add_argument("--metrics", type=Path, required=True, help="metrics JSON (DVC metrics)")
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("gate", help="pass/fail from params.yaml thresholds and the champion's metrics")
    p.add_argument("--metrics", type=Path, required=True, help="the challenger's evaluation metrics")
    p.add_argument("--champion", type=Path, help="the champion's metrics JSON (ignored if absent)")
    _params_options(p, "gate")
    p.add_argument("--out", type=Path, required=True, help="decision file (JSON)")
    p.add_argument("--strict", action="store_true", help="exit 1 when the gate fails")
    p.set_defaults(func=_cmd_gate)

    p = sub.add_parser("summary", help="print the metrics table and the gate decision")
    p.add_argument("--metrics", type=Path, default=Path("metrics/evaluation.json"))
    p.add_argument("--decision", type=Path, default=Path("reports/gate.json"))
    p.set_defaults(func=_cmd_summary)

    p = sub.add_parser("package", help="TorchServe model archive (.mar) of both stages, built only if the gate passed")
    p.add_argument("--stage1", type=Path, required=True, help="stage-1 best.pt")
    p.add_argument("--stage2", type=Path, help="stage-2 best.pt (omit for a stage-1-only archive)")
    p.add_argument("--gate", type=Path, help="gate decision JSON; when it failed only package.json is written")
    p.add_argument("--out", type=Path, required=True, help="output folder (<model_name>.mar, package.json)")
    _params_options(p, "package, features")
    p.add_argument("--force", action="store_true", help="build even when the gate failed (recorded in package.json)")
    p.set_defaults(func=_cmd_package)

    p = sub.add_parser("serve", help="run TorchServe locally: start | stop | status")
    p.add_argument("action", choices=["start", "stop", "status"])
    p.add_argument("--run-dir", type=Path, default=Path(".serve"), help="config, logs, pid and keys (default .serve)")
    p.add_argument("--model-store", type=Path, help="folder holding the .mar (default models/serving)")
    _params_options(p, "serve, package")
    p.add_argument("--address", help="address of the inference and metrics APIs (default 127.0.0.1)")
    p.add_argument("--inference-port", type=int)
    p.add_argument("--management-port", type=int)
    p.add_argument("--metrics-port", type=int)
    p.add_argument("--token-auth", action=argparse.BooleanOptionalAction, default=None,
                   help="TorchServe token authorisation (default on; keys in RUN_DIR/key_file.json)")
    p.add_argument("--token-expiration-min", type=int, help="minutes before the inference/management keys expire")
    p.add_argument("--timeout", type=float, default=300.0, help="seconds to wait for the model to be ready")
    p.set_defaults(func=_cmd_serve)

    p = sub.add_parser("deploy", help="TorchServe on Kubernetes GPU nodes: render, validate, server-side apply, wait")
    p.add_argument("--manifests", type=Path, default=Path("k8s/base/serving"), help="the serving kustomization folder")
    _params_options(p, "deploy, package")
    p.add_argument("--namespace")
    p.add_argument("--image", help="the project image (Dockerfile.gpu)")
    p.add_argument("--replicas", type=int)
    p.add_argument("--gpus", type=int, help="GPUs per pod (0: a CPU deployment, no GPU node selection)")
    p.add_argument("--model-uri", help="s3://bucket/key.mar: an init step downloads the archive (default: the volume)")
    p.add_argument("--upload", type=Path, help="upload this .mar to --model-uri first (refused if its gate failed)")
    p.add_argument("--s3-endpoint", help="S3-compatible endpoint URL for --model-uri/--upload")
    p.add_argument("--claim", help="PersistentVolumeClaim holding the .mar (default: avs-model-store)")
    p.add_argument("--token-auth", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--create-namespace", action="store_true")
    p.add_argument("--gate", type=Path, help="refuse to deploy when this gate decision failed")
    p.add_argument("--force", action="store_true", help="deploy although the gate failed")
    p.add_argument("--render", metavar="FILE", help="write the validated objects as YAML (- for stdout), apply nothing")
    p.add_argument("--kubeconfig")
    p.add_argument("--context")
    p.add_argument("--timeout", type=float, help="seconds to wait for the rollout (default deploy.timeout_s)")
    p.set_defaults(func=_cmd_deploy)

    p = sub.add_parser("predict", help="the model on video files: the endpoint's JSON and an overlay mp4 per video")
    p.add_argument("videos", type=Path, nargs="+", help="video files (mp4, webm, mkv, ... with an audio track)")
    p.add_argument("--model", type=Path, default=Path("models"),
                   help="models folder (stage1/best.pt [+ stage2/best.pt]), serving folder or stage-1 best.pt")
    p.add_argument("--out", type=Path, required=True, help="output folder (<name>.json, <name>.overlay.mp4)")
    p.add_argument("--fps", type=float, default=1.0, help="masks per second of video (default 1, as trained)")
    p.add_argument("--window", type=float, default=10.0,
                   help="seconds of video per forward pass; longer videos go in consecutive windows (default 10)")
    p.add_argument("--max-seconds", type=float, help="refuse longer videos (default: no limit)")
    p.add_argument("--mask-format", default="png", choices=["png", "rle"], help="masks in the JSON (default png)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 ... (default: CUDA when present)")
    p.add_argument("--strict", action="store_true", help="stop at the first unreadable video instead of skipping it")
    _params_options(p, "features (as the model was trained with)")
    p.set_defaults(func=_cmd_predict)

    p = sub.add_parser("export-video", help="a benchmark clip (frames + audio) as an mp4, to try the endpoint")
    p.add_argument("--data", type=Path, default=Path("data/synthetic"), help="AVSBench root (default data/synthetic)")
    p.add_argument("--clip", help="SUBSET/CLIP_ID (default: the first --split clip of --subset)")
    p.add_argument("--subset", choices=["s4", "ms3", "avss"], help="default: the first subset present")
    p.add_argument("--split", default="test", help="default: test")
    p.add_argument("--out", type=Path, required=True, help="the mp4 to write")
    p.add_argument("--fps", type=int, default=25, help="frame rate of the file (each clip frame fills its second)")
    p.add_argument("--height", type=int, default=360, help="resize frames to this height (0: as stored)")
    p.set_defaults(func=_cmd_export_video)

    p = sub.add_parser("drift-reference", help="descriptors of the training clips: the reference of drift reports")
    p.add_argument("--data", type=Path, required=True, help="folder holding AVSBench_object/ and/or AVSBench_semantic/")
    p.add_argument("--out", type=Path, required=True, help="reference folder (descriptors.csv + descriptors.json)")
    _params_options(p, "drift")
    p.add_argument("--split", help="train | val | test | all (default drift.reference_split)")
    p.add_argument("--model", type=Path, help="also describe predictions: models folder (stage1/best.pt "
                                              "[+ stage2/best.pt]), serving folder or stage-1 best.pt")
    p.add_argument("--strict", action="store_true", help="an unreadable clip is fatal instead of skipped")
    p.set_defaults(func=_cmd_drift_reference)

    p = sub.add_parser("drift", help="are new videos still like the training data? (exit 0 no drift, 1 drift)")
    p.add_argument("--reference", type=Path, required=True, help="folder from drift-reference (or a previous --out)")
    p.add_argument("--current", type=Path, required=True,
                   help="folder of videos, AVSBench copy, the endpoint's JSONL log, or a previous --out")
    p.add_argument("--out", type=Path, required=True, help="report folder (replaced atomically)")
    p.add_argument("--model", type=Path, help="also compare predictions (the reference must have them): models "
                                              "folder, serving folder or stage-1 best.pt")
    p.add_argument("--split", default="all", help="for an AVSBench --current: train | val | test | all (default)")
    p.add_argument("--last", type=int, help="use only the last N clips (the most recent requests of a log)")
    p.add_argument("--strict", action="store_true", help="an unreadable video or log line is fatal instead of skipped")
    p.add_argument("--alpha", type=float, help="override drift.alpha (family-wise false-alarm rate)")
    _params_options(p, "drift")
    p.set_defaults(func=_cmd_drift)

    from components.pipeline.cli import register as register_pipeline

    register_pipeline(sub)  # avs pipeline compile | run-local | submit | fetch-data
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
