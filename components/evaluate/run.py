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

from components.avsbench.classes import AVSS_CLASSES
from components.avsbench.layout import ClipFiles, present_subsets
from components.common import StepError, atomic_dir, progress, write_json_atomic
from components.infer import class_names
from components.overlay import draw_overlay
from components.train.checkpoint import load_trained
from components.train.data import ClipDataset
from components.train.predict import predict, require_priors
from model.metrics import avss_scores, fscore_curve, s4_fscore, s4_miou

GALLERY_CLIPS = 3
GALLERY_HEIGHT = 256   # pixels per gallery frame


def _gallery(path: Path, clip: ClipFiles, truth: np.ndarray, predicted: np.ndarray, names: tuple[str, ...]) -> None:
    """A readable picture of one clip: rows frames / ground truth / prediction, each frame resized to
    GALLERY_HEIGHT pixels (the stored frames, not the network's small input) with a class legend.
    truth/predicted int [T, S, S] class maps (255: no label)."""
    rows: list[list[np.ndarray]] = [[], [], []]
    for t, frame_path in enumerate(clip.frames):
        image = Image.open(frame_path).convert("RGB")
        width = round(image.width * GALLERY_HEIGHT / image.height)
        frame = np.asarray(image.resize((width, GALLERY_HEIGHT), Image.BILINEAR))
        for row, (maps, caption) in enumerate(((None, f"frame {t}"), (truth, "truth"), (predicted, "prediction"))):
            if maps is None:
                rows[row].append(draw_overlay(frame, np.zeros(frame.shape[:2], np.int64), names, caption=caption))
                continue
            labels = np.where(maps[t] == 255, 0, maps[t]).astype(np.uint8)
            big = np.asarray(Image.fromarray(labels).resize((width, GALLERY_HEIGHT), Image.NEAREST))
            rows[row].append(draw_overlay(frame, big, names, caption=caption))
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([np.concatenate(r, 1) for r in rows], 0)).save(path)


def _evaluate_binary(model, data, features, subset, split, size, tmp) -> tuple[dict[str, float], np.ndarray]:
    dataset = ClipDataset(data, features, 1, split, size, subsets=(subset,))
    probs, labels = [], []
    for index, p, batch in progress(predict(model, dataset, torch.device("cpu")), f"evaluate {subset} {split}",
                                    total=len(dataset)):
        lab, has_gt = batch["labels"], batch["has_gt"]
        probs.append(p[has_gt, 1])
        labels.append(lab[has_gt] == 1)
        if split == "test" and index < GALLERY_CLIPS:
            _gallery(tmp / "gallery" / f"{subset}_{index}.png", dataset.clips[index], lab.numpy(),
                     (p[:, 1] > 0.5).long().numpy(), class_names(2))
    p, g = torch.cat(probs), torch.cat(labels)
    frames_per_clip = dataset.clips[0].num_frames
    metrics = {"miou": s4_miou(p, g), "fscore": s4_fscore(p, g, frames_per_batch=frames_per_clip),
               "fscore_global": s4_fscore(p, g), "frames": len(p)}
    return metrics, fscore_curve(p, g)[1]


def _evaluate_avss(model, data, features, priors, split, size, tmp) -> dict[str, Any]:
    dataset = ClipDataset(data, features, 2, split, size, priors)
    preds, labels = [], []
    for index, p, batch in progress(predict(model, dataset, torch.device("cpu")), f"evaluate avss {split}",
                                    total=len(dataset)):
        lab, has_gt = batch["labels"], batch["has_gt"]
        preds.append(p[has_gt].argmax(1))
        labels.append(lab[has_gt])
        if split == "test" and index < GALLERY_CLIPS:
            _gallery(tmp / "gallery" / f"avss_{index}.png", dataset.clips[index], lab.numpy(),
                     p.argmax(1).numpy(), AVSS_CLASSES)
    return avss_scores(torch.cat(preds), torch.cat(labels), num_classes=len(AVSS_CLASSES))


def evaluate(data: Path, features: Path, *, stage1: Path | None, stage2: Path | None, priors: Path | None,
             out: Path, metrics_path: Path, runs: dict[str, Path] | None = None) -> dict[str, Any]:
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
