"""`avs features --data DIR --out DIR`: log-mel scales and maskiges for every clip of every subset."""

from __future__ import annotations

import json
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from safetensors.torch import save_file

from components.avsbench.layout import (
    ClipFiles,
    MetadataError,
    list_clips,
    logmel_file,
    maskige_files,
    present_subsets,
)
from components.avsbench.reader import read_rgb
from components.common import StepError, atomic_dir, progress
from components.features.logmel import NTAVS_WINDOWS, SAMPLE_RATE, log_mel_scales, padding_for, to_mono_16k
from components.features.maskige import paint_maskige, save_maskige
from components.features.proposals import MaskProposer, make_proposer
from components.params import FeaturesParams

FEATURES_VERSION = 1


@dataclass
class Timings:
    """Seconds spent on audio features, mask proposals (and painting), and reading/writing files.

    Maskiges run on two threads, so their proposal and I/O seconds are summed over both threads and
    together can exceed the wall-clock total.
    """

    audio: float = 0.0
    proposals: float = 0.0
    io: float = 0.0
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))


def _load_audio(files: ClipFiles) -> torch.Tensor:
    try:
        data, rate = sf.read(files.audio, dtype="float32", always_2d=True)
    except Exception as exc:  # libsndfile raises several types
        raise StepError(f"{files.key}: cannot read audio {files.audio} ({exc})") from exc
    if len(data) == 0:
        raise StepError(f"{files.key}: audio {files.audio} is empty")
    return to_mono_16k(torch.from_numpy(data.T.copy()), rate)


def _audio_features(clips: list[ClipFiles], out: Path, batch_size: int, t: Timings) -> None:
    """Compute and save the three log-mel scales of `clips`, batching clips of equal length."""
    groups: dict[tuple[int, str], list[tuple[ClipFiles, torch.Tensor]]] = defaultdict(list)
    for files in progress(clips, desc="features: audio", total=len(clips)):
        start = time.perf_counter()
        wave = _load_audio(files)
        t.io += time.perf_counter() - start
        groups[(len(wave), files.subset)].append((files, wave))
        if len(groups[(len(wave), files.subset)]) == batch_size:
            _flush(groups.pop((len(wave), files.subset)), out, t)
    for batch in groups.values():
        _flush(batch, out, t)


def _flush(batch: list[tuple[ClipFiles, torch.Tensor]], out: Path, t: Timings) -> None:
    start = time.perf_counter()
    waves = torch.stack([w for _, w in batch])
    seconds, pad = padding_for(batch[0][0].subset)
    scales = {f"logmel_{w}": v for w, v in log_mel_scales(waves, NTAVS_WINDOWS, seconds, pad).items()}
    t.audio += time.perf_counter() - start
    start = time.perf_counter()
    for i, (files, _) in enumerate(batch):
        path = logmel_file(out, files)
        path.parent.mkdir(parents=True, exist_ok=True)
        # one metadata entry: safetensors writes several in a random order, so the same features would
        # give different bytes on every run, and DVC would retrain on unchanged inputs
        about = json.dumps({"clip": files.key, "sample_rate": SAMPLE_RATE, "version": FEATURES_VERSION}, sort_keys=True)
        save_file({k: v[i].contiguous() for k, v in scales.items()}, str(path), metadata={"avs_features": about})
        t.counts["audio_clips"] += 1
    t.io += time.perf_counter() - start


def _clip_maskiges(files: ClipFiles, out: Path, proposer: MaskProposer, size: int) -> tuple[float, float, int]:
    """Propose, paint and save one clip's maskiges; returns (proposal seconds, I/O seconds, count)."""
    spent_proposals = spent_io = 0.0
    for frame_path, target in zip(files.frames, maskige_files(out, files), strict=True):
        start = time.perf_counter()
        try:
            frame = read_rgb(frame_path)
        except Exception as exc:  # PIL raises several types for bad files
            raise StepError(f"{files.key}: cannot read frame {frame_path} ({exc})") from exc
        middle = time.perf_counter()
        maskige = paint_maskige(proposer(frame), size)
        end = time.perf_counter()
        save_maskige(target, maskige)
        spent_proposals += end - middle
        spent_io += middle - start + time.perf_counter() - end
    return spent_proposals, spent_io, len(files.frames)


def _maskiges(clips: list[ClipFiles], out: Path, proposer: MaskProposer, size: int, t: Timings) -> None:
    # two threads: decoding, numpy and scipy release the GIL for most of a frame's work
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = pool.map(lambda files: _clip_maskiges(files, out, proposer, size), clips)
        for proposals, io, count in progress(jobs, desc="features: maskiges", total=len(clips)):
            t.proposals += proposals
            t.io += io
            t.counts["maskiges"] += count


def compute_features(data: Path, out: Path, proposer: MaskProposer, maskige_size: int = 224,
                     batch_size: int = 32) -> dict[str, Any]:
    """Write log-mel scales (one safetensors file per clip) and maskiges for every clip under `data`.

    The output folder `out` mirrors the dataset layout (see `layout.logmel_file`, `layout.maskige_files`)
    and appears in one rename when everything succeeded; a bad clip raises StepError naming it and
    leaves no output. Returns a summary with counts and the seconds spent on audio, proposals and I/O.
    """
    data, out = Path(data), Path(out)
    if not data.is_dir():
        raise StepError(f"features: data folder {data} does not exist")
    subsets = present_subsets(data)
    if not subsets:
        raise StepError(f"features: {data} holds no AVSBench metadata")
    try:
        clips = [c for s in subsets for c in list_clips(data, s)]
    except MetadataError as exc:
        raise StepError(str(exc)) from exc
    t = Timings()
    start = time.perf_counter()
    with atomic_dir(out, overwrite=True) as tmp:
        _audio_features(clips, tmp, batch_size, t)
        _maskiges(clips, tmp, proposer, maskige_size, t)
    return {"clips": len(clips), "audio_clips": t.counts["audio_clips"], "maskiges": t.counts["maskiges"],
            "mask_source": proposer.name, "seconds": {"audio": round(t.audio, 3), "proposals": round(t.proposals, 3),
            "io": round(t.io, 3), "total": round(time.perf_counter() - start, 3)}}


def features_from_params(data: Path, out: Path, settings: FeaturesParams) -> dict[str, Any]:
    """`compute_features` with the mask source, SAM checkpoint ("" means none) and sizes of the `features`
    parameters: what `avs features` and the KFP component run."""
    checkpoint = Path(settings.sam_checkpoint) if settings.sam_checkpoint else None
    proposer = make_proposer(settings.mask_source, checkpoint, settings.sam_model_type)
    return compute_features(Path(data), Path(out), proposer, settings.maskige_size, settings.batch_size)


def read_features(path: Path) -> dict[str, torch.Tensor]:
    """Load a clip's feature file: {"logmel_256", "logmel_512", "logmel_1024"} each float32 [T, 1, 96, 64]."""
    from safetensors.torch import load_file

    return load_file(str(path))


def summary_line(summary: dict[str, Any]) -> str:
    """One line for the terminal."""
    s = summary["seconds"]
    return (f"features: {summary['audio_clips']} clips, {summary['maskiges']} maskiges ({summary['mask_source']}) "
            f"in {s['total']:.1f} s (audio {s['audio']:.1f}, proposals {s['proposals']:.1f}, I/O {s['io']:.1f})")



