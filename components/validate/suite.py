"""The great-expectations suite over the manifest, and the human-readable failures it implies."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from components.avsbench.classes import AVSS_LABELS, S4_CATEGORIES, SPLITS
from components.params import ValidateParams


@dataclass(frozen=True)
class Check:
    """One expectation and how to explain a failing row: `what` says the rule, `files` names the
    manifest column listing the files at fault, `value` the column whose value is shown."""

    name: str
    expectation: Any
    what: str
    files: str
    value: str | None = None


def checks(th: ValidateParams) -> list[Check]:
    """The suite, as (expectation, explanation) pairs."""
    import great_expectations.expectations as gxe
    from great_expectations.expectations.row_conditions import Column

    s4 = {"row_condition": Column("subset") == "s4"}
    avss = {"row_condition": Column("subset") == "avss"}
    return [
        Check("unique_ids", gxe.ExpectColumnValuesToBeUnique(column="clip_key"),
              "the clip id is listed more than once", "metadata_file"),
        Check("known_split", gxe.ExpectColumnValuesToBeInSet(column="split", value_set=list(SPLITS)),
              f"unknown split (expected one of {', '.join(SPLITS)})", "metadata_file", "split"),
        Check("known_s4_category",
              gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(S4_CATEGORIES), **s4),
              "unknown S4 category", "metadata_file", "label"),
        Check("known_avss_label", gxe.ExpectColumnValuesToBeInSet(column="label", value_set=list(AVSS_LABELS), **avss),
              f"unknown AVSS label (expected one of {', '.join(AVSS_LABELS)})", "metadata_file", "label"),
        Check("no_missing_files", gxe.ExpectColumnValuesToBeBetween(column="n_missing", min_value=0, max_value=0),
              "missing file(s)", "missing_files"),
        Check("all_files_readable", gxe.ExpectColumnValuesToBeBetween(column="n_unreadable", min_value=0, max_value=0),
              "unreadable or truncated file(s)", "unreadable_files"),
        Check("frame_count", gxe.ExpectColumnPairValuesToBeEqual(column_A="n_frames", column_B="n_frames_expected"),
              "frame count does not fit the subset (a train clip short of its last frames is padded with its "
              "last frame, not annotated)", "frame_dir", "n_frames"),
        Check("frame_sizes_consistent",
              gxe.ExpectColumnValuesToBeInSet(column="frame_sizes_consistent", value_set=[True]),
              "frames of one clip differ in size", "frame_dir"),
        Check("mask_count", gxe.ExpectColumnPairValuesToBeEqual(column_A="n_masks", column_B="n_masks_expected"),
              "ground-truth count does not fit the subset", "missing_files", "n_masks"),
        Check("mask_size", gxe.ExpectColumnValuesToBeInSet(column="mask_size_ok", value_set=[True]),
              "mask size differs from its frame", "bad_mask_sizes"),
        Check("mask_values", gxe.ExpectColumnValuesToBeInSet(column="mask_values_ok", value_set=[True]),
              "mask values outside {0, 255} (S4/MS3) or colours outside the palette (AVSS)", "bad_mask_values",
              "stray_label_pixels"),
        Check("sample_rate", gxe.ExpectColumnValuesToBeInSet(column="audio_sample_rate", value_set=[th.sample_rate]),
              f"audio sample rate is not {th.sample_rate} Hz (the features step resamples it)", "audio_file",
              "audio_sample_rate"),
        Check("audio_channels", gxe.ExpectColumnValuesToBeBetween(column="audio_channels", min_value=1, max_value=2),
              "audio must be mono or stereo", "audio_file", "audio_channels"),
        Check("audio_not_silent", gxe.ExpectColumnValuesToBeBetween(column="audio_rms", min_value=th.min_rms),
              f"audio is silent (RMS below {th.min_rms})", "audio_file", "audio_rms"),
        Check("audio_long_enough", gxe.ExpectColumnPairValuesAToBeGreaterThanB(
                  column_A="audio_duration_s", column_B="audio_min_duration_s", or_equal=True),
              f"audio shorter than {th.min_duration_fraction:.0%} of the clip's seconds (the features step pads "
              "it)", "audio_file", "audio_duration_s"),
    ]


@dataclass
class SuiteResult:
    """Outcome of the suite: success (no error-level check failed), per-check results (with their level),
    one message per clip failing an error-level check, and one per clip failing a warning-level check."""

    success: bool
    results: list[dict[str, Any]]
    failures: list[str]
    warnings: list[str]


def _quiet_gx() -> None:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    logging.getLogger("great_expectations").setLevel(logging.ERROR)


def run_suite(manifest: pd.DataFrame, th: ValidateParams, docs_dir: Path) -> SuiteResult:
    """Validate `manifest` with the suite and build HTML data docs into `docs_dir`.

    Returns every check's result and, for each failing row, a message naming the clip, the rule and
    the files at fault: a warning when the check is in `th.warnings`, else a failure.
    """
    _quiet_gx()
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = ctx.data_sources.add_pandas("avsbench").add_dataframe_asset("manifest") \
        .add_batch_definition_whole_dataframe("all clips")
    suite = ctx.suites.add(gx.ExpectationSuite(name="avsbench_clips"))
    suite_checks = checks(th)
    for c in suite_checks:
        suite.add_expectation(c.expectation)
    definition = ctx.validation_definitions.add(gx.ValidationDefinition(name="avsbench", data=batch, suite=suite))
    ctx.add_data_docs_site(site_name="local", site_config={
        "class_name": "SiteBuilder",
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(Path(docs_dir).resolve())},
    })
    checkpoint = ctx.checkpoints.add(gx.Checkpoint(
        name="avsbench", validation_definitions=[definition],
        actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs", site_names=["local"])],
        result_format={"result_format": "COMPLETE", "unexpected_index_column_names": ["clip_key"]},
    ))
    run = checkpoint.run(batch_parameters={"dataframe": manifest})
    (validation,) = run.run_results.values()

    by_key = manifest.drop_duplicates("clip_key").set_index("clip_key")
    by_id = {res.expectation_config.id: res for res in validation.results}
    results, failures, warnings = [], [], []
    for check in suite_checks:
        res = by_id[check.expectation.id]
        rows = res.result.get("unexpected_index_list") or []
        keys = list(dict.fromkeys(r["clip_key"] for r in rows))
        level = "warning" if check.name in th.warnings else "error"
        results.append({"check": check.name, "level": level, "expectation": res.expectation_config.type,
                        "success": bool(res.success), "failing_clips": keys})
        for key in keys:
            row = by_key.loc[key]
            shown = f" ({check.value}={row[check.value]})" if check.value else ""
            (warnings if level == "warning" else failures).append(
                f"{key} [{row['split']}]: {check.what}{shown}: {row[check.files]}")
    success = all(r["success"] for r in results if r["level"] == "error")
    return SuiteResult(success, results, failures, warnings)
