"""`avs gate`: pass or fail the challenger from thresholds and, if a champion exists, a margin.

The decision file is what the deploy steps branch on: {"passed": bool, "reasons": [...], ...}.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.common import StepError, write_json_atomic


def _lookup(metrics: dict[str, Any], dotted: str) -> float:
    node: Any = metrics
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise StepError(f"gate: metric {dotted!r} not found in the evaluation metrics")
        node = node[part]
    return float(node)


def decide(metrics: dict[str, Any], minimums: dict[str, float], champion: dict[str, Any] | None,
           margin: float) -> dict[str, Any]:
    """The decision: every `minimums` metric at or above its threshold, and (with a champion) no gate
    metric worse than the champion's by more than `margin`. Reasons name each failed rule."""
    reasons, checked = [], {}
    for name, minimum in minimums.items():
        value = _lookup(metrics, name)
        checked[name] = {"value": value, "minimum": minimum}
        if value < minimum:
            reasons.append(f"{name} = {value:.4f} is below the minimum {minimum:.4f}")
        if champion is not None:
            best = _lookup(champion, name)
            checked[name]["champion"] = best
            if value < best - margin:
                reasons.append(f"{name} = {value:.4f} is worse than the champion's {best:.4f} by more than {margin}")
    return {"passed": not reasons, "reasons": reasons or ["every gate metric meets its threshold"
                                                           + (" and the champion margin" if champion else "")],
            "checked": checked, "margin": margin, "champion": champion is not None}


def gate(metrics_path: Path, minimums: dict[str, float], margin: float, champion_path: Path | None,
         out: Path) -> dict[str, Any]:
    """Read the challenger's (and champion's, if the file exists) metrics, decide, write `out`."""
    try:
        metrics = json.loads(Path(metrics_path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise StepError(f"gate: cannot read metrics {metrics_path} ({exc})") from exc
    champion = None
    if champion_path is not None and Path(champion_path).is_file():
        champion = json.loads(Path(champion_path).read_text())
    decision = decide(metrics, minimums, champion, margin)
    write_json_atomic(out, decision)
    return decision
