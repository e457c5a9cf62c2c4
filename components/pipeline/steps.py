"""What each Kubeflow component does, as plain functions over folders and files.

A KFP component receives artifact paths and parameter values; these functions turn them into a call of the
very function that `avs <step>` and `dvc.yaml` run (validate_dataset, compute_features, train,
predict_masks, evaluate, gate), so no step is implemented twice. Parameters arrive as the sections of
params.yaml (dicts), exactly as DVC reads them. Each function returns the numbers the component logs as
KFP metrics.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.common import StepError, write_json_atomic


def from_struct(value: Any) -> Any:
    """A params section as it arrives through a KFP dict parameter, with its integers back.

    KFP passes dict parameters as protobuf Structs, whose numbers are all doubles: `seed: 0` arrives as
    0.0, which numpy's seeding and range() reject. Every integral float becomes an int again (for the
    float settings this changes nothing: 1 and 1.0 compute alike); nested dicts and lists are restored too.
    """
    if isinstance(value, dict):
        return {k: from_struct(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_struct(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def section(name: str, value: Any) -> Any:
    """The typed params.yaml section `name` from a KFP dict parameter (ParamsError names a bad key)."""
    from components.params import parse_section

    return parse_section(name, from_struct(dict(value or {})))


def flatten_metrics(metrics: dict[str, Any], prefix: str = "") -> dict[str, float]:
    """Numeric leaves of a nested metrics dict as {"a.b.c": value} (booleans as 0/1, NaN dropped)."""
    flat: dict[str, float] = {}
    for key, value in metrics.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, f"{name}."))
        elif isinstance(value, int | float) and not math.isnan(float(value)):  # bool is an int: 0 / 1
            flat[name] = float(value)
    return flat


def validate_step(data: Path, report: Path, data_docs_html: Path, validate: dict[str, Any]) -> dict[str, float]:
    """Validate the dataset at `data` with the `validate` section of params.yaml.

    Writes the report folder (manifest.csv, results.json, data_docs/) to `report` and the
    great-expectations validation page to the single HTML file `data_docs_html`. Returns the summary
    counts. Raises StepError listing the failures when any check fails, which stops the pipeline.
    """
    from components.validate.run import validate_dataset

    summary = validate_dataset(Path(data), Path(report), section("validate", validate))
    pages = sorted((Path(report) / "data_docs" / "validations").rglob("*.html"))
    Path(data_docs_html).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(pages[-1] if pages else Path(report) / "data_docs" / "index.html", data_docs_html)
    if not summary["success"]:
        shown = "\n  ".join(summary["failures"][:50])
        raise StepError(f"validate: FAILED, {summary['failing_clips']} clip(s) fail "
                        f"{', '.join(summary['failed_checks'])}:\n  {shown}")
    return {"clips": float(summary["clips"]), "failing_clips": float(summary["failing_clips"]),
            "warned_clips": float(summary["warned_clips"]),
            **{f"clips.{k}": float(v) for k, v in summary["clips_by_subset"].items()}}


def features_step(data: Path, out: Path, features: dict[str, Any]) -> dict[str, float]:
    """Compute log-mel scales and maskiges for `data` into `out` with the `features` section of params.yaml
    (mask_source, sam_checkpoint, maskige_size, batch_size). Returns counts and seconds."""
    from components.features.step import features_from_params

    summary = features_from_params(Path(data), Path(out), section("features", features))
    return flatten_metrics({k: v for k, v in summary.items() if k != "mask_source"})


def train_step(stage: int, data: Path, features: Path, out: Path, train: dict[str, Any], train_stage: dict[str, Any],
               priors: Path | None = None, init: Path | None = None) -> dict[str, Any]:
    """Train stage `stage` with the `train` and `train_stage{stage}` sections of params.yaml into the run
    folder `out`: best.pt, curve.json, summary.json.

    The resumable checkpoint.pt is removed at the end (a finished run never resumes, and it holds the
    optimiser state, several times the size of the weights). Returns the training summary.
    """
    from components.params import Params
    from components.train.loop import train as run_training
    from components.train.loop import train_config

    name = f"train_stage{stage}"
    params = Params(train=section("train", train), **{name: section(name, train_stage)})
    cfg = train_config(params, stage)
    summary = run_training(cfg, Path(data), Path(features), Path(out), priors, progress=False, init=init)
    (Path(out) / "checkpoint.pt").unlink(missing_ok=True)
    if not (Path(out) / "best.pt").is_file():
        raise StepError(f"train: stage {stage} wrote no best.pt into {out}")
    return {**summary, "preset": cfg.preset, "input_size": cfg.input_size}


def predict_masks_step(data: Path, features: Path, stage1: Path, out: Path) -> dict[str, float]:
    """The stage-2 prior: stage-1 foreground probabilities for every AVSS clip (`stage1` is the run
    folder holding best.pt). Returns clip counts per split."""
    from components.train.masks import predict_masks

    counts = predict_masks(Path(data), Path(features), Path(stage1) / "best.pt", Path(out))
    return {f"clips.{k}": float(v) for k, v in counts.items()}


def evaluate_step(data: Path, features: Path, stage1: Path, stage2: Path, priors: Path, out: Path,
                  metrics_json: Path, report_md: Path) -> dict[str, Any]:
    """Evaluate both stages (run folders `stage1`, `stage2`) into the report folder `out`.

    Also writes the metrics JSON to `metrics_json` (what the gate reads) and a copy of report.md to
    `report_md`. Returns the nested metrics.
    """
    from components.evaluate.run import evaluate

    runs = {"stage1": Path(stage1), "stage2": Path(stage2)}
    metrics = evaluate(Path(data), Path(features), stage1=Path(stage1) / "best.pt", stage2=Path(stage2) / "best.pt",
                       priors=Path(priors), out=Path(out), metrics_path=Path(metrics_json), runs=runs)
    Path(report_md).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(out) / "report.md", report_md)
    return metrics


def _fs(uri: str):
    """(filesystem, path) for a local path or URL; S3 honours AWS_ENDPOINT_URL like the DVC remote."""
    import fsspec

    options: dict[str, Any] = {}
    if uri.startswith("s3://") and os.environ.get("AWS_ENDPOINT_URL"):
        options["client_kwargs"] = {"endpoint_url": os.environ["AWS_ENDPOINT_URL"]}
    return fsspec.core.url_to_fs(uri, **options)


def read_champion(uri: str, dest: Path) -> Path | None:
    """Copy the champion's metrics JSON from `uri` (local path, s3://...) to `dest`; None when `uri` is
    empty or nothing is there yet (the first model has no champion)."""
    if not uri:
        return None
    fs, path = _fs(uri)
    try:
        if not fs.exists(path):
            return None
        data = fs.cat_file(path)
    except OSError as exc:
        raise StepError(f"gate: cannot read the champion's metrics {uri} ({exc})") from exc
    try:
        json.loads(data)
    except ValueError as exc:
        raise StepError(f"gate: the champion's metrics {uri} are not JSON ({exc})") from exc
    Path(dest).write_bytes(data)
    return Path(dest)


def gate_step(metrics_json: Path, gate: dict[str, Any], champion_uri: str, decision_json: Path) -> dict[str, Any]:
    """Decide with the `gate` section of params.yaml (minimums, margin) and, if `champion_uri` holds one,
    the champion's metrics. Writes the decision JSON to `decision_json` and returns it."""
    from components.evaluate.gate import gate as decide

    settings = section("gate", gate)
    with tempfile.TemporaryDirectory(prefix="avs-champion-") as tmp:
        champion = read_champion(champion_uri, Path(tmp) / "champion.json")
        return decide(Path(metrics_json), settings.minimums, settings.margin, champion, Path(decision_json))


def package_step(stage1: Path, stage2: Path, decision_json: Path, out: Path, package: dict[str, Any],
                 features: dict[str, Any]) -> dict[str, Any]:
    """`avs package` of the two run folders into `out` (<model_name>.mar and package.json) with the `package`
    and `features` sections of params.yaml; the gate decision is checked again. Returns the archive's
    name, version, size and digest. StepError when the archive was not built."""
    from components.serve.package import package as build_archive

    record = build_archive(Path(stage1) / "best.pt", Path(stage2) / "best.pt", Path(out), Path(decision_json),
                           section("package", package), section("features", features))
    if not record["packaged"]:
        raise StepError("package: not built - " + "; ".join(record["reasons"]))
    return {k: record[k] for k in ("model_name", "model_version", "mar", "bytes", "sha256")}


def deploy_step(archive: Path, decision_json: Path, deploy: dict[str, Any], package: dict[str, Any], out: Path,
                dry_run: bool = False) -> dict[str, Any]:
    """`avs deploy` of the archive folder `archive` (from package_step) with the `deploy` and `package`
    sections of params.yaml; the gate decision is checked again.

    On the cluster (dry_run False) the archive is uploaded to `deploy.model_uri` (s3://...), the TorchServe
    objects are applied server-side with the pod's service account and the rollout is awaited. With
    `dry_run` (kfp.local) the validated objects are written to out/objects.yaml instead. Either way
    out/summary.json records what happened; the summary is returned.
    """
    from components.deploy.run import run_deploy, settings_from_params

    deploy_params = section("deploy", deploy)
    timeout = deploy_params.timeout_s
    settings = settings_from_params(deploy_params, section("package", package))
    try:
        record = json.loads((Path(archive) / "package.json").read_text())
    except (OSError, ValueError) as exc:
        raise StepError(f"deploy: {archive} holds no package.json ({exc})") from exc
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if dry_run:
        summary = run_deploy(settings, gate=Path(decision_json), render_to=str(out / "objects.yaml"))
    else:
        if not settings.model_uri:
            raise StepError("deploy: set deploy.model_uri to s3://bucket/key.mar: the pipeline uploads the archive "
                            "there and the serving pods download it")
        summary = run_deploy(settings, gate=Path(decision_json), upload=Path(archive) / record["mar"],
                             timeout=timeout)
    summary["dry_run"] = dry_run
    write_json_atomic(out / "summary.json", summary)
    return summary


def promote_step(metrics_json: Path, champion_uri: str) -> bool:
    """Record the deployed challenger's metrics as the new champion at `champion_uri` (nothing to do when
    it is empty). Returns whether anything was written."""
    if not champion_uri:
        return False
    fs, path = _fs(champion_uri)
    parent = path.rsplit("/", 1)[0] if "/" in path else ""
    if parent:
        fs.makedirs(parent, exist_ok=True)
    fs.pipe_file(path, Path(metrics_json).read_bytes())
    return True


def record_metrics(artifact: Any, values: dict[str, Any], payload: Any = None) -> None:
    """Log `values` (flattened to numbers) on a KFP Metrics artifact and write `payload` (default: the
    flattened values) as JSON to the artifact's file, so the artifact has content a later step can read."""
    flat = flatten_metrics(values)
    for name, value in flat.items():
        artifact.log_metric(name, value)
    write_json_atomic(Path(artifact.path), flat if payload is None else payload)
