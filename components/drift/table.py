"""Descriptor tables on disk: `descriptors.csv` (one row per clip) beside `descriptors.json` (provenance).

The same pair is what `avs drift-reference` writes (the training reference) and what `avs drift` writes
for the set it checked, so a previous run's output can serve as a reference or as a current set.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from components.common import StepError, write_json_atomic
from components.drift.descriptors import DESCRIPTOR_COLUMNS, DESCRIPTOR_VERSION, PREDICTION_COLUMNS

# Identity columns that travel with every row; never tested for drift.
META_COLUMNS: tuple[str, ...] = ("clip", "source", "subset", "split", "time")
TABLE_CSV = "descriptors.csv"
TABLE_META = "descriptors.json"


@dataclass
class DescriptorTable:
    """Descriptor rows of a set of clips and where they came from.

    rows: DataFrame with META_COLUMNS (str) and DESCRIPTOR_COLUMNS (float, NaN = unknown), one row per clip.
    kind: "avsbench", "videos", "jsonl" or "table" (read back from descriptors.csv/json).
    origin: the path the rows were read from. skipped: "name: reason" for every clip that could not be read.
    version: DESCRIPTOR_VERSION of the code that computed the rows. model: provenance of the model behind
    the prediction columns (None without one).
    """

    rows: pd.DataFrame
    kind: str
    origin: str
    skipped: list[str] = field(default_factory=list)
    version: int = DESCRIPTOR_VERSION
    model: dict[str, Any] | None = None

    @property
    def has_predictions(self) -> bool:
        """Whether any prediction column holds a value."""
        cols = [c for c in PREDICTION_COLUMNS if c in self.rows]
        return bool(cols) and bool(self.rows[cols].notna().any().any())

    def meta(self) -> dict[str, Any]:
        """The provenance written to descriptors.json."""
        return {"descriptor_version": self.version, "kind": self.kind, "origin": self.origin,
                "clips": len(self.rows), "skipped": self.skipped, "model": self.model}


def make_frame(records: list[dict[str, Any]]) -> pd.DataFrame:
    """A DataFrame with META_COLUMNS then DESCRIPTOR_COLUMNS from row dicts (missing values: "" / NaN)."""
    df = pd.DataFrame.from_records(records)
    for col in META_COLUMNS:
        df[col] = df[col].fillna("").astype(str) if col in df else ""
    for col in DESCRIPTOR_COLUMNS:
        df[col] = pd.to_numeric(df[col], errors="coerce").astype(float) if col in df else math.nan
    return df[list(META_COLUMNS + DESCRIPTOR_COLUMNS)].reset_index(drop=True)


def write_table(folder: Path, table: DescriptorTable) -> None:
    """Write `table` into `folder` (which must exist) as descriptors.csv + descriptors.json."""
    table.rows.to_csv(Path(folder) / TABLE_CSV, index=False, float_format="%.9g")
    write_json_atomic(Path(folder) / TABLE_META, table.meta())


def is_table(path: Path) -> bool:
    """Whether `path` is a folder written by write_table."""
    return (Path(path) / TABLE_META).is_file()


def read_table(folder: Path, what: str = "reference") -> DescriptorTable:
    """Read a folder written by write_table; StepError if it is missing or of another descriptor version.

    what: how the folder is named in error messages ("reference", "current").
    """
    folder = Path(folder)
    meta_path, csv_path = folder / TABLE_META, folder / TABLE_CSV
    if not meta_path.is_file() or not csv_path.is_file():
        raise StepError(f"{folder}: not a descriptor table (expected {TABLE_CSV} and {TABLE_META}); build a "
                        "reference with `avs drift-reference` or `dvc repro drift_reference`")
    try:
        meta = json.loads(meta_path.read_text())
        version = int(meta["descriptor_version"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise StepError(f"{meta_path}: unreadable ({exc})") from exc
    if version != DESCRIPTOR_VERSION:
        raise StepError(f"{folder}: {what} was built with descriptor version {version}, this code computes "
                        f"version {DESCRIPTOR_VERSION}; rebuild it (`dvc repro drift_reference` or "
                        "`avs drift-reference`) so both sides measure the same thing")
    try:
        raw = pd.read_csv(csv_path, dtype={c: str for c in META_COLUMNS}, keep_default_na=True)
    except (OSError, ValueError) as exc:
        raise StepError(f"{csv_path}: unreadable ({exc})") from exc
    rows = make_frame(raw.to_dict("records"))
    return DescriptorTable(rows, "table", str(folder), list(meta.get("skipped", [])), version, meta.get("model"))
