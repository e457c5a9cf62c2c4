"""`avs package`: the TorchServe model archive (.mar), built only when the gate passed.

The archive holds both stages' weights (`stage1.pt`, `stage2.pt`), `avs-serve.json` (what the handler
needs: file names, mask source, maskige size, limits, warm-up), `model-config.yaml` (TorchServe's
workers, batching and timeouts, plus the handler section), the thin handler, and the project code it
imports (`components`, `model`, `cuda_ext` sources), so weights and code travel together.

The output folder always gets `package.json`: {"packaged": true, "mar", "sha256", ...} or
{"packaged": false, "reasons": [...]} when the gate failed (no archive then).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import yaml

from components.common import StepError, atomic_dir, write_json_atomic
from components.params import FeaturesParams, PackageParams

ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("components", "model", "cuda_ext")
HANDLER = Path(__file__).with_name("handler.py")
REQUIRED_ENTRIES = ("MAR-INF/MANIFEST.json", "handler.py", "avs-serve.json", "model-config.yaml", "stage1.pt",
                    "components/infer.py", "components/serve/api.py", "model/ntavs.py", "cuda_ext/ops.py")


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_gate(path: Path) -> dict[str, Any]:
    """The gate decision written by `avs gate` ({"passed": bool, "reasons": [...]}); StepError if unreadable."""
    try:
        decision = json.loads(Path(path).read_text())
        bool(decision["passed"])
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise StepError(f"{path}: cannot read the gate decision ({exc}); run avs gate first") from exc
    return decision


def archiver_command() -> str:
    """The torch-model-archiver executable beside this Python, else the one on PATH."""
    local = Path(sys.executable).with_name("torch-model-archiver")
    found = str(local) if local.is_file() else shutil.which("torch-model-archiver")
    if not found:
        raise StepError("torch-model-archiver not found (pip install torch-model-archiver==0.12.0)")
    return found


def _copy_code(dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.so", "build", ".*")
    for name in CODE_PACKAGES:
        shutil.copytree(ROOT / name, dest / name, ignore=ignore)


def model_config(settings: PackageParams) -> dict[str, Any]:
    """TorchServe's per-model config (model-config.yaml) from the package settings."""
    return {
        "minWorkers": settings.workers, "maxWorkers": settings.workers,
        "batchSize": settings.batch_size, "maxBatchDelay": settings.max_batch_delay_ms,
        "responseTimeout": settings.response_timeout_s, "startupTimeout": settings.startup_timeout_s,
        "handler": {"max_seconds": settings.max_seconds, "max_payload_mb": settings.max_payload_mb,
                    "mask_format": settings.mask_format, "threads": settings.threads},
    }


def _describe(path: Path) -> dict[str, Any]:
    """model_config and train_config of a best.pt written by avs train (tensors are not loaded)."""
    import torch

    if not Path(path).is_file():
        raise StepError(f"model file {path} not found (train first)")
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
        return {"model_config": dict(saved["model_config"]), "train_config": dict(saved["train_config"])}
    except (KeyError, TypeError, RuntimeError, OSError, EOFError, ValueError) as exc:
        raise StepError(f"{path}: not a model written by avs train ({exc})") from exc


def _check_models(stage1: Path, stage2: Path | None) -> dict[str, Any]:
    one = _describe(stage1)
    if one["model_config"].get("num_classes") != 2 or one["model_config"].get("prior"):
        raise StepError(f"{stage1}: stage 1 must be the 2-class model without prior (models/stage1/best.pt)")
    info: dict[str, Any] = {"stage1": {"input_size": one["train_config"]["input_size"],
                                       "preset": one["train_config"].get("preset")}}
    if stage2 is not None:
        two = _describe(stage2)
        if not two["model_config"].get("prior"):
            raise StepError(f"{stage2}: stage 2 must be the model with the prior input (models/stage2/best.pt)")
        info["stage2"] = {"input_size": two["train_config"]["input_size"], "preset": two["train_config"].get("preset"),
                          "num_classes": two["model_config"].get("num_classes")}
    return info


def package(stage1: Path, stage2: Path | None, out: Path, gate: Path | None = None,
            settings: PackageParams | None = None, features: FeaturesParams | None = None,
            force: bool = False) -> dict[str, Any]:
    """Build `out/<model_name>.mar` and `out/package.json` when the gate passed (or `force`).

    stage1/stage2: `best.pt` files of the two stages (stage2 None: a stage-1-only archive). gate: the gate
    decision JSON; when it failed, `out` gets only package.json recording the gate's reasons. settings:
    the `package` parameters; features: the `features` parameters the models were trained with
    (mask_source, maskige_size, sam_checkpoint, sam_model_type); None: the defaults.
    Returns the package.json content. The folder is replaced in one rename.
    """
    stage1, out = Path(stage1), Path(out)
    stage2 = Path(stage2) if stage2 is not None else None
    settings = settings or PackageParams()
    features = features or FeaturesParams()
    name = str(settings.model_name)
    decision = read_gate(gate) if gate is not None else None
    if decision is not None and not decision["passed"] and not force:
        record = {"packaged": False, "model_name": name, "gate": str(gate),
                  "reasons": ["the gate failed: " + r for r in decision.get("reasons", [])]}
        with atomic_dir(out, overwrite=True) as tmp:
            write_json_atomic(tmp / "package.json", record)
        return record
    info = _check_models(stage1, stage2)
    mask_source = features.mask_source
    sam = Path(features.sam_checkpoint) if mask_source == "sam" and features.sam_checkpoint else None
    if mask_source == "sam" and (sam is None or not sam.is_file()):
        raise StepError(f"package: mask_source sam needs the SAM checkpoint file (got {sam})")
    serve_cfg = {
        "version": str(settings.model_version), "stage1": "stage1.pt", "stage2": "stage2.pt" if stage2 else None,
        "mask_source": mask_source, "maskige_size": features.maskige_size,
        "sam_checkpoint": sam.name if sam else None, "sam_model_type": features.sam_model_type,
        "max_seconds": settings.max_seconds, "max_payload_mb": settings.max_payload_mb,
        "mask_format": settings.mask_format, "threads": settings.threads,
        "warmup": {"seconds": int(settings.warmup_seconds), "size": int(settings.warmup_size)}
        if int(settings.warmup_seconds) > 0 else None,
        "models": info,
    }
    with tempfile.TemporaryDirectory(prefix="avs-package-") as staging_dir:
        staging = Path(staging_dir)
        files = staging / "files"
        files.mkdir()
        shutil.copy2(stage1, files / "stage1.pt")
        if stage2 is not None:
            shutil.copy2(stage2, files / "stage2.pt")
        if sam is not None:
            shutil.copy2(sam, files / sam.name)
        (files / "avs-serve.json").write_text(json.dumps(serve_cfg, indent=2) + "\n")
        config_file = staging / "model-config.yaml"
        config_file.write_text(yaml.safe_dump(model_config(settings), sort_keys=False))
        shutil.copy2(config_file, files / "model-config.yaml")
        _copy_code(files)
        with atomic_dir(out, overwrite=True) as tmp:
            cmd = [archiver_command(), "--model-name", name, "--version", str(settings.model_version),
                   "--handler", str(HANDLER), "--extra-files", str(files), "--config-file", str(config_file),
                   "--export-path", str(tmp), "--force"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            mar = tmp / f"{name}.mar"
            if proc.returncode != 0 or not mar.is_file():
                raise StepError(f"package: torch-model-archiver failed ({proc.returncode}): "
                                f"{(proc.stderr or proc.stdout).strip()[-2000:]}")
            missing = verify_archive(mar)
            if missing:
                raise StepError(f"package: {mar.name} lacks {', '.join(missing)}")
            record = {"packaged": True, "model_name": name, "model_version": str(settings.model_version),
                      "mar": mar.name, "bytes": mar.stat().st_size, "sha256": sha256(mar),
                      "stage1_sha256": sha256(stage1), "stage2_sha256": sha256(stage2) if stage2 else None,
                      "gate": str(gate) if gate is not None else None,
                      "reasons": (["forced: built although the gate failed"] if decision and not decision["passed"]
                                  else decision.get("reasons", []) if decision else ["no gate decision given"]),
                      "settings": serve_cfg}
            write_json_atomic(tmp / "package.json", record)
    return record


def verify_archive(mar: Path) -> list[str]:
    """Entries a served archive needs that `mar` lacks (empty when complete)."""
    with zipfile.ZipFile(mar) as zf:
        names = set(zf.namelist())
    return [entry for entry in REQUIRED_ENTRIES if entry not in names]
