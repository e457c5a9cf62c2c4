"""Evaluate the two stages: S4/MS3 with the stage-1 (binary) model, AVSS with the stage-2 model.

Writes the metrics JSON (for DVC), plot data (F-score against threshold, per-class IoU, training
curves), a gallery of predictions over ground truth, and a Markdown report that shows them.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from components.avsbench.classes import AVSS_CLASSES, avss_palette
from components.avsbench.layout import present_subsets
from components.common import StepError, atomic_dir, progress, write_json_atomic
from components.train.data import MEAN, STD, ClipDataset
from components.train.masks import load_trained
from components.train.predict import predict, require_priors
from model.metrics import avss_scores, fscore_curve, s4_fscore, s4_miou

GALLERY_CLIPS = 3


def _overlay(frame: torch.Tensor, colours: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """Blend a uint8 colour map [S, S, 3] over a normalised frame [3, S, S]."""
    rgb = ((frame * STD + MEAN).clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.float32)
    mask = colours.any(-1, keepdims=True)
    return np.where(mask, (1 - alpha) * rgb + alpha * colours, rgb).astype(np.uint8)


def _gallery(path: Path, frames: torch.Tensor, truth: np.ndarray, predicted: np.ndarray) -> None:
    """Rows: frames, ground truth over frames, prediction over frames. truth/predicted uint8 [T, S, S, 3]."""
    rows = [np.concatenate([_overlay(f, np.zeros_like(truth[0])) for f in frames], 1),
            np.concatenate([_overlay(f, c) for f, c in zip(frames, truth, strict=True)], 1),
            np.concatenate([_overlay(f, c) for f, c in zip(frames, predicted, strict=True)], 1)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows, 0)).save(path)


def _binary_colours(mask: np.ndarray) -> np.ndarray:
    return np.where(mask[..., None], np.array([255, 60, 60], np.uint8), 0).astype(np.uint8)


def _evaluate_binary(model, data, features, subset, split, size, tmp) -> tuple[dict[str, float], np.ndarray]:
    dataset = ClipDataset(data, features, 1, split, size, subsets=(subset,))
    probs, labels = [], []
    for index, p, batch in progress(predict(model, dataset, torch.device("cpu")), f"evaluate {subset} {split}",
                                    total=len(dataset)):
        lab, has_gt = batch["labels"], batch["has_gt"]
        probs.append(p[has_gt, 1])
        labels.append(lab[has_gt] == 1)
        if split == "test" and index < GALLERY_CLIPS:
            _gallery(tmp / "gallery" / f"{subset}_{index}.png", batch["frames"][0],
                     _binary_colours((lab == 1).numpy()), _binary_colours((p[:, 1] > 0.5).numpy()))
    p, g = torch.cat(probs), torch.cat(labels)
    frames_per_clip = dataset.clips[0].num_frames
    metrics = {"miou": s4_miou(p, g), "fscore": s4_fscore(p, g, frames_per_batch=frames_per_clip),
               "fscore_global": s4_fscore(p, g), "frames": len(p)}
    return metrics, fscore_curve(p, g)[1]


def _evaluate_avss(model, data, features, priors, split, size, tmp) -> dict[str, Any]:
    dataset = ClipDataset(data, features, 2, split, size, priors)
    preds, labels = [], []
    palette = avss_palette()
    for index, p, batch in progress(predict(model, dataset, torch.device("cpu")), f"evaluate avss {split}",
                                    total=len(dataset)):
        lab, has_gt = batch["labels"], batch["has_gt"]
        preds.append(p[has_gt].argmax(1))
        labels.append(lab[has_gt])
        if split == "test" and index < GALLERY_CLIPS:
            truth = palette[lab.clamp(max=70).numpy()] * (lab != 255).numpy()[..., None]
            _gallery(tmp / "gallery" / f"avss_{index}.png", batch["frames"][0], truth.astype(np.uint8),
                     palette[p.argmax(1).numpy()])
    return avss_scores(torch.cat(preds), torch.cat(labels), num_classes=len(AVSS_CLASSES))


def evaluate(data: Path, features: Path, stage1: Path | None, stage2: Path | None, priors: Path | None, out: Path,
             metrics_path: Path, runs: dict[str, Path] | None = None) -> dict[str, Any]:
    """Evaluate every subset and split present; returns the metrics written to `metrics_path`.

    S4/MS3 need the stage-1 model, AVSS the stage-2 one (and the priors, if it takes the prior input);
    either may be None (a single-stage semantic model has no stage 1). `out` receives report.md,
    gallery/*.png and plots/ (fscore_{subset}.csv, avss_class_iou.csv, train_{stage}.csv); it appears in
    one rename.
    """
    if stage1 is None and stage2 is None:
        raise StepError("evaluate needs a stage-1 model, a stage-2 model or both")
    model1, cfg1 = load_trained(stage1) if stage1 is not None else (None, None)
    model2, cfg2 = load_trained(stage2) if stage2 is not None else (None, None)
    if model2 is not None:
        require_priors(model2, priors, f"{stage2}: this stage-2 model")
    subsets = present_subsets(data)
    metrics: dict[str, Any] = {}
    with atomic_dir(Path(out), overwrite=True) as tmp:
        (tmp / "plots").mkdir()
        for subset in [s for s in ("s4", "ms3") if s in subsets and model1 is not None]:
            metrics[subset] = {}
            for split in ("val", "test"):
                metrics[subset][split], curve = _evaluate_binary(model1, data, features, subset, split,
                                                                 cfg1["input_size"], tmp)
            _write_csv(tmp / "plots" / f"fscore_{subset}.csv", ["threshold", "fscore"],
                       zip(np.linspace(0, 1, len(curve)).round(4), curve.round(5), strict=True))
        if model2 is not None and "avss" in subsets:
            metrics["avss"] = {}
            for split in ("val", "test"):
                scores = _evaluate_avss(model2, data, features, priors, split, cfg2["input_size"], tmp)
                per_class = scores.pop("per_class_iou")
                metrics["avss"][split] = scores
            _write_csv(tmp / "plots" / "avss_class_iou.csv", ["class", "iou"],
                       ((name, round(v, 5)) for name, v in zip(AVSS_CLASSES, per_class, strict=True)))
        for name, run in (runs or {}).items():
            curve = json.loads((Path(run) / "curve.json").read_text())
            _write_csv(tmp / "plots" / f"train_{name}.csv", ["step", "loss", "val_miou"],
                       ((r["step"], round(r["loss"], 5), r.get("val_miou", "")) for r in curve))
        (tmp / "report.md").write_text(report_markdown(metrics, sorted(p.name for p in (tmp / "gallery").glob("*.png"))
                                                       if (tmp / "gallery").is_dir() else []))
    write_json_atomic(metrics_path, metrics)
    return metrics


def _write_csv(path: Path, header: list[str], rows) -> None:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)


def metrics_table(metrics: dict[str, Any]) -> str:
    """A Markdown table: subset, split, mIoU, F-score (and the no-background forms for AVSS)."""
    lines = ["| subset | split | mIoU | F-score | notes |", "| --- | --- | ---: | ---: | --- |"]
    for subset, splits in metrics.items():
        for split, m in splits.items():
            note = (f"F global {m['fscore_global']:.3f}; F per clip-batch" if "fscore_global" in m
                    else f"no background: mIoU {m['miou_no_bg']:.3f}, F {m['fscore_no_bg']:.3f}")
            lines.append(f"| {subset} | {split} | {m['miou']:.3f} | {m['fscore']:.3f} | {note} |")
    return "\n".join(lines)


def report_markdown(metrics: dict[str, Any], gallery: list[str]) -> str:
    """The human-readable report: the metrics table and the gallery (rows: frames, truth, prediction)."""
    parts = ["# Evaluation report", "", "S4/MS3 use the stage-1 model (binary), AVSS the stage-2 model with the "
             "stage-1 prior. Model selection used val only.", "", metrics_table(metrics), "", "## Gallery", "",
             "Each image: frames, ground truth over the frames, prediction over the frames (test split).", ""]
    parts += [f"![{name}](gallery/{name})" for name in gallery]
    return "\n".join(parts) + "\n"
