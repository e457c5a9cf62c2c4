"""AVSBench metric definitions on hand-made inputs with known answers."""

from __future__ import annotations

import numpy as np
import pytest

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
    ignored = gt.copy()
    ignored[0, 0, 2] = 255
    assert avss_scores(pred, ignored, num_classes=5)["per_class_iou"][3] == pytest.approx(1.0)
