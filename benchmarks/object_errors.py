"""Whole objects or edges? How a stage-1 model's S4/MS3 errors split over the objects of the synthetic scenes.

For every annotated test frame of the synthetic data it regenerates the scene (the generator is
deterministic in `synth` of the parameters file), and for each visible object (at least 4 pixels at the
model's input size) measures the fraction of its pixels predicted sounding (foreground > 0.5). An object
counts as marked when that fraction exceeds one half. Printed per subset: sources marked, silent objects
(distractors) marked, and how many objects are nearly all in (> 0.8) or nearly all out (< 0.2): when most
objects sit near 0 or 1, the errors are whole objects bound to the wrong sound, not ragged edges.
Usage: python benchmarks/object_errors.py [--model models/stage1/best.pt] [--data data/synthetic]
       [--features data/features] [--params params.yaml] [--split test]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.params import SynthParams, load_params
from components.synth.generate import iter_clips, resolve_config
from components.train.checkpoint import load_trained
from components.train.data import ClipDataset
from components.train.predict import predict

SUBSETS = ("s4", "ms3")


def object_fractions(model: Path, data: Path, features: Path, synth: SynthParams, split: str) -> dict[str, dict]:
    """{subset: {"sources": [fraction marked per source object], "silent": [... per silent object]}}."""
    net, cfg = load_trained(model)
    scenes = {(c.part, c.clip_id): c.scene for c in iter_clips(resolve_config(synth.size, **synth.knobs()),
                                                               synth.seed) if c.split == split}
    out: dict[str, dict] = {}
    for subset in SUBSETS:
        dataset = ClipDataset(data, features, 1, split, cfg["input_size"], subsets=(subset,))
        fractions: dict[str, list[float]] = {"sources": [], "silent": []}
        for index, probs, batch in predict(net, dataset, torch.device("cpu")):
            scene = scenes.get((subset, dataset.clips[index].clip_id))
            if scene is None:
                raise SystemExit(f"{dataset.clips[index].key}: not a clip of the synthetic data of these parameters")
            objects = torch.from_numpy(scene.instances.astype(np.int64))[:, None].float()
            objects = F.interpolate(objects, size=probs.shape[-2:], mode="nearest")[:, 0].long()
            for t in torch.nonzero(batch["has_gt"]).flatten().tolist():
                marked = probs[t, 1] > 0.5
                for i in range(len(scene.classes)):
                    inside = objects[t] == i
                    if inside.sum() >= 4:
                        key = "sources" if scene.sounding[t, i] else "silent"
                        fractions[key].append(marked[inside].float().mean().item())
        out[subset] = fractions
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=Path("models/stage1/best.pt"))
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--features", type=Path, default=Path("data/features"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    synth = load_params(args.params).synth
    print(f"{args.model}, {args.split} split; per object: fraction of its pixels predicted sounding")
    print("| subset | sources marked | silent objects marked | sources < 0.2 / > 0.8 | silent < 0.2 / > 0.8 |")
    print("| --- | --- | --- | --- | --- |")
    for subset, fr in object_fractions(args.model, args.data, args.features, synth, args.split).items():
        src, sil = np.array(fr["sources"]), np.array(fr["silent"])
        cells = [f"{np.sum(x > 0.5)}/{len(x)} ({np.mean(x > 0.5):.2f})" for x in (src, sil)]
        cells += [f"{np.mean(x < 0.2):.2f} / {np.mean(x > 0.8):.2f}" for x in (src, sil)]
        print(f"| {subset} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
