"""The drift decision and its report: evidently's data-drift preset under a family-wise drift rule.

The rule. Each descriptor column is tested on its own with the two-sample Kolmogorov-Smirnov test
(reference vs current). With m columns tested at 0.05 each, same-distribution data would raise a false
alarm in most runs (1 - 0.95^20 = 64 % for 20 independent columns), so the per-column threshold is
Bonferroni-corrected: a column drifts when its p-value is at most alpha / m, and the set drifts when any
column does. Whatever the dependence between columns, the chance of a false alarm on same-distribution
data is then at most alpha (`drift.alpha` in params.yaml, default 0.01). Columns that cannot be compared
are left out of m and listed: unknown (all NaN) on either side, constant with the same value on both
sides (such a test cannot reject), or named in `drift.ignore_columns`.

The same thresholds are handed to evidently (`DataDriftPreset(method="ks", threshold=alpha/m)`, with the
dataset-level share set so that one drifted column fails its test), so the HTML report, the JSON summary
and the exit code agree.
"""

from __future__ import annotations

import html
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from components.common import StepError, atomic_dir, write_json_atomic
from components.drift.descriptors import DESCRIPTOR_COLUMNS, DESCRIPTOR_VERSION, PREDICTION_COLUMNS, SHARE_COLUMNS
from components.drift.table import DescriptorTable, write_table
from components.params import DriftParams

REPORT_HTML = "report.html"
SUMMARY_JSON = "summary.json"
SUMMARY_HTML = "summary.html"
EVIDENTLY_JSON = "evidently.json"
VERDICT_NAMES = 12  # drifted columns named in the one-line verdict (all of them are in summary.json)


def plan_columns(reference: pd.DataFrame, current: pd.DataFrame,
                 settings: DriftParams) -> tuple[list[str], dict[str, str]]:
    """Which descriptor columns to test, and why each other one is not.

    reference, current: descriptor DataFrames. Returns (tested columns in DESCRIPTOR_COLUMNS order,
    {column: reason it is left out}).
    """
    unknown = sorted(set(settings.ignore_columns) - set(DESCRIPTOR_COLUMNS))
    if unknown:
        raise StepError(f"drift.ignore_columns: unknown column(s) {', '.join(unknown)}")
    tested, left_out = [], {}
    never_predicted = []
    for col in DESCRIPTOR_COLUMNS:
        ref, cur = reference[col].dropna(), current[col].dropna()
        if col in settings.ignore_columns:
            left_out[col] = "ignored (drift.ignore_columns)"
        elif col in PREDICTION_COLUMNS and (ref.empty or cur.empty):
            if not (ref.empty and cur.empty):
                left_out["pred_*"] = f"no predictions in the {'reference' if ref.empty else 'current set'}"
        elif ref.empty or cur.empty:
            left_out[col] = f"unknown in the {'reference' if ref.empty else 'current set'}"
        elif ref.nunique() == 1 and cur.nunique() == 1 and ref.iloc[0] == cur.iloc[0]:
            if col in SHARE_COLUMNS and ref.iloc[0] == 0:
                never_predicted.append(col)
            else:
                left_out[col] = f"constant {ref.iloc[0]:g} on both sides"
        else:
            tested.append(col)
    if never_predicted:
        left_out["pred_share_*"] = f"{len(never_predicted)} classes never predicted on either side"
    return tested, left_out


def evidently_snapshot(reference: pd.DataFrame, current: pd.DataFrame, columns: list[str], threshold: float) -> Any:
    """Evidently's data-drift preset over `columns` with the KS test at `threshold` (evidently Snapshot).

    reference, current: descriptor DataFrames. The dataset-level share is set below 1/len(columns), so
    evidently's "share of drifted columns" test fails as soon as one column drifts, like the drift rule.
    """
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    definition = DataDefinition(numerical_columns=columns)
    preset = DataDriftPreset(columns=columns, method="ks", threshold=threshold, drift_share=0.5 / len(columns))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # correlation plots of constant columns divide by zero
        return Report([preset], include_tests=True).run(
            Dataset.from_pandas(current[columns].reset_index(drop=True), data_definition=definition),
            Dataset.from_pandas(reference[columns].reset_index(drop=True), data_definition=definition))


def _p_values(snapshot_dict: dict[str, Any]) -> dict[str, float]:
    """Column -> KS p-value from evidently's ValueDrift metrics."""
    out = {}
    for metric in snapshot_dict["metrics"]:
        config = metric.get("config", {})
        if config.get("type", "").endswith("ValueDrift"):
            out[config["column"]] = float(metric["value"])
    return out


def _fmt_p(p: float) -> str:
    return f"{p:.1e}" if p < 1e-3 else f"{p:.3f}"


def verdict_line(summary: dict[str, Any]) -> str:
    """The one-line verdict: DRIFT naming the drifted columns (most significant first), or no drift."""
    n, m = len(summary["drifted_columns"]), summary["columns_tested"]
    base = (f"{summary['current']['clips']} clips vs {summary['reference']['clips']} reference, "
            f"KS per column, Bonferroni alpha {summary['settings']['alpha']:g}")
    if not n:
        return f"drift: no drift (0 of {m} columns; {base})"
    named = ", ".join(f"{c} (p={_fmt_p(summary['columns'][c]['p_value'])})"
                      for c in summary["drifted_columns"][:VERDICT_NAMES])
    if n > VERDICT_NAMES:
        named += f" and {n - VERDICT_NAMES} more (summary.json)"
    return f"drift: DRIFT in {n} of {m} columns: {named} ({base})"


def decide(reference: DescriptorTable, current: DescriptorTable, settings: DriftParams) -> dict[str, Any]:
    """Run the drift tests of `current` against `reference` and apply the drift rule.

    The KS p-values are scipy's `ks_2samp`, the very call evidently's "ks" test makes, so the report that
    `evidently_snapshot` renders from the same columns and threshold flags the same columns.
    Returns the summary dict (as written to summary.json; `summary["drift"]` is the decision). Raises
    StepError when the sets cannot be compared: too few clips, no testable column, or a model asked for
    while the reference has no prediction columns.
    """
    from scipy.stats import ks_2samp

    if len(current.rows) < settings.min_clips:
        raise StepError(f"{current.origin}: only {len(current.rows)} readable clip(s); a drift test needs at least "
                        f"{settings.min_clips} (drift.min_clips)")
    if len(reference.rows) < settings.min_clips:
        raise StepError(f"{reference.origin}: the reference has only {len(reference.rows)} clip(s); at least "
                        f"{settings.min_clips} are needed (drift.min_clips)")
    if current.model is not None and not reference.has_predictions:
        raise StepError(f"{reference.origin}: the reference has no prediction descriptors; build it with the same "
                        "--model (`avs drift-reference --model M`) or run `avs drift` without --model")
    tested, left_out = plan_columns(reference.rows, current.rows, settings)
    if not tested:
        raise StepError("no descriptor column can be compared: " + "; ".join(f"{c}: {r}" for c, r in left_out.items()))
    threshold = settings.alpha / len(tested)
    columns: dict[str, Any] = {}
    for col in tested:
        ref, cur = reference.rows[col].dropna().to_numpy(), current.rows[col].dropna().to_numpy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # "exact calculation unsuccessful": asymptotic p
            statistic, p = ks_2samp(ref, cur)
        columns[col] = {
            "p_value": float(p), "threshold": threshold, "drifted": bool(p <= threshold),
            "ks_statistic": float(statistic),
            "reference_median": float(np.median(ref)), "current_median": float(np.median(cur)),
            "reference_mean": float(np.mean(ref)), "current_mean": float(np.mean(cur)),
        }
    drifted = sorted((c for c in tested if columns[c]["drifted"]), key=lambda c: columns[c]["p_value"])
    notes = []
    ref_model, cur_model = (reference.model or {}).get("sha256"), (current.model or {}).get("sha256")
    if ref_model and cur_model and ref_model != cur_model:
        notes.append("the reference's predictions come from another model checkpoint than the current set's")
    summary = {
        "drift": bool(drifted),
        "drifted_columns": drifted,
        "columns_tested": len(tested),
        "columns": columns,
        "left_out": left_out,
        "rule": (f"a column drifts when its two-sample KS p-value <= alpha / {len(tested)} columns tested = "
                 f"{threshold:.3g} (Bonferroni); the set drifts when any column does"),
        "settings": {"alpha": settings.alpha, "min_clips": settings.min_clips,
                     "ignore_columns": list(settings.ignore_columns)},
        "descriptor_version": DESCRIPTOR_VERSION,
        "reference": {"origin": reference.origin, "clips": len(reference.rows), "model": reference.model},
        "current": {"origin": current.origin, "kind": current.kind, "clips": len(current.rows),
                    "skipped": len(current.skipped), "skipped_clips": current.skipped, "model": current.model},
        "notes": notes,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    summary["verdict"] = verdict_line(summary)
    return summary


def _histogram_svg(ref: np.ndarray, cur: np.ndarray, width: int = 220, height: int = 48) -> str:
    """Two overlaid step histograms (reference grey, current orange) as an inline SVG."""
    lo, hi = float(min(ref.min(), cur.min())), float(max(ref.max(), cur.max()))
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, 21)
    paths = []
    for data, colour in ((ref, "#777"), (cur, "#e8710a")):
        dens = np.histogram(data, edges)[0] / len(data)
        top = max(dens.max(), 1e-9)
        pts = " ".join(f"{i * width / 20:.1f},{height - 2 - d / top * (height - 4):.1f} "
                       f"{(i + 1) * width / 20:.1f},{height - 2 - d / top * (height - 4):.1f}"
                       for i, d in enumerate(dens))
        paths.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{pts}"/>')
    return f'<svg width="{width}" height="{height}" viewBox="0 0 {width} {height}">{"".join(paths)}</svg>'


def summary_html(summary: dict[str, Any], reference: pd.DataFrame, current: pd.DataFrame) -> str:
    """A small self-contained HTML page (no scripts) with the verdict and one row per tested column.

    summary: the dict from `compare`; reference / current: the descriptor rows, for the histograms.
    """
    rows = []
    order = summary["drifted_columns"] + [c for c in summary["columns"] if c not in summary["drifted_columns"]]
    for col in order:
        info = summary["columns"][col]
        ref, cur = reference[col].dropna().to_numpy(), current[col].dropna().to_numpy()
        mark = '<b class="bad">drift</b>' if info["drifted"] else "ok"
        rows.append(f"<tr><td>{html.escape(col)}</td><td>{mark}</td><td>{_fmt_p(info['p_value'])}</td>"
                    f"<td>{info['ks_statistic']:.2f}</td><td>{info['reference_median']:.4g}</td>"
                    f"<td>{info['current_median']:.4g}</td><td>{_histogram_svg(ref, cur)}</td></tr>")
    left = "".join(f"<li>{html.escape(c)}: {html.escape(r)}</li>" for c, r in summary["left_out"].items())
    skipped = "".join(f"<li>{html.escape(s)}</li>" for s in summary["current"]["skipped_clips"][:50])
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in summary["notes"])
    headline = "DRIFT" if summary["drift"] else "No drift"
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Drift: {headline}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:70em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:2px 8px;text-align:left}}.bad{{color:#c00}}
h1.bad{{color:#c00}}h1.good{{color:#080}}small{{color:#666}}</style></head><body>
<h1 class="{'bad' if summary['drift'] else 'good'}">{headline}</h1>
<p>{html.escape(summary['verdict'])}</p>
<p><small>Rule: {html.escape(summary['rule'])}. Reference: {html.escape(summary['reference']['origin'])}
({summary['reference']['clips']} clips). Current: {html.escape(summary['current']['origin'])}
({summary['current']['clips']} clips, {summary['current']['skipped']} skipped). Descriptor version
{summary['descriptor_version']}; {html.escape(summary['created'])}. Full interactive report: {REPORT_HTML}.</small></p>
{notes}
<table><tr><th>column</th><th>result</th><th>p-value</th><th>KS</th><th>reference median</th>
<th>current median</th><th>histogram (<span style="color:#777">reference</span>,
<span style="color:#e8710a">current</span>)</th></tr>
{''.join(rows)}</table>
<h3>Not tested</h3><ul>{left or '<li>none</li>'}</ul>
<h3>Skipped clips</h3><ul>{skipped or '<li>none</li>'}</ul>
</body></html>
"""


def write_report(out: Path, summary: dict[str, Any], reference: DescriptorTable, current: DescriptorTable) -> None:
    """Write the report folder `out` atomically (temporary folder, then one rename).

    Files: report.html (evidently's data-drift preset with its per-column tests), evidently.json,
    summary.json, summary.html (a small page without scripts), and descriptors.csv/json of the current
    set (so it can serve as a reference later). If evidently flags other columns than `summary` (it
    should not: same test, same threshold), the difference is added to summary["notes"].
    """
    tested = list(summary["columns"])
    threshold = summary["columns"][tested[0]]["threshold"]
    snapshot = evidently_snapshot(reference.rows, current.rows, tested, threshold)
    flagged = sorted(c for c, p in _p_values(snapshot.dict()).items() if p <= threshold)
    if flagged != sorted(summary["drifted_columns"]):
        summary["notes"].append(f"evidently flags {flagged or 'no column'}, the drift rule "
                                f"{sorted(summary['drifted_columns']) or 'no column'}")
    with atomic_dir(Path(out), overwrite=True) as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            snapshot.save_html(str(tmp / REPORT_HTML))
            snapshot.save_json(str(tmp / EVIDENTLY_JSON))
        write_json_atomic(tmp / SUMMARY_JSON, summary)
        (tmp / SUMMARY_HTML).write_text(summary_html(summary, reference.rows, current.rows), encoding="utf-8")
        write_table(tmp, current)
