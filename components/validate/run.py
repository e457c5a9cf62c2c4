"""`avs validate --data DIR --out REPORT_DIR`: manifest + expectation suite + data docs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from components.avsbench.layout import METADATA, present_subsets
from components.common import StepError, atomic_dir, write_json_atomic
from components.params import ValidateParams
from components.validate.manifest import build_manifest
from components.validate.suite import run_suite


def validate_dataset(data: Path, out: Path, th: ValidateParams, metrics: Path | None = None) -> dict[str, Any]:
    """Validate the AVSBench copy at `data`, writing the report folder `out` in one rename.

    `out` receives `manifest.csv`, `results.json` (every check with its level, every failure and warning)
    and `data_docs/` (great-expectations HTML, entry point `data_docs/index.html`). `metrics`, if given,
    receives the summary as JSON for DVC. Returns the summary with "failures" and "warnings" (one line per
    clip and check, naming the files); its "success" is False when an error-level check failed.
    Raises StepError when `data` holds no AVSBench subset at all.
    """
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise StepError(f"validate: data folder {data} does not exist")
    if not present_subsets(data):
        wanted = ", ".join(str(p) for p in METADATA.values())
        raise StepError(f"validate: {data} holds no AVSBench metadata (looked for {wanted})")

    manifest, dataset_problems = build_manifest(data, th.min_duration_fraction)
    with atomic_dir(out, overwrite=True) as tmp:
        manifest.to_csv(tmp / "manifest.csv", index=False)
        suite = run_suite(manifest, th, tmp / "data_docs")
        failures = dataset_problems + suite.failures
        summary = {
            "success": suite.success and not dataset_problems,
            "clips": len(manifest),
            "clips_by_subset": {k: int(v) for k, v in manifest.groupby("subset").size().items()},
            "failing_clips": len({f.split(" ", 1)[0] for f in suite.failures}),
            "failed_checks": [r["check"] for r in suite.results if not r["success"] and r["level"] == "error"],
            "warned_clips": len({w.split(" ", 1)[0] for w in suite.warnings}),
            "warned_checks": [r["check"] for r in suite.results if not r["success"] and r["level"] == "warning"],
            "dataset_problems": dataset_problems,
        }
        write_json_atomic(tmp / "results.json", {**summary, "checks": suite.results, "failures": failures,
                                                 "warnings": suite.warnings, "thresholds": asdict(th)})
    if metrics is not None:
        write_json_atomic(metrics, summary)
    summary["failures"] = failures
    summary["warnings"] = suite.warnings
    return summary
