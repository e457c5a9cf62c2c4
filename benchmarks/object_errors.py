"""Whole objects or edges, and which objects? How stage-1 S4/MS3 errors split over the synthetic scenes' objects.

For every annotated frame of the split it regenerates the scene (the generator is deterministic in
`synth` of the parameters file), and for each visible object (at least 4 pixels at the model's input
size) measures the fraction of its pixels predicted sounding (foreground > 0.5). An object counts as
marked when that fraction exceeds one half. Printed per subset: sources marked, silent objects
(distractors) marked, how many objects are nearly all in (> 0.8) or nearly all out (< 0.2) (when most sit
near 0 or 1, the errors are whole objects bound to the wrong sound, not ragged edges), and the silent
objects marked by how they look next to the frame's sources:

  same colour   the colour of a source, another shape (every class is one (shape, colour) pair)
  near colour   within 150 (sum over R, G, B of 0-255) of a source's colour
  same shape    a source's shape, a far colour
  other         neither

A network that tells the looks apart marks a silent object as rarely in every row; one that binds a sound
to a colour marks nearly every "same colour" object. For a network trained with a look head
(`model.look_weight`) it also prints the share of the S4 sources' pixels whose category that head names.
Several --model files (training seeds) give each rate as mean +- standard deviation; a label-oracle
model (`model.audio_input: classes`) hears the generator's classes, as in benchmarks/diagnostics.py.
Usage: python benchmarks/object_errors.py [--model models/stage1/best.pt ...] [--data data/synthetic]
       [--features data/features] [--params params.yaml] [--split test]
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from components.params import SynthParams, load_params
from components.synth.generate import iter_clips, resolve_config, sounding_classes
from components.synth.looks import look_of
from components.train.checkpoint import load_trained
from components.train.data import ClipDataset
from components.train.predict import predict

SUBSETS = ("s4", "ms3")
RELATIONS = ("same colour", "near colour", "same shape", "other")
NEAR_COLOUR = 150.0  # summed absolute RGB difference below which two colours count as near


def look_relation(silent: int, sources: list[int]) -> str:
    """How AVSS class `silent` looks next to the classes `sources` (AVSS indices): one of RELATIONS."""
    look = look_of(silent)
    others = [look_of(c) for c in sources if c != silent]
    distances = [float(np.abs(o.colour - look.colour).sum()) for o in others]
    if any(d == 0 for d in distances):
        return "same colour"
    if any(d < NEAR_COLOUR for d in distances):
        return "near colour"
    if any(o.shape == look.shape for o in others):
        return "same shape"
    return "other"


def _heard(cfg: dict, synth: SynthParams, split: str) -> dict[str, torch.Tensor] | None:
    """What a label-oracle network (`model.audio_input: classes`) hears instead of the audio: the generator's
    sounding classes per clip and second; None for a network that hears the audio."""
    if cfg["model"].get("audio_input") != "classes":
        return None
    synth_cfg = resolve_config(synth.size, **synth.knobs())
    return {key: torch.from_numpy(hot) for key, hot in sounding_classes(synth_cfg, synth.seed, (split,)).items()}


def object_fractions(model: Path, data: Path, features: Path, synth: SynthParams, split: str) -> dict[str, dict]:
    """{subset: {"sources": [fraction marked per source object], "silent": [... per silent object],
    "relation": [look_relation of each silent object to its frame's sources]}}."""
    net, cfg = load_trained(model)
    synth_cfg = resolve_config(synth.size, **synth.knobs())
    scenes = {(c.part, c.clip_id): c.scene for c in iter_clips(synth_cfg, synth.seed) if c.split == split}
    heard = _heard(cfg, synth, split)
    out: dict[str, dict] = {}
    for subset in SUBSETS:
        dataset = ClipDataset(data, features, 1, split, cfg["input_size"], subsets=(subset,), audio_classes=heard)
        fractions: dict[str, list] = {"sources": [], "silent": [], "relation": []}
        for index, probs, batch in predict(net, dataset, torch.device("cpu")):
            scene = scenes.get((subset, dataset.clips[index].clip_id))
            if scene is None:
                raise SystemExit(f"{dataset.clips[index].key}: not a clip of the synthetic data of these parameters")
            objects = torch.from_numpy(scene.instances.astype(np.int64))[:, None].float()
            objects = F.interpolate(objects, size=probs.shape[-2:], mode="nearest")[:, 0].long()
            for t in torch.nonzero(batch["has_gt"]).flatten().tolist():
                marked = probs[t, 1] > 0.5
                sources = [int(c) for c in scene.classes[scene.sounding[t]]]
                for i in range(len(scene.classes)):
                    inside = objects[t] == i
                    if inside.sum() < 4:
                        continue
                    fraction = marked[inside].float().mean().item()
                    if scene.sounding[t, i]:
                        fractions["sources"].append(fraction)
                    else:
                        fractions["silent"].append(fraction)
                        fractions["relation"].append(look_relation(int(scene.classes[i]), sources))
        out[subset] = fractions
    return out


@torch.no_grad()
def look_accuracy(model: Path, data: Path, features: Path, synth: SynthParams, split: str) -> float | None:
    """Share of the S4 sources' pixels (annotated frames of `split`) whose AVSS class the network's look head
    names from its mask features; None for a network without a look head."""
    net, cfg = load_trained(model)
    if not hasattr(net, "look_head"):
        return None
    grabbed: dict[str, torch.Tensor] = {}
    # the mask features as the decoder (and, in training, the look head) reads them
    net.decoder.register_forward_pre_hook(lambda module, inputs: grabbed.__setitem__("mask", inputs[1]))
    dataset = ClipDataset(data, features, 1, split, cfg["input_size"], subsets=("s4",),
                          audio_classes=_heard(cfg, synth, split))
    right = named = 0
    for _, _, batch in predict(net, dataset, torch.device("cpu")):
        logits = F.interpolate(net.look_head(grabbed["mask"]), size=batch["looks"].shape[-2:], mode="bilinear",
                               align_corners=False)
        where = batch["looks"] != 255
        right += int((logits.argmax(1)[where] == batch["looks"][where]).sum())
        named += int(where.sum())
    return right / max(named, 1)


def rates(fractions: dict) -> dict[str, float]:
    """The printed rates of one model's `object_fractions` for one subset."""
    src, sil = np.array(fractions["sources"]), np.array(fractions["silent"])
    relation = np.array(fractions["relation"])
    out = {"sources marked": np.mean(src > 0.5), "silent marked": np.mean(sil > 0.5),
           "sources < 0.2": np.mean(src < 0.2), "silent > 0.8": np.mean(sil > 0.8)}
    for name in RELATIONS:
        chosen = sil[relation == name]
        out[f"{name} marked"] = float(np.mean(chosen > 0.5)) if len(chosen) else float("nan")
    return {k: float(v) for k, v in out.items()}


def _cell(values: list[float]) -> str:
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{statistics.mean(values):.2f} +- {statistics.stdev(values):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, nargs="+", default=[Path("models/stage1/best.pt")])
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--features", type=Path, default=Path("data/features"))
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--split", default="test")
    args = parser.parse_args()
    synth = load_params(args.params).synth
    per_model = [object_fractions(m, args.data, args.features, synth, args.split) for m in args.model]
    print(f"{', '.join(map(str, args.model))}; {args.split} split; per object: fraction of its pixels predicted "
          "sounding; an object is marked above 0.5" + ("; mean +- std over the models" if len(per_model) > 1 else ""))
    columns = ["sources marked", "silent marked", "sources < 0.2", "silent > 0.8"] + [f"{r} marked" for r in RELATIONS]
    print("| subset | objects (sources / silent) | " + " | ".join(columns) + " |")
    print("| --- | --- | " + " | ".join("---" for _ in columns) + " |")
    for subset in SUBSETS:
        measured = [rates(m[subset]) for m in per_model]
        first = per_model[0][subset]
        counts = f"{len(first['sources'])} / {len(first['silent'])} (" + ", ".join(
            f"{r} {first['relation'].count(r)}" for r in RELATIONS) + ")"
        print(f"| {subset} | {counts} | " + " | ".join(_cell([m[c] for m in measured]) for c in columns) + " |")
    named = [look_accuracy(m, args.data, args.features, synth, args.split) for m in args.model]
    if all(value is not None for value in named):
        print(f"look head: names the category of {_cell(named)} of the S4 sources' pixels")


if __name__ == "__main__":
    main()
