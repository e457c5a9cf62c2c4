"""Where every file of AVSBench lives (S4, MS3 and AVSS), read from the metadata CSVs.

`root` is the folder holding `AVSBench_object/` and/or `AVSBench_semantic/`. The same layout is written
by the synthetic generator, so one reader serves the real benchmark and the built-in one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

import pandas as pd

SUBSETS: tuple[str, ...] = ("s4", "ms3", "avss")

S4_DIR = Path("AVSBench_object") / "Single-source"
MS3_DIR = Path("AVSBench_object") / "Multi-sources"
AVSS_DIR = Path("AVSBench_semantic")

METADATA: dict[str, Path] = {
    "s4": S4_DIR / "s4_meta_data.csv",
    "ms3": MS3_DIR / "ms3_meta_data.csv",
    "avss": AVSS_DIR / "metadata.csv",
}
# The column holding each subset's clip id, split, and label (S4 category / AVSS v1s|v1m|v2).
ID_COLUMN = {"s4": "name", "ms3": "video_id", "avss": "uid"}
LABEL_COLUMN = {"s4": "category", "ms3": None, "avss": "label"}
LABEL2IDX = AVSS_DIR / "label2idx.json"


def frames_per_clip(subset: str, label: str = "") -> int:
    """Frames (= seconds) a clip of this subset has: 10 for AVSS v2, 5 otherwise."""
    return 10 if subset == "avss" and label == "v2" else 5


def annotated_frames(subset: str, split: str, label: str, num_frames: int) -> tuple[bool, ...]:
    """Which frames carry ground truth by the benchmark's protocol.

    S4 train and AVSS v1s train are annotated on the first frame only; everything else on all frames.
    """
    first_only = split == "train" and (subset == "s4" or (subset == "avss" and label == "v1s"))
    return tuple(i == 0 or not first_only for i in range(num_frames))


@dataclass(frozen=True)
class ClipFiles:
    """The files of one clip. Lists are per frame, in frame order.

    `masks` holds the binary masks (S4/MS3) or the colour labels `labels_rgb` (AVSS); `semantic` the
    AVSS index labels (empty for S4/MS3). `annotated[t]` says whether frame t should have ground truth.
    """

    subset: str
    split: str
    clip_id: str
    label: str
    frames: tuple[Path, ...]
    audio: Path
    masks: tuple[Path, ...]
    semantic: tuple[Path, ...]
    annotated: tuple[bool, ...]
    frame_dir: Path
    frame_pattern: re.Pattern[str]

    @property
    def key(self) -> str:
        """`subset/id`: ids are unique within a subset across all splits."""
        return f"{self.subset}/{self.clip_id}"

    @property
    def num_frames(self) -> int:
        return len(self.frames)

    def frames_on_disk(self) -> list[Path]:
        """The frame files actually present in the clip's frame folder (any count)."""
        if not self.frame_dir.is_dir():
            return []
        return sorted(p for p in self.frame_dir.iterdir() if self.frame_pattern.fullmatch(p.name))


def clip_files(root: Path, subset: str, clip_id: str, split: str, label: str = "") -> ClipFiles:
    """The expected files of one clip (they may or may not exist)."""
    root = Path(root)
    n = frames_per_clip(subset, label)
    annotated = annotated_frames(subset, split, label, n)
    if subset == "s4":
        base = root / S4_DIR / "s4_data"
        frame_dir = base / "visual_frames" / split / label / clip_id
        frames = tuple(frame_dir / f"{clip_id}_{k}.png" for k in range(1, n + 1))
        masks = tuple(base / "gt_masks" / split / label / clip_id / f"{clip_id}_{k}.png" for k in range(1, n + 1))
        audio = base / "audio_wav" / split / label / f"{clip_id}.wav"
        pattern = re.compile(re.escape(clip_id) + r"_\d+\.png")
        semantic: tuple[Path, ...] = ()
    elif subset == "ms3":
        base = root / MS3_DIR / "ms3_data"
        frame_dir = base / "visual_frames" / clip_id
        frames = tuple(frame_dir / f"{clip_id}.mp4_{k}.png" for k in range(1, n + 1))
        masks = tuple(base / "gt_masks" / split / clip_id / f"{clip_id}_{k}.png" for k in range(1, n + 1))
        audio = base / "audio_wav" / split / f"{clip_id}.wav"
        pattern = re.compile(re.escape(clip_id) + r"\.mp4_\d+\.png")
        semantic = ()
    elif subset == "avss":
        base = root / AVSS_DIR / label / clip_id
        frame_dir = base / "frames"
        frames = tuple(frame_dir / f"{i}.jpg" for i in range(n))
        masks = tuple(base / "labels_rgb" / f"{i}.png" for i in range(n))
        semantic = tuple(base / "labels_semantic" / f"{i}.png" for i in range(n))
        audio = base / "audio.wav"
        pattern = re.compile(r"\d+\.jpg")
    else:
        raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
    return ClipFiles(subset, split, clip_id, label, frames, audio, masks, semantic, annotated, frame_dir, pattern)


class MetadataError(ValueError):
    """A metadata CSV is missing or lacks a required column."""


def read_metadata(root: Path, subset: str) -> pd.DataFrame:
    """Read a subset's metadata CSV into columns `clip_id`, `split`, `label` (plus the originals).

    Raises MetadataError naming the file when it is missing, unreadable or lacks a column.
    """
    path = Path(root) / METADATA[subset]
    if not path.is_file():
        raise MetadataError(f"{path}: metadata file not found")
    try:
        df = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:  # pandas raises several types for malformed CSVs
        raise MetadataError(f"{path}: cannot parse CSV ({exc})") from exc
    needed = [c for c in (ID_COLUMN[subset], "split", LABEL_COLUMN[subset]) if c]
    missing = [c for c in needed if c not in df.columns]
    if missing:
        raise MetadataError(f"{path}: missing column(s) {', '.join(missing)}")
    df["clip_id"] = df[ID_COLUMN[subset]]
    df["label"] = df[LABEL_COLUMN[subset]] if LABEL_COLUMN[subset] else ""
    return df


def missing_trailing_frames(files: ClipFiles) -> int:
    """How many frames a *train* clip lacks at its end, its frame folder holding the first ones only (the
    official AVSS loader lists a train clip's folder and pads it); 0 for complete clips, other splits, or
    gaps before the last present frame (those are missing files)."""
    if files.split != "train" or files.frames[-1].is_file():
        return 0
    present = [p.is_file() for p in files.frames]
    count = present.index(False) if False in present else len(present)
    if count == 0 or any(present[count:]):
        return 0
    return len(present) - count


def padded(files: ClipFiles) -> ClipFiles:
    """`files` with the frames a train clip lacks at its end (`missing_trailing_frames`) replaced by its
    last present frame and marked not annotated, as the official loader pads them; else `files` itself."""
    missing = missing_trailing_frames(files)
    if not missing:
        return files
    keep = files.num_frames - missing
    frames = files.frames[:keep] + (files.frames[keep - 1],) * missing
    annotated = files.annotated[:keep] + (False,) * missing
    return replace(files, frames=frames, annotated=annotated)


def present_subsets(root: Path) -> list[str]:
    """The subsets whose metadata CSV exists under `root`."""
    return [s for s in SUBSETS if (Path(root) / METADATA[s]).is_file()]


def list_clips(root: Path, subset: str, split: str | None = None, labels: tuple[str, ...] | None = None,
               ) -> list[ClipFiles]:
    """Every clip of `subset` listed in its metadata, optionally filtered by split and AVSS label; a train
    clip short of its last frames comes `padded`."""
    df = read_metadata(root, subset)
    if split is not None:
        df = df[df["split"] == split]
    if labels is not None:
        df = df[df["label"].isin(labels)]
    return [padded(clip_files(root, subset, r.clip_id, r.split, r.label)) for r in df.itertuples(index=False)]


def logmel_file(out: Path, files: ClipFiles) -> Path:
    """Where the features step stores a clip's log-mel scales, under the output root `out`.

    Mirrors the original `audio_log_mel` folders: S4 `s4_data/audio_log_mel/{split}/{category}/{name}`,
    MS3 `ms3_data/audio_log_mel/{split}/{video_id}`, AVSS `audio_log_mel/{label}/{uid}`; `.safetensors`.
    """
    out = Path(out)
    if files.subset == "s4":
        return out / S4_DIR / "s4_data" / "audio_log_mel" / files.split / files.label / f"{files.clip_id}.safetensors"
    if files.subset == "ms3":
        return out / MS3_DIR / "ms3_data" / "audio_log_mel" / files.split / f"{files.clip_id}.safetensors"
    return out / AVSS_DIR / "audio_log_mel" / files.label / f"{files.clip_id}.safetensors"


def maskige_files(out: Path, files: ClipFiles) -> tuple[Path, ...]:
    """Where the maskige of each frame goes under `out`, as in the original `pre_SAM_mask` layout.

    S4 `s4_data/pre_SAM_mask/{split}/{category}/{name}/{name}_{k}_mask_color.png`, MS3
    `ms3_data/pre_SAM_mask/{video_id}/{video_id}.mp4_{k}_mask_color.png`, AVSS
    `pre_SAM_mask/AVSBench_semantic/{label}/{uid}/frames/{i}_mask_color.png`.
    """
    out = Path(out)
    if files.subset == "s4":
        base = out / S4_DIR / "s4_data" / "pre_SAM_mask" / files.split / files.label / files.clip_id
    elif files.subset == "ms3":
        base = out / MS3_DIR / "ms3_data" / "pre_SAM_mask" / files.clip_id
    else:
        base = out / AVSS_DIR / "pre_SAM_mask" / "AVSBench_semantic" / files.label / files.clip_id / "frames"
    return tuple(base / f"{frame.stem}_mask_color.png" for frame in files.frames)
