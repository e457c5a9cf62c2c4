"""The two drift steps: `build_reference` (the DVC stage) and `run_drift` (`avs drift`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from components.common import StepError, atomic_dir
from components.drift.report import decide, write_report
from components.drift.sources import Predictor, read_source
from components.drift.table import DescriptorTable, read_table, write_table
from components.params import DriftParams


def build_reference(data: Path, out: Path, split: str | None = "train", predictor: Predictor | None = None,
                    model_info: dict[str, Any] | None = None, strict: bool = False) -> DescriptorTable:
    """Descriptors of every clip of `split` (None: all splits) of the AVSBench copy `data`, written to `out`.

    out: folder (replaced atomically) with descriptors.csv and descriptors.json. predictor/model_info: a
    model for the prediction columns. An unreadable clip is skipped and listed, or fatal with `strict`.
    Returns the table.
    """
    from components.avsbench.layout import present_subsets

    if not Path(data).is_dir() or not present_subsets(data):
        raise StepError(f"{data}: no AVSBench metadata (AVSBench_object/... or AVSBench_semantic/metadata.csv)")
    table = read_source(data, predictor=predictor, split=split, strict=strict, model_info=model_info)
    table.kind = "reference"
    with atomic_dir(Path(out), overwrite=True) as tmp:
        write_table(tmp, table)
    return table


def run_drift(reference: Path, current: Path, out: Path, settings: DriftParams,
              predictor: Predictor | None = None, model_info: dict[str, Any] | None = None, split: str | None = None,
              last: int | None = None, strict: bool = False, max_seconds: float | None = 60.0) -> dict[str, Any]:
    """Compare the clips at `current` with the reference folder `reference`; write the report folder `out`.

    current: a video folder, an AVSBench folder (optionally one `split`), a JSONL log or a descriptor table;
    last: keep only the last N rows (the most recent requests of a log); max_seconds: longer videos are
    skipped. Returns the summary (as in
    summary.json; `summary["drift"]` is the decision). StepError for inputs that cannot be compared.
    """
    ref = read_table(reference, "reference")
    if predictor is not None and not ref.has_predictions:
        raise StepError(f"{reference}: the reference has no prediction descriptors; build it with the same model "
                        "(`avs drift-reference --model M`) or run `avs drift` without --model")
    cur = read_source(current, predictor=predictor, split=split, strict=strict, model_info=model_info,
                      max_seconds=max_seconds)
    if last is not None:
        if last < 1:
            raise StepError(f"--last must be positive, got {last}")
        cur.rows = cur.rows.tail(last).reset_index(drop=True)
    summary = decide(ref, cur, settings)
    write_report(out, summary, ref, cur)
    return summary
