"""The validation manifest: one row per clip with everything the expectation suite checks.

Every file is opened and fully decoded here, so a row records presence *and* readability. Paths in
the manifest are relative to the data root, so messages name files the way users see them.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import soundfile as sf
from PIL import Image

from components.avsbench.classes import off_palette_colours, read_label2idx, rgb_to_index
from components.avsbench.layout import (
    LABEL2IDX,
    METADATA,
    ClipFiles,
    MetadataError,
    clip_files,
    missing_trailing_frames,
    present_subsets,
    read_metadata,
)
from components.common import progress
from components.validate.wav import declared_frames


@dataclass
class FileProblems:
    """Files of one clip that are missing or cannot be decoded (paths relative to the data root)."""

    missing: list[str]
    unreadable: list[str]


def _load_image(path: Path, problems: FileProblems, root: Path) -> Image.Image | None:
    rel = str(path.relative_to(root))
    if not path.is_file():
        problems.missing.append(rel)
        return None
    try:
        img = Image.open(path)
        img.load()
        return img
    except Exception as exc:  # PIL raises OSError, SyntaxError, ValueError... for bad files
        problems.unreadable.append(f"{rel} ({type(exc).__name__}: {exc})")
        return None


def _audio_facts(files: ClipFiles, problems: FileProblems, root: Path) -> dict[str, Any]:
    rel = str(files.audio.relative_to(root))
    facts: dict[str, Any] = {"audio_file": rel, "audio_sample_rate": None, "audio_duration_s": None,
                             "audio_channels": None, "audio_rms": None}
    if not files.audio.is_file():
        problems.missing.append(rel)
        return facts
    try:
        data, rate = sf.read(files.audio, dtype="float64", always_2d=True)
        promised = declared_frames(files.audio)
        if promised is not None and promised > len(data):
            raise OSError(f"truncated: header promises {promised} frames, file holds {len(data)}")
    except Exception as exc:  # libsndfile errors, truncation
        problems.unreadable.append(f"{rel} ({type(exc).__name__}: {exc})")
        return facts
    rms = float(np.sqrt(np.mean(data**2))) if len(data) else 0.0
    facts.update(audio_sample_rate=int(rate), audio_duration_s=len(data) / rate,
                 audio_channels=int(data.shape[1]), audio_rms=rms)
    return facts


def _check_label(files: ClipFiles, img: Image.Image, rel: str, values: set[int]) -> tuple[str | None, int]:
    """Collect the label values of one ground-truth image; return (a complaint if any value is outside
    the label set, how many pixels are)."""
    if files.subset == "avss":
        rgb = np.asarray(img.convert("RGB"))
        index = rgb_to_index(rgb)
        values.update(int(i) for i in np.unique(index) if i != 255)
        off = off_palette_colours(rgb)
        stray = int((index == 255).sum())
        return (f"{rel} has {stray} pixel(s) of colours outside the AVSS palette {off[:3]}, read as background"
                if off else None), stray
    gray = np.asarray(img.convert("L"))
    uniq = set(np.unique(gray).tolist())
    values.update(uniq)
    bad = sorted(uniq - {0, 255})
    stray = int(((gray != 0) & (gray != 255)).sum())
    return (f"{rel} has {stray} pixel(s) of values {bad[:5]} outside {{0, 255}}, read as foreground above 127"
            if bad else None), stray


def clip_row(root: Path, files: ClipFiles, min_duration_fraction: float) -> dict[str, Any]:
    """Inspect one clip's files and return its manifest row. A train clip short of its last frames (which
    the training steps pad, see `missing_trailing_frames`) fails only the frame count, not the file checks."""
    problems = FileProblems([], [])
    present = files.num_frames - missing_trailing_frames(files)
    frame_sizes: list[tuple[int, int] | None] = []
    for path in files.frames[:present]:
        img = _load_image(path, problems, root)
        frame_sizes.append(None if img is None else (img.height, img.width))
    known_sizes = [s for s in frame_sizes if s is not None]

    bad_size: list[str] = []
    bad_values: list[str] = []
    values: set[int] = set()
    n_masks = stray_pixels = 0
    for t in (t for t, annotated in enumerate(files.annotated[:present]) if annotated):
        # the mask (S4/MS3) or colour label (AVSS), then the AVSS index label: presence, readability, size
        for k, path in enumerate([files.masks[t], *([files.semantic[t]] if files.semantic else [])]):
            img = _load_image(path, problems, root)
            if img is None:
                continue
            rel = str(path.relative_to(root))
            size = frame_sizes[t]
            if size is not None and (img.height, img.width) != size:
                bad_size.append(f"{rel} is {img.width}x{img.height}, frame is {size[1]}x{size[0]}")
            if k == 0:
                n_masks += 1
                complaint, stray = _check_label(files, img, rel, values)
                bad_values += [complaint] if complaint else []
                stray_pixels += stray

    row: dict[str, Any] = {
        "clip_key": files.key,
        "subset": files.subset,
        "split": files.split,
        "clip_id": files.clip_id,
        "label": files.label,
        "frame_dir": str(files.frame_dir.relative_to(root)),
        "n_frames": len(files.frames_on_disk()),
        "n_frames_expected": files.num_frames,
        "frame_height": known_sizes[0][0] if known_sizes else None,
        "frame_width": known_sizes[0][1] if known_sizes else None,
        "frame_sizes_consistent": len(set(known_sizes)) <= 1,
        "n_masks": n_masks,
        "n_masks_expected": sum(files.annotated[:present]),
        "mask_values": ",".join(map(str, sorted(values)[:20])),
        "mask_values_ok": not bad_values,
        "bad_mask_values": "; ".join(bad_values),
        "stray_label_pixels": stray_pixels,
        "mask_size_ok": not bad_size,
        "bad_mask_sizes": "; ".join(bad_size),
        "audio_min_duration_s": min_duration_fraction * files.num_frames,
    }
    row.update(_audio_facts(files, problems, root))
    row.update(n_missing=len(problems.missing), missing_files="; ".join(problems.missing),
               n_unreadable=len(problems.unreadable), unreadable_files="; ".join(problems.unreadable))
    return row


def build_manifest(root: Path, min_duration_fraction: float = 0.9, workers: int = 4,
                   ) -> tuple[pd.DataFrame, list[str]]:
    """Inspect every clip listed in the metadata of every subset present under `root`.

    Returns (manifest with one row per clip, dataset-level problems such as an unreadable metadata CSV).
    """
    root = Path(root)
    clips: list[tuple[ClipFiles, str]] = []
    problems: list[str] = []
    for subset in present_subsets(root):
        try:
            meta = read_metadata(root, subset)
        except MetadataError as exc:
            problems.append(str(exc))
            continue
        if subset == "avss" and (root / LABEL2IDX).is_file():  # absent: the readers need none
            try:
                read_label2idx(root / LABEL2IDX)
            except ValueError as exc:
                problems.append(str(exc))
        clips += [(clip_files(root, subset, r.clip_id, r.split, r.label), str(METADATA[subset]))
                  for r in meta.itertuples(index=False)]

    def inspect(item: tuple[ClipFiles, str]) -> dict[str, Any]:
        return {**clip_row(root, item[0], min_duration_fraction), "metadata_file": item[1]}

    with ThreadPoolExecutor(max_workers=workers) as pool:
        rows = list(progress(pool.map(inspect, clips), desc="validate", total=len(clips)))
    return pd.DataFrame(rows), problems
