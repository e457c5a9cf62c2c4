"""AVSBench metric definitions on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from model.metrics import avss_scores, s4_fscore, s4_miou


def test_s4_miou_known_values() -> None:
    gt = np.zeros((2, 4, 4))
    gt[0, :2, :2] = 1                      # 4 foreground pixels
    prob = np.zeros((2, 4, 4))
    prob[0, :2, :] = 0.9                   # 8 predicted, 4 overlap -> IoU 0.5
    prob[1, 0, 0] = 0.7                    # empty GT: 15 of 16 pixels correctly empty
    assert s4_miou(prob, gt) == pytest.approx((0.5 + 15 / 16) / 2, abs=1e-6)
    assert s4_miou(gt, gt) == pytest.approx(1.0, abs=1e-6)


def test_s4_fscore_batch_definition() -> None:
    rng = np.random.default_rng(0)
    gt = rng.random((6, 8, 8)) > 0.6
    prob = np.clip(gt * 0.6 + rng.random((6, 8, 8)) * 0.5, 0, 1)
    assert s4_fscore(gt.astype(float), gt) == pytest.approx(1.0)
    per_frame = s4_fscore(prob, gt, frames_per_batch=1)
    whole = s4_fscore(prob, gt)
    assert 0 < whole <= per_frame <= 1  # one shared threshold can only do worse than one per frame
    empty = np.zeros((2, 8, 8))
    assert s4_fscore(prob[:2], empty) == 0.0  # frames without ground truth are skipped


def test_avss_scores_known_values() -> None:
    gt = np.zeros((1, 2, 4), dtype=np.int64)
    gt[0, :, :2] = 3
    pred = gt.copy()
    pred[0, 0, 2] = 3                      # class 3: inter 4, union 5; background: inter 3, union 4
    s = avss_scores(pred, gt, num_classes=5)
    iou3, iou0 = 4 / 5, 3 / 4
    assert s["per_class_iou"][3] == pytest.approx(iou3) and s["per_class_iou"][0] == pytest.approx(iou0)
    assert s["miou"] == pytest.approx((iou3 + iou0) / 5)
    assert s["miou_no_bg"] == pytest.approx(iou3 / 4)
    p3, r3 = 4 / 5, 1.0
    assert s["fscore_no_bg"] == pytest.approx(1.3 * p3 * r3 / (0.3 * p3 + r3) / 4, rel=1e-6)
    assert s["miou_present"] == pytest.approx((iou3 + iou0) / 2)  # only classes 0 and 3 occur in gt
    wrong_class = pred.copy()
    wrong_class[0, 1, 3] = 4               # predicted but absent from gt: not averaged; background drops to 2/4
    assert avss_scores(wrong_class, gt, num_classes=5)["miou_present"] == pytest.approx((iou3 + 2 / 4) / 2)
    ignored = gt.copy()
    ignored[0, 0, 2] = 255
    assert avss_scores(pred, ignored, num_classes=5)["per_class_iou"][3] == pytest.approx(1.0)


def _numpy_s4_miou(prob: np.ndarray, gt: np.ndarray) -> float:
    """Independent per-frame loop of the AVSBench mIoU definition."""
    scores = []
    for p, g in zip(prob > 0.5, gt > 0.5, strict=True):
        if g.sum() == 0:
            scores.append(((~p) & (~g)).sum() / p.size)
        else:
            scores.append((p & g).sum() / ((p | g).sum() + 1e-7))
    return float(np.mean(scores))


def _numpy_avss_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """Independent loop: per class, IoU averaged over the frames where its union is non-empty."""
    per_class = np.zeros(num_classes)
    for c in range(num_classes):
        ious = []
        for p, g in zip(pred, gt, strict=True):
            union = ((p == c) | (g == c)).sum()
            if union:
                ious.append(((p == c) & (g == c)).sum() / union)
        per_class[c] = np.mean(ious) if ious else 0.0
    return float(per_class.mean())


def test_metrics_match_independent_implementations_on_random_inputs() -> None:
    rng = np.random.default_rng()
    for _ in range(5):
        gt = rng.random((6, 12, 10)) > rng.uniform(0.3, 1.0)
        gt[rng.integers(6)] = False  # some frames with empty ground truth
        prob = rng.random((6, 12, 10))
        assert s4_miou(prob, gt) == pytest.approx(_numpy_s4_miou(prob, gt), abs=1e-9)
        labels = rng.integers(0, 6, (4, 9, 11))
        pred = np.where(rng.random(labels.shape) < 0.7, labels, rng.integers(0, 6, labels.shape))
        assert avss_scores(pred, labels, num_classes=8)["miou"] == pytest.approx(_numpy_avss_miou(pred, labels, 8))


def test_metric_edge_cases() -> None:
    empty = np.zeros((2, 4, 4))
    assert s4_miou(empty, empty) == pytest.approx(1.0)             # empty GT, nothing predicted
    assert s4_miou(np.ones((2, 4, 4)), empty) == pytest.approx(0.0)  # empty GT, everything predicted
    gt = np.zeros((1, 4, 4))
    gt[0, :2] = 1
    assert s4_miou(1 - gt, gt) == pytest.approx(0.0, abs=1e-6)      # all wrong
    # the AVSBench thresholds start at 0, where everything is predicted: P = 1/2, R = 1
    assert s4_fscore(1 - gt, gt) == pytest.approx(1.3 * 0.5 / (0.3 * 0.5 + 1))
    labels = np.full((1, 4, 4), 2)
    perfect = avss_scores(labels, labels, num_classes=4)
    assert perfect["per_class_iou"] == [0.0, 0.0, 1.0, 0.0]          # absent classes count 0
    assert perfect["miou"] == pytest.approx(0.25) and perfect["miou_no_bg"] == pytest.approx(1 / 3)
    wrong = avss_scores(np.full((1, 4, 4), 1), labels, num_classes=4)
    assert wrong["miou"] == 0.0 and wrong["fscore"] == 0.0


def test_f_curves_equal_the_dense_threshold_sweep() -> None:
    """The histogram form of the F curves counts exactly what thresholding every pixel at all 255
    thresholds counts (ties at a threshold, zero probabilities and empty ground truth included)."""
    from model.metrics import BETA2, NUM_THRESHOLDS, _f_curves

    torch.manual_seed(0)
    prob = torch.rand(7, 24, 24, dtype=torch.float64)
    prob[0] = 0.5
    prob[1, :5] = 0.0
    prob[3, :2] = torch.linspace(0, 1 - 1e-10, NUM_THRESHOLDS, dtype=torch.float64)[100]
    gt = (torch.rand(7, 24, 24) > 0.6).double()
    gt[2] = 0
    keep = gt.flatten(1).sum(1) > 0
    p, g = prob[keep].flatten(1), gt[keep].flatten(1)
    thresholds = torch.linspace(0, 1 - 1e-10, NUM_THRESHOLDS, dtype=torch.float64)
    pred = (p[:, None] >= thresholds[None, :, None]).double()
    tp = (pred * g[:, None]).sum(-1)
    precision, recall = tp / (pred.sum(-1) + 1e-20), tp / (g.sum(-1)[:, None] + 1e-20)
    dense = torch.nan_to_num((1 + BETA2) * precision * recall / (BETA2 * precision + recall), nan=0.0)
    assert torch.equal(_f_curves(prob, gt), dense)
