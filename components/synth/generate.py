"""`avs synth`: write a synthetic AVSBench (S4, MS3, AVSS v1s/v1m/v2) in the real on-disk layout."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from components.avsbench.classes import (
    AVSS_CLASSES,
    S4_CATEGORIES,
    S4_CATEGORY_TO_AVSS,
    SPLITS,
    avss_palette,
    label2idx,
)
from components.avsbench.layout import LABEL2IDX, METADATA, annotated_frames, clip_files, frames_per_clip
from components.common import StepError, atomic_dir, progress
from components.synth.scenes import Scene, render_scene
from components.synth.sounds import SAMPLE_RATE

GENERATOR_VERSION = 3  # 3: label2idx.json counts from 1, as the real file does
# The five generated parts: S4, MS3 and the three AVSS labels.
PARTS: tuple[str, ...] = ("s4", "ms3", "v1s", "v1m", "v2")
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"))


@dataclass(frozen=True)
class SynthConfig:
    """Size and difficulty of a synthetic benchmark.

    image_size: S4/MS3 frame side in pixels (AVSS frames are 5:4 landscape with this height).
    clips: part -> (train, val, test) clip counts, parts as in PARTS.
    s4_categories / avss_classes: how many S4 categories / AVSS classes appear.
    min_distractors / max_distractors: silent visible objects per clip.
    max_sources: most sounding objects in a multi-source clip (MS3, v1m, v2; at least 2).
    noise_level: background noise RMS relative to a full-loudness source.
    min_radius / max_radius: object size range, as a fraction of the frame's short side.
    """

    image_size: int
    clips: dict[str, tuple[int, int, int]] = field(hash=False)
    s4_categories: int = 23
    avss_classes: int = 70
    min_distractors: int = 1
    max_distractors: int = 3
    max_sources: int = 3
    noise_level: float = 0.1
    min_radius: float = 0.11
    max_radius: float = 0.2

    def check(self) -> None:
        """Raise StepError naming the first out-of-range knob."""
        problems = {
            "image_size": self.image_size < 32,
            "s4_categories": not 2 <= self.s4_categories <= len(S4_CATEGORIES),
            "avss_classes": not 2 <= self.avss_classes <= len(AVSS_CLASSES) - 1,
            "min_distractors": not 0 <= self.min_distractors <= self.max_distractors,
            "max_distractors": self.max_distractors > 6,
            "max_sources": not 2 <= self.max_sources <= 5,
            "noise_level": not 0.0 <= self.noise_level <= 10.0,
            "min_radius": not 0.02 <= self.min_radius <= self.max_radius,
            "max_radius": self.max_radius > 0.45,
        }
        for name, bad in problems.items():
            if bad:
                raise StepError(f"synth: {name}={getattr(self, name)} is out of range")


SIZES: dict[str, SynthConfig] = {
    "tiny": SynthConfig(64, {"s4": (4, 2, 2), "ms3": (3, 2, 2), "v1s": (3, 2, 2), "v1m": (2, 2, 2),
                             "v2": (2, 1, 1)}, s4_categories=4, avss_classes=6),
    # val and test hold about 2.5x the clips they used to, so a figure moves less with the clips drawn
    "demo": SynthConfig(128, {"s4": (96, 64, 64), "ms3": (48, 48, 48), "v1s": (48, 32, 32),
                              "v1m": (32, 24, 24), "v2": (24, 16, 16)}, s4_categories=23, avss_classes=23),
    "large": SynthConfig(224, {"s4": (690, 148, 148), "ms3": (148, 32, 32), "v1s": (400, 80, 80),
                               "v1m": (200, 40, 40), "v2": (300, 60, 60)}),
}


@dataclass(frozen=True)
class SynthClip:
    """One generated clip with its identity in the benchmark."""

    part: str
    split: str
    clip_id: str
    category: str  # S4 category ("" elsewhere)
    scene: Scene

    @property
    def subset(self) -> str:
        return "avss" if self.part in ("v1s", "v1m", "v2") else self.part


def class_pools(cfg: SynthConfig) -> tuple[list[str], dict[str, list[int]]]:
    """(S4 categories used, part -> the AVSS classes its objects are drawn from).

    As in the real benchmark, where AVSS v1s/v1m are the S4/MS3 videos labelled by class and v2 adds
    classes of its own, the AVSS classes are the S4 categories' classes first (up to `avss_classes`),
    then classes spread over the rest of the 70: v1s/v1m draw from the first part only, v2 from all.
    """
    cats = list(S4_CATEGORIES[: cfg.s4_categories])
    object_pool = [AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[c]) for c in cats]
    shared = object_pool[: cfg.avss_classes]
    rest = [c for c in range(1, len(AVSS_CLASSES)) if c not in shared]
    picks = np.linspace(0, len(rest) - 1, cfg.avss_classes - len(shared)).round().astype(int)
    avss_pool = shared + [rest[i] for i in sorted(set(picks.tolist()))]
    return cats, {"s4": object_pool, "ms3": object_pool, "v1s": shared, "v1m": shared, "v2": avss_pool}


def _make_id(rng: np.random.Generator, taken: set[str]) -> str:
    while True:
        vid = "".join(rng.choice(_ID_ALPHABET, 11))
        if vid not in taken:
            taken.add(vid)
            return vid


def iter_clips(cfg: SynthConfig, seed: int) -> Iterator[SynthClip]:
    """Generate every clip of the benchmark, deterministically for (cfg, seed).

    Each clip draws from its own random stream keyed by (seed, part, split, index), so a clip does
    not change when the counts of other parts change.
    """
    cats, pools = class_pools(cfg)
    for part_code, part in enumerate(PARTS):
        pool = pools[part]
        taken: set[str] = set()
        for split_code, split in enumerate(SPLITS):
            for index in range(cfg.clips.get(part, (0, 0, 0))[split_code]):
                rng = np.random.default_rng([seed, part_code, split_code, index])
                vid = _make_id(rng, taken)
                single = part in ("s4", "v1s")
                if single:
                    category = cats[index % len(cats)] if part == "s4" else ""
                    sources = [AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[category])] if part == "s4" \
                        else [pool[index % len(pool)]]
                else:
                    category = ""
                    n_src = int(rng.integers(2, cfg.max_sources + 1))
                    sources = [int(c) for c in rng.choice(pool, min(n_src, len(pool)), replace=False)]
                others = [c for c in pool if c not in sources]
                n_dis = min(int(rng.integers(cfg.min_distractors, cfg.max_distractors + 1)), len(others))
                distractors = [int(c) for c in rng.choice(others, n_dis, replace=False)] if n_dis else []
                height = cfg.image_size
                width = height if part in ("s4", "ms3") else int(round(height * 1.25 / 8) * 8)
                label = part if part in ("v1s", "v1m", "v2") else ""
                steps = frames_per_clip("avss" if label else part, label)
                scene = render_scene(rng, sources, distractors, steps, height, width, cfg.noise_level,
                                     changing=part == "v2", radius=(cfg.min_radius, cfg.max_radius))
                clip_id = f"{vid}_{int(rng.integers(0, 30))}" if part != "ms3" else vid
                yield SynthClip(part, split, clip_id, category, scene)


def sounding_classes(cfg: SynthConfig, seed: int = 0, splits: tuple[str, ...] = SPLITS,
                     ) -> dict[str, np.ndarray]:
    """What every clip's audio says, as labels: clip key ("subset/id") -> float32 [T, 71], 1 for each AVSS
    class sounding during second t. The label oracle of the diagnostics hears this instead of the audio."""
    out = {}
    for clip in iter_clips(cfg, seed):
        if clip.split not in splits:
            continue
        scene = clip.scene
        hot = np.zeros((len(scene.sounding), len(AVSS_CLASSES)), np.float32)
        for t, on in enumerate(scene.sounding):
            hot[t, scene.classes[on]] = 1.0
        out[f"{clip.subset}/{clip.clip_id}"] = hot
    return out


def _save_png(path: Path, array: np.ndarray, mode: str | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path, optimize=False, compress_level=1)


def write_clip(root: Path, clip: SynthClip) -> dict[str, str]:
    """Write one clip's frames, audio and ground truth under `root`; return its metadata row."""
    label = clip.part if clip.subset == "avss" else clip.category
    files = clip_files(root, clip.subset, clip.clip_id, clip.split, label)
    scene = clip.scene
    annotated = annotated_frames(clip.subset, clip.split, label, files.num_frames)
    if clip.subset == "avss":
        semantic = scene.semantic_labels().astype(np.uint8)
        palette = avss_palette()
        for t, path in enumerate(files.frames):
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(scene.frames[t]).save(path, quality=92)
            if annotated[t]:
                _save_png(files.masks[t], palette[semantic[t]])
                _save_png(files.semantic[t], semantic[t])
    else:
        masks = scene.sounding_mask()
        for t, path in enumerate(files.frames):
            _save_png(path, scene.frames[t])
            if annotated[t]:
                _save_png(files.masks[t], (masks[t] * 255).astype(np.uint8))
    files.audio.parent.mkdir(parents=True, exist_ok=True)
    sf.write(files.audio, scene.audio, SAMPLE_RATE, subtype="PCM_16")

    if clip.subset == "s4":
        return {"name": clip.clip_id, "start": "0", "category": clip.category, "split": clip.split}
    if clip.subset == "ms3":
        return {"video_id": clip.clip_id, "split": clip.split}
    sounding = sorted({AVSS_CLASSES[c] for c in scene.classes[scene.sounding.any(0)]})
    return {"vid": clip.clip_id.rsplit("_", 1)[0], "uid": clip.clip_id, "s_min": "0", "s_sec": "0",
            "a_obj": "_".join(sounding), "split": clip.split, "label": clip.part}


def _write_csv(path: Path, rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def resolve_config(size: str, **overrides: object) -> SynthConfig:
    """The preset `size` with any non-None knob in `overrides` replaced, checked."""
    if size not in SIZES:
        raise StepError(f"synth: unknown size {size!r}; choose one of {', '.join(SIZES)}")
    cfg = replace(SIZES[size], **{k: v for k, v in overrides.items() if v is not None})
    cfg.check()
    return cfg


def generate(out: Path, cfg: SynthConfig, seed: int = 0, overwrite: bool = False, quirks: bool = False
             ) -> dict[str, int]:
    """Write the whole synthetic benchmark to `out` (atomically), with the real data's quirks when `quirks`
    (components.synth.quirks). Returns clip counts per part."""
    if quirks:
        from components.synth.quirks import check_room

        check_room(cfg.clips)
    rows: dict[str, list[dict[str, str]]] = {"s4": [], "ms3": [], "avss": []}
    counts = dict.fromkeys(PARTS, 0)
    total = sum(sum(v) for v in cfg.clips.values())
    with atomic_dir(Path(out), overwrite=overwrite) as tmp:
        for clip in progress(iter_clips(cfg, seed), desc="synth", total=total):
            rows[clip.subset].append(write_clip(tmp, clip))
            counts[clip.part] += 1
        for subset, subset_rows in rows.items():
            if subset_rows:
                _write_csv(tmp / METADATA[subset], subset_rows)
        if rows["avss"]:
            (tmp / LABEL2IDX).write_text(json.dumps(label2idx(), indent=1) + "\n")
        provenance = {"generator_version": GENERATOR_VERSION, "seed": seed, "config": asdict(cfg)}
        (tmp / "SYNTHETIC.json").write_text(json.dumps(provenance, indent=2) + "\n")
        if quirks:
            from components.synth.quirks import add_quirks

            add_quirks(tmp)  # check_room made sure every quirk has its clip
    return counts
