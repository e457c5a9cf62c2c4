"""AVSBench metrics, exactly as the benchmark defines them (docs/design.md, Metrics).

S4/MS3 take foreground probabilities and binary ground truth per frame; AVSS takes class-index maps.
All inputs are `[frames, H, W]` tensors (numpy arrays are accepted too).
"""

from __future__ import annotations

import numpy as np
import torch

EPS = 1e-7
BETA2 = 0.3
NUM_THRESHOLDS = 255


def _as_tensor(x: torch.Tensor | np.ndarray, dtype: torch.dtype) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).to(dtype)


def s4_miou(prob: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> float:
    """AVSBench mIoU for S4/MS3.

    prob: float [F, H, W] foreground probability (thresholded at 0.5); gt: binary [F, H, W].
    A frame with empty ground truth scores the fraction of pixels correctly left empty.
    Returns the mean IoU over frames.
    """
    p = _as_tensor(prob, torch.float64) > 0.5
    g = _as_tensor(gt, torch.float64) > 0.5
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"expected matching [frames, H, W] inputs, got {tuple(p.shape)} and {tuple(g.shape)}")
    inter = (p & g).flatten(1).sum(1).double()
    union = (p | g).flatten(1).sum(1).double()
    empty = g.flatten(1).sum(1) == 0
    true_neg = (~p & ~g).flatten(1).sum(1).double() / p[0].numel()
    iou = torch.where(empty, true_neg, inter / (union + EPS))
    return float(iou.mean())


def _f_curves(prob: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """F-beta curves [frames_with_gt, 255] over the AVSBench thresholds."""
    keep = gt.flatten(1).sum(1) > 0
    p, g = prob[keep].flatten(1), gt[keep].flatten(1)
    thresholds = torch.linspace(0, 1 - 1e-10, NUM_THRESHOLDS, dtype=torch.float64)
    # a pixel is predicted at threshold j when p >= thresholds[j], i.e. when j < (thresholds <= p).sum():
    # per-frame histograms of that count give every threshold's pixel counts without a [F, 255, HW] tensor
    level = torch.searchsorted(thresholds, p.contiguous(), right=True)                 # [F, HW] in 0..255
    slots = (level + torch.arange(len(p))[:, None] * (NUM_THRESHOLDS + 1)).flatten()
    bins = len(p) * (NUM_THRESHOLDS + 1)
    counts = torch.bincount(slots, minlength=bins).view(len(p), NUM_THRESHOLDS + 1).double()
    hits = torch.bincount(slots, weights=g.flatten().double(), minlength=bins).view(len(p), NUM_THRESHOLDS + 1)
    predicted = counts.flip(-1).cumsum(-1).flip(-1)[:, 1:]                             # [F, 255]
    tp = hits.flip(-1).cumsum(-1).flip(-1)[:, 1:]
    precision = tp / (predicted + 1e-20)
    recall = tp / (g.sum(-1)[:, None] + 1e-20)
    f = (1 + BETA2) * precision * recall / (BETA2 * precision + recall)
    return torch.nan_to_num(f, nan=0.0)


def fscore_curve(prob: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(thresholds [255], mean F-beta over frames with non-empty ground truth [255]): one shared threshold
    for the whole set; its maximum is the batch-independent `s4_fscore`."""
    curves = _f_curves(_as_tensor(prob, torch.float64), (_as_tensor(gt, torch.float64) > 0.5).double())
    thresholds = np.linspace(0, 1 - 1e-10, NUM_THRESHOLDS)
    return thresholds, (curves.mean(0).numpy() if len(curves) else np.zeros(NUM_THRESHOLDS))


def s4_fscore(prob: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray,
              frames_per_batch: int | None = None) -> float:
    """AVSBench F-score (beta^2 = 0.3) for S4/MS3.

    prob: float [F, H, W]; gt: binary [F, H, W]. With `frames_per_batch=k` it reproduces the original:
    consecutive groups of k frames are batches; each batch averages the F curves of its frames with
    non-empty ground truth and takes the best threshold; batches are averaged. With None (the
    batch-independent variant) all frames form one batch: one threshold for the whole set.
    """
    p = _as_tensor(prob, torch.float64)
    g = (_as_tensor(gt, torch.float64) > 0.5).double()
    k = len(p) if frames_per_batch is None else frames_per_batch
    scores = []
    for start in range(0, len(p), k):
        curves = _f_curves(p[start:start + k], g[start:start + k])
        if len(curves):
            scores.append(float(curves.mean(0).max()))
    return float(np.mean(scores)) if scores else 0.0


def avss_scores(pred: torch.Tensor | np.ndarray, gt: torch.Tensor | np.ndarray,
                num_classes: int = 71, ignore_index: int = 255) -> dict[str, float]:
    """AVSS mIoU and F-score (beta^2 = 0.3) over class-index maps.

    pred, gt: int [F, H, W]. Per frame, per class: IoU and F from the pixel counts; each class's scores
    are averaged over the frames where its union is non-empty, and the means are taken over all
    `num_classes` classes (a class never seen counts 0). Pixels where gt == ignore_index are skipped.
    The "_present" forms average only over the classes that occur in the ground truth: on a set with
    fewer than 71 classes (the synthetic demo has 23) the AVSBench form cannot exceed (classes + 1) / 71.
    Returns {"miou", "fscore", "miou_no_bg", "fscore_no_bg", "miou_present", "fscore_present",
    "per_class_iou": list}.
    """
    p = _as_tensor(pred, torch.int64)
    g = _as_tensor(gt, torch.int64)
    if p.shape != g.shape or p.ndim != 3:
        raise ValueError(f"expected matching [frames, H, W] inputs, got {tuple(p.shape)} and {tuple(g.shape)}")
    valid = g != ignore_index
    iou_sum = torch.zeros(num_classes, dtype=torch.float64)
    f_sum = torch.zeros(num_classes, dtype=torch.float64)
    count = torch.zeros(num_classes, dtype=torch.float64)
    in_gt = torch.zeros(num_classes, dtype=torch.bool)
    for pf, gf, vf in zip(p, g, valid, strict=True):
        pf, gf = pf[vf], gf[vf]
        area_pred = torch.bincount(pf.clamp(0, num_classes - 1), minlength=num_classes).double()
        area_gt = torch.bincount(gf.clamp(0, num_classes - 1), minlength=num_classes).double()
        inter = torch.bincount(gf[pf == gf].clamp(0, num_classes - 1), minlength=num_classes).double()
        union = area_pred + area_gt - inter
        present = union > 0
        precision = inter / (area_pred + 1e-10)
        recall = inter / (area_gt + 1e-10)
        f = torch.nan_to_num((1 + BETA2) * precision * recall / (BETA2 * precision + recall + 1e-10))
        iou_sum += torch.where(present, inter / union.clamp(min=1), 0.0)
        f_sum += torch.where(present, f, 0.0)
        count += present.double()
        in_gt |= area_gt > 0
    iou = iou_sum / count.clamp(min=1)
    fs = f_sum / count.clamp(min=1)
    return {
        "miou": float(iou.mean()),
        "fscore": float(fs.mean()),
        "miou_no_bg": float(iou[1:].mean()),
        "fscore_no_bg": float(fs[1:].mean()),
        "miou_present": float(iou[in_gt].mean()) if in_gt.any() else 0.0,
        "fscore_present": float(fs[in_gt].mean()) if in_gt.any() else 0.0,
        "per_class_iou": iou.tolist(),
    }
