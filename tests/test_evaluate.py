"""`avs evaluate` against known values: a model that answers the ground truth scores exactly 1, and an
all-foreground model scores what the metric's definition gives when computed by hand from the mask files.

The network is replaced by a stand-in (the evaluation code under test is everything around it: which
clips of which split and subset, which frames have ground truth, how scores are gathered per split)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import components.evaluate.run as run
from components.avsbench.layout import list_clips
from components.features.proposals import RegionProposer
from components.features.step import compute_features
from components.train.data import collate


@dataclass
class _Config:
    num_classes: int
    prior: bool = False
    maskige: bool = True


class _StandIn:
    """What evaluate needs of a network: its config; `answer` says what it predicts."""

    def __init__(self, num_classes: int, answer: str):
        self.cfg, self.answer = _Config(num_classes), answer


def _predict(model: _StandIn, dataset, device):
    """Stand-in for components.train.predict.predict: per clip, one-hot probabilities [T, C, S, S] of the
    ground truth ("truth", unlabelled pixels as background) or of class 1 everywhere ("foreground")."""
    for index in range(len(dataset)):
        batch = collate([dataset[index]])
        labels = batch["labels"]
        classes = torch.where(labels == 255, 0, labels) if model.answer == "truth" else torch.ones_like(labels)
        yield index, F.one_hot(classes, model.cfg.num_classes).permute(0, 3, 1, 2).float(), batch


@pytest.fixture(scope="module")
def features(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("eval") / "features"
    compute_features(tiny_data, out, RegionProposer(), maskige_size=64)
    return out


def _evaluate(answer: str, tiny_data: Path, features: Path, tmp_path: Path, monkeypatch) -> dict:
    nets = {"stage1.pt": _StandIn(2, answer), "stage2.pt": _StandIn(71, answer)}
    monkeypatch.setattr(run, "load_trained", lambda path: (nets[Path(path).name], {"input_size": 64}))
    monkeypatch.setattr(run, "predict", _predict)
    return run.evaluate(tiny_data, features, stage1=Path("stage1.pt"), stage2=Path("stage2.pt"), priors=None,
                        out=tmp_path / "report", metrics_path=tmp_path / "metrics.json")


def test_the_ground_truth_scores_one_everywhere(tiny_data: Path, features: Path, tmp_path: Path,
                                               monkeypatch) -> None:
    metrics = _evaluate("truth", tiny_data, features, tmp_path, monkeypatch)
    assert set(metrics) == {"s4", "ms3", "avss"}
    for subset in ("s4", "ms3"):
        for split in ("val", "test"):
            m = metrics[subset][split]
            assert m["miou"] == pytest.approx(1.0, abs=1e-6) and m["fscore"] == pytest.approx(1.0, abs=1e-6)
            assert m["frames"] == sum(sum(c.annotated) for c in list_clips(tiny_data, subset, split))
    for split in ("val", "test"):
        m = metrics["avss"][split]
        assert m["miou_present"] == pytest.approx(1.0, abs=1e-6) and m["fscore_present"] == pytest.approx(1.0, abs=1e-6)
        # the AVSBench form averages all 71 classes, absent ones counting 0
        present = set()
        for clip in list_clips(tiny_data, "avss", split):
            for path, annotated in zip(clip.masks, clip.annotated, strict=True):
                if annotated and path.is_file():
                    rgb = np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)
                    present |= {tuple(c) for c in np.unique(rgb, axis=0)}
        assert m["miou"] == pytest.approx(len(present) / 71, abs=1e-6)


def test_an_all_foreground_model_scores_the_hand_computed_iou(tiny_data: Path, features: Path, tmp_path: Path,
                                                              monkeypatch) -> None:
    """Marking every pixel: per annotated frame, IoU = |G| / (H W) when the frame has a sounding object, and
    0 when it has none (the AVSBench rule scores the background agreement, here nothing); mIoU = mean."""
    metrics = _evaluate("foreground", tiny_data, features, tmp_path, monkeypatch)
    for subset in ("s4", "ms3"):
        for split in ("val", "test"):
            ious = []
            for clip in list_clips(tiny_data, subset, split):
                for path, annotated in zip(clip.masks, clip.annotated, strict=True):
                    if annotated:
                        truth = np.asarray(Image.open(path).convert("L")) > 127
                        ious.append(truth.mean() if truth.any() else 0.0)
            assert len(ious) == metrics[subset][split]["frames"]
            assert metrics[subset][split]["miou"] == pytest.approx(float(np.mean(ious)), abs=1e-6), (subset, split)
