"""Training samples: frames, log-mel audio, maskiges, labels and the stage-2 prior of one clip.

Reads the dataset layout (`components.avsbench`) plus the features step's output, resizes to the
training resolution, and normalises. Stage 1 sees every subset with binary labels; stage 2 sees AVSS
with its 71 classes and the stage-1 prior: the stage-1 prediction as read, which the training loop
replaces by the ground-truth foreground of annotated frames (`with_truth_prior`) for a chosen share of
the training clips.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from components.avsbench.classes import AVSS_CLASSES, S4_CATEGORY_TO_AVSS
from components.avsbench.layout import ClipFiles, list_clips, logmel_file, maskige_files, present_subsets
from components.avsbench.reader import IGNORE_INDEX, read_rgb, read_target
from components.common import StepError
from components.features.logmel import NTAVS_WINDOWS
from components.features.step import read_features

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@dataclass
class Sample:
    """One clip, ready for the network (T frames at S x S).

    frames [T, 3, S, S] normalised; audio [T, 3, 96, 64]; maskige [T, 3, S, S] in [0, 1];
    labels int64 [T, S, S] (255 where no ground truth); has_gt bool [T]; prior [T, S, S] or None;
    regions int64 [T, S, S]: the maskige's region of each pixel (1 + its area rank, 0 for none), which
    the criterion's per-region targets read. looks int64 [T, S, S]: the AVSS class of each labelled
    sounding pixel where the data names it (an S4 clip's category, an AVSS label), 255 elsewhere (MS3,
    background, frames without ground truth); the optional look loss reads it (`look_labels`).
    """

    frames: torch.Tensor
    audio: torch.Tensor
    maskige: torch.Tensor
    labels: torch.Tensor
    has_gt: torch.Tensor
    prior: torch.Tensor | None
    key: str
    regions: torch.Tensor
    looks: torch.Tensor


def prior_file(priors: Path, files: ClipFiles) -> Path:
    """Where `avs predict-masks` stores a clip's stage-1 foreground probabilities."""
    return Path(priors) / files.subset / f"{files.clip_id}.pt"


STAGE2_SUBSETS = ("avss",)


def stage_clips(data: Path, stage: int, split: str, subsets: tuple[str, ...] | None = None) -> list[ClipFiles]:
    """Clips a stage reads: stage 1 every subset present, stage 2 AVSS only (or the given subsets)."""
    present = present_subsets(data)
    wanted = subsets or (tuple(present) if stage == 1 else STAGE2_SUBSETS)
    missing = [s for s in wanted if s not in present]
    if missing:
        raise StepError(f"stage {stage} needs subset(s) {', '.join(missing)} under {data}")
    return [c for s in wanted for c in list_clips(data, s, split)]


class ClipDataset(torch.utils.data.Dataset):
    """Samples for `stage` (1 or 2) from `data` (dataset root) and `features` (features output root).

    priors: folder written by `avs predict-masks` (stage 2 only; without it stage-2 samples carry no prior,
    as a single-stage semantic model needs none). audio_swap: a permutation of clip
    indices whose audio replaces each clip's own (the audio-swap ablation); None keeps the true audio.
    subsets: read these subsets instead of the stage's own. audio_classes: clip key -> float [T, 71], the
    multi-hot of the classes sounding in each second, given as the audio instead of the log-mel features
    (the label oracle of the diagnostics; the network must take `audio_input: classes`).
    """

    def __init__(self, data: Path, features: Path, stage: int, split: str, size: int,
                 priors: Path | None = None, audio_swap: list[int] | None = None,
                 subsets: tuple[str, ...] | None = None, audio_classes: dict[str, torch.Tensor] | None = None):
        self.data, self.features, self.stage, self.split, self.size = Path(data), Path(features), stage, split, size
        self.priors = Path(priors) if priors is not None else None
        self.clips = stage_clips(self.data, stage, split, subsets)
        self.audio_swap = audio_swap
        self.audio_classes = audio_classes

    def __len__(self) -> int:
        return len(self.clips)

    def _resize(self, x: torch.Tensor, mode: str) -> torch.Tensor:
        return F.interpolate(x, size=(self.size, self.size), mode=mode,
                             **({"align_corners": False} if mode == "bilinear" else {}))

    def read_audio(self, files: ClipFiles) -> torch.Tensor:
        """The clip's log-mel scales, float [seconds, 3, 96, 64]; StepError naming a missing file."""
        path = logmel_file(self.features, files)
        if not path.is_file():
            raise StepError(f"{files.key}: features file {path} missing (run avs features)")
        feats = read_features(path)
        audio = torch.stack([feats[f"logmel_{w}"][:, 0] for w in NTAVS_WINDOWS], 1)   # [seconds, 3, 96, 64]
        return audio[: files.num_frames]

    def __getitem__(self, index: int) -> Sample:
        files = self.clips[index]
        frames = torch.from_numpy(np.stack([read_rgb(p) for p in files.frames])).permute(0, 3, 1, 2).float() / 255
        frames = (self._resize(frames, "bilinear") - MEAN) / STD
        rgb, regions = zip(*(read_maskige(p) for p in maskige_files(self.features, files)), strict=True)
        maskige = self._resize(torch.from_numpy(np.stack(rgb)).permute(0, 3, 1, 2).float() / 255, "nearest")
        regions = self._resize(torch.from_numpy(np.stack(regions))[:, None].float(), "nearest")[:, 0].long()
        targets = [read_target(files, t) for t in range(files.num_frames)]
        has_gt = torch.tensor([t is not None for t in targets])
        h, w = frames.shape[-2:] if all(t is None for t in targets) else next(t for t in targets if t is not None).shape
        labels = torch.stack([torch.full((h, w), IGNORE_INDEX) if t is None else torch.from_numpy(t) for t in targets])
        labels = self._resize(labels[:, None].float(), "nearest")[:, 0].long()
        looks = look_labels(labels, files)
        if self.stage == 1:  # class-agnostic: every sounding class is foreground
            labels = torch.where(labels == IGNORE_INDEX, labels, (labels > 0).long())
        audio_from = files if self.audio_swap is None else self.clips[self.audio_swap[index]]
        audio = (self.read_audio(audio_from) if self.audio_classes is None
                 else self.audio_classes[audio_from.key])[: files.num_frames]  # a swapped clip may be longer
        if len(audio) < files.num_frames:  # ... or shorter: repeat its last second
            audio = torch.cat([audio, audio[-1:].expand(files.num_frames - len(audio), *audio.shape[1:])])
        prior = self._prior(files) if self.stage == 2 and self.priors is not None else None
        return Sample(frames, audio, maskige, labels, has_gt, prior, files.key, regions, looks)

    def _prior(self, files: ClipFiles) -> torch.Tensor:
        path = prior_file(self.priors, files)
        if not path.is_file():
            raise StepError(f"{files.key}: stage-1 prior {path} missing (run avs predict-masks)")
        predicted = torch.load(path, weights_only=True).float()
        return F.interpolate(predicted[:, None], size=(self.size, self.size), mode="bilinear",
                             align_corners=False)[:, 0]


def look_labels(labels: torch.Tensor, files: ClipFiles) -> torch.Tensor:
    """The AVSS class of each sounding pixel where the clip's annotation names it, 255 elsewhere.

    labels int64 [T, H, W] as read (S4/MS3 0/1, AVSS class index, 255 without ground truth) -> int64
    [T, H, W]. An S4 clip's sounding object is of its category (`files.label`), an AVSS pixel of its label's
    class; MS3 labels do not say which of the sources a pixel belongs to, so MS3 (and an S4 category
    without an AVSS class) names none.
    """
    ignore = torch.full_like(labels, IGNORE_INDEX)
    if files.subset == "avss":
        return torch.where((labels > 0) & (labels != IGNORE_INDEX), labels, ignore)
    avss_name = S4_CATEGORY_TO_AVSS.get(files.label) if files.subset == "s4" else None
    if avss_name is None:
        return ignore
    return torch.where(labels == 1, AVSS_CLASSES.index(avss_name), ignore)


def read_maskige(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A maskige file as (RGB uint8 [H, W, 3], the network's input; region labels uint8 [H, W], the palette
    indices: 1 + the area rank of the region, 0 where none). StepError naming a missing file."""
    if not Path(path).is_file():
        raise StepError(f"maskige {path} missing (run avs features)")
    with Image.open(path) as img:
        regions = np.asarray(img) if img.mode == "P" else np.zeros(img.size[::-1], np.uint8)
        return np.asarray(img.convert("RGB")), regions


def clip_draws(seed: int, step: int, clip: int, *stream: int) -> torch.Generator:
    """The generator of one clip's random draws at one training step: a function of (seed, step, clip)
    and an optional stream number only, so a resumed run redraws exactly what the interrupted one drew.
    Augmentation uses the bare key; other draws add a stream so they stay independent of it."""
    return torch.Generator().manual_seed(int(np.random.SeedSequence([seed, step, clip, *stream]).generate_state(1)[0]))


def with_truth_prior(sample: Sample) -> Sample:
    """`sample` with its prior [T, S, S] replaced by the ground-truth foreground (1 where the label is a
    sounding class, else 0) on its annotated frames; unannotated frames keep the stage-1 prediction."""
    if sample.prior is None:
        raise ValueError(f"{sample.key}: a stage-1 sample has no prior to replace")
    truth = ((sample.labels > 0) & (sample.labels != IGNORE_INDEX)).float()
    return replace(sample, prior=torch.where(sample.has_gt[:, None, None], truth, sample.prior))


def training_prior(sample: Sample, share: float, seed: int, step: int, clip: int) -> Sample:
    """The prior a stage-2 training clip is shown at one step: with probability `share` in [0, 1] the
    ground truth of its annotated frames (the paper's recipe is 1.0), else the stage-1 prediction as
    read, which is what the clip would meet at val/test. The draw depends on (seed, step, clip) only, so
    a resumed run redraws what the interrupted one drew. A stage-1 sample (no prior) is returned as is."""
    if sample.prior is None or share <= 0:
        return sample
    # stream 1 keeps this draw apart from the augmentation's (the bare key)
    if share < 1 and torch.rand((), generator=clip_draws(seed, step, clip, 1)).item() >= share:
        return sample
    return with_truth_prior(sample)


def frame_window(sample: Sample, frames: int, generator: torch.Generator) -> Sample:
    """`sample` cut to `frames` consecutive frames (all of them when it has no more, or `frames` is 0).

    The window is drawn uniformly among those holding at least one annotated frame (an S4 training clip,
    annotated on its first frame only, always keeps that frame), so no step computes frames that can take
    no loss only. Every per-frame field is cut alike; the draw uses `generator` only.
    """
    count = len(sample.frames)
    if frames <= 0 or frames >= count:
        return sample
    starts = [s for s in range(count - frames + 1) if bool(sample.has_gt[s:s + frames].any())] or [0]
    start = starts[int(torch.randint(len(starts), (), generator=generator))]
    cut = slice(start, start + frames)
    return replace(sample, frames=sample.frames[cut], audio=sample.audio[cut], maskige=sample.maskige[cut],
                   labels=sample.labels[cut], has_gt=sample.has_gt[cut], regions=sample.regions[cut],
                   looks=sample.looks[cut], prior=sample.prior[cut] if sample.prior is not None else None)


def collate(samples: list[Sample]) -> dict[str, torch.Tensor | list[str] | None]:
    """Stack samples of equal frame count into a batch: [B, T, ...] tensors, labels/has_gt/regions/looks
    flattened to B*T."""
    out: dict[str, torch.Tensor | list[str] | None] = {
        "frames": torch.stack([s.frames for s in samples]),
        "audio": torch.stack([s.audio for s in samples]),
        "maskige": torch.stack([s.maskige for s in samples]),
        "labels": torch.cat([s.labels for s in samples]),
        "has_gt": torch.cat([s.has_gt for s in samples]),
        "regions": torch.cat([s.regions for s in samples]),
        "looks": torch.cat([s.looks for s in samples]),
        "prior": torch.stack([s.prior for s in samples]) if samples[0].prior is not None else None,
        "keys": [s.key for s in samples],
    }
    return out


def batches(dataset: ClipDataset, batch_clips: int, generator: torch.Generator, frames: int = 0,
            repeat: dict[str, int] | None = None) -> list[list[int]]:
    """One epoch's batches of clip indices: shuffled, grouped so every batch holds clips with the same frame
    count once cut to windows of `frames` (0: whole clips; see `frame_window`). `repeat`: subset -> times
    each of its clips comes in the epoch (default once)."""
    times = [(repeat or {}).get(clip.subset, 1) for clip in dataset.clips]
    pool = [i for i, count in enumerate(times) for _ in range(count)]
    order = [pool[j] for j in torch.randperm(len(pool), generator=generator).tolist()]
    groups: dict[int, list[int]] = {}
    for i in order:
        count = dataset.clips[i].num_frames
        groups.setdefault(min(count, frames) if frames > 0 else count, []).append(i)
    out = [idx[k:k + batch_clips] for idx in groups.values() for k in range(0, len(idx), batch_clips)]
    perm = torch.randperm(len(out), generator=generator).tolist()
    return [out[i] for i in perm]
