"""The audio-blind baseline: "segment every visible object", scored with the AVSBench metrics.

It shows how much of the synthetic task needs the audio: a model that ignores sound can at best find
every object, and loses every pixel of the silent distractors.
"""

from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple

import numpy as np

from components.avsbench.layout import annotated_frames
from components.synth.generate import SynthConfig, iter_clips
from model.metrics import avss_scores, s4_miou


class Baseline(NamedTuple):
    """The audio-blind score of one part: mIoU, the mIoU of a perfect prediction, and (AVSS) the mIoU over
    the classes present in the ground truth (for S4/MS3 the same as mIoU)."""

    miou: float
    perfect: float
    present: float


def audio_blind_scores(cfg: SynthConfig, seed: int = 0, splits: tuple[str, ...] = ("test",),
                       ) -> dict[str, Baseline]:
    """mIoU of predicting every visible object as sounding, per part, on the annotated frames.

    Returns part -> Baseline(mIoU, mIoU of a perfect prediction, present-class mIoU) for "s4", "ms3", "avss",
    "v1s", "v1m", "v2". S4/MS3 use `s4_miou` (binary, perfect = 1); AVSS parts use `avss_scores(...)["miou"]` with each
    object given its true class; its perfect score is below 1 because the metric averages over all 71
    classes and counts classes absent from the data as 0.
    """
    binary: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    semantic: dict[str, list[tuple[np.ndarray, np.ndarray]]] = defaultdict(list)
    for clip in iter_clips(cfg, seed):
        if clip.split not in splits:
            continue
        scene = clip.scene
        keep = np.array(annotated_frames(clip.subset, clip.split, clip.part, len(scene.frames)))
        if clip.subset == "avss":
            pair = (scene.semantic_labels(sounding_only=False)[keep], scene.semantic_labels()[keep])
            semantic[clip.part].append(pair)
            semantic["avss"].append(pair)
        else:
            binary[clip.part].append(((scene.instances >= 0)[keep].astype(np.float32), scene.sounding_mask()[keep]))
    scores = {}
    for part, pairs in binary.items():
        miou = s4_miou(np.concatenate([p for p, _ in pairs]), np.concatenate([g for _, g in pairs]))
        scores[part] = Baseline(miou, 1.0, miou)
    for part, pairs in semantic.items():
        pred = np.concatenate([p.reshape(-1, *p.shape[-2:]) for p, _ in pairs])
        gt = np.concatenate([g.reshape(-1, *g.shape[-2:]) for _, g in pairs])
        blind = avss_scores(pred, gt)
        scores[part] = Baseline(blind["miou"], avss_scores(gt, gt)["miou"], blind["miou_present"])
    return scores
