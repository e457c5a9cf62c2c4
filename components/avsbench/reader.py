"""One dataset API over S4, MS3 and AVSS, reading the benchmark's real layout."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from PIL import Image

from components.avsbench.classes import rgb_to_index
from components.avsbench.layout import SUBSETS, ClipFiles, list_clips

IGNORE_INDEX = 255


@dataclass
class Clip:
    """One clip as tensors.

    frames:      uint8 [T, 3, H, W]
    waveform:    float32 [channels, samples], as stored (not resampled)
    sample_rate: int
    target:      int64 [T, H, W]; S4/MS3: 0/1 foreground, AVSS: class index 0..70 (a colour outside
                 the palette is background); IGNORE_INDEX (255) on frames without ground truth
    has_gt:      bool [T], which frames carry ground truth
    files:       the clip's file paths and identity
    """

    frames: torch.Tensor
    waveform: torch.Tensor
    sample_rate: int
    target: torch.Tensor
    has_gt: torch.Tensor
    files: ClipFiles


def read_rgb(path: Path) -> np.ndarray:
    """uint8 [H, W, 3] of an image file (fully decoded, so truncation raises)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("RGB"))


def read_gray(path: Path) -> np.ndarray:
    """uint8 [H, W] of a single-channel image file (colour files are converted to luminance)."""
    with Image.open(path) as img:
        return np.asarray(img.convert("L"))


def read_target(files: ClipFiles, t: int) -> np.ndarray | None:
    """Ground truth of frame t as int64 [H, W] (0/1 or class index), or None when the frame has none."""
    path = files.masks[t]
    if not files.annotated[t] or not path.is_file():
        return None
    if files.subset == "avss":  # colours outside the palette are background, as the official loader reads them
        return rgb_to_index(read_rgb(path), unknown=0)
    return (read_gray(path) > 127).astype(np.int64)


class AVSBenchDataset(torch.utils.data.Dataset):
    """The clips of one subset and split.

    root: folder holding AVSBench_object/ and/or AVSBench_semantic/.
    subset: "s4", "ms3" or "avss"; split: "train", "val" or "test";
    labels: for AVSS, which of ("v1s", "v1m", "v2") to include (default all).
    Items are `Clip`s.
    """

    def __init__(self, root: str | Path, subset: str, split: str, labels: tuple[str, ...] | None = None):
        if subset not in SUBSETS:
            raise ValueError(f"unknown subset {subset!r}; expected one of {', '.join(SUBSETS)}")
        self.root = Path(root)
        self.subset = subset
        self.split = split
        self.clips: list[ClipFiles] = list_clips(self.root, subset, split, labels)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> Clip:
        files = self.clips[index]
        frames = np.stack([read_rgb(p) for p in files.frames])  # [T, H, W, 3]
        audio, sample_rate = sf.read(files.audio, dtype="float32", always_2d=True)  # [samples, channels]
        targets = [read_target(files, t) for t in range(files.num_frames)]
        height, width = frames.shape[1:3]
        target = np.stack([np.full((height, width), IGNORE_INDEX, np.int64) if m is None else m for m in targets])
        return Clip(
            frames=torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(),
            waveform=torch.from_numpy(np.ascontiguousarray(audio.T)),
            sample_rate=int(sample_rate),
            target=torch.from_numpy(target),
            has_gt=torch.tensor([m is not None for m in targets]),
            files=files,
        )
