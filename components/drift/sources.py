"""Where clips for a drift report come from: an AVSBench-layout folder, a folder of videos, a JSONL log.

`read_source(path)` picks by what `path` is:
- a folder with AVSBench metadata (`AVSBench_object/...`, `AVSBench_semantic/metadata.csv`): every clip
  of every subset (optionally one split), frames and WAV as stored;
- a folder written by `write_table` (a reference, or a previous `avs drift` output): its rows;
- a `.jsonl` file: the endpoint's live log (one descriptor row per request, see `live.py`);
- any other folder: every video file under it, decoded one frame per second with 16 kHz mono audio.

Unreadable clips are named and skipped (counted in `DescriptorTable.skipped`), or fatal with `strict`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch

from components.avsbench.layout import MetadataError, list_clips, present_subsets
from components.avsbench.reader import read_rgb
from components.common import StepError, progress
from components.drift.descriptors import DESCRIPTOR_VERSION, describe
from components.drift.table import DescriptorTable, is_table, make_frame, read_table

# A model wrapped for descriptors: (frames uint8 [T, 3, H, W], waveform float [C, S], sample_rate) ->
# (foreground probability float [T, H', W'], class map int [T, H', W'] or None).
Predictor = Callable[[torch.Tensor, torch.Tensor, int], tuple[torch.Tensor, torch.Tensor | None]]

VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".wmv",
                                   ".flv", ".ts", ".3gp", ".ogv")


class _UnreadableClipError(Exception):
    """A clip that cannot be read; the message names the file and the reason."""


def _describe(frames: torch.Tensor, waveform: torch.Tensor, sample_rate: int, fps: float | None,
              duration: float | None, predictor: Predictor | None) -> dict[str, float]:
    foreground = class_map = None
    if predictor is not None:
        foreground, class_map = predictor(frames, waveform, sample_rate)
    return describe(frames, waveform, sample_rate, fps=fps, duration=duration, foreground=foreground,
                    class_map=class_map)


def _collect(items: list[Any], read: Callable[[Any], dict[str, Any]], name: Callable[[Any], str], desc: str,
             strict: bool) -> tuple[list[dict[str, Any]], list[str]]:
    """Run `read` over `items`; failures are skipped as "name: reason" (StepError with `strict`)."""
    rows, skipped = [], []
    for item in progress(items, desc=desc, total=len(items)):
        try:
            rows.append(read(item))
        except _UnreadableClipError as exc:
            if strict:
                raise StepError(f"{exc} (unreadable; rerun without --strict to skip such clips)") from exc
            skipped.append(str(exc))
    return rows, skipped


def _avsbench_rows(root: Path, split: str | None, predictor: Predictor | None,
                   strict: bool) -> tuple[list[dict[str, Any]], list[str]]:
    clips = []
    for subset in present_subsets(root):
        try:
            clips += list_clips(root, subset, split)
        except MetadataError as exc:
            raise StepError(str(exc)) from exc

    def read(files: Any) -> dict[str, Any]:
        try:
            frames = np.stack([read_rgb(p) for p in files.frames])  # [T, H, W, 3]
            audio, sample_rate = sf.read(files.audio, dtype="float32", always_2d=True)  # [S, C]
        except (OSError, ValueError, sf.LibsndfileError) as exc:
            raise _UnreadableClipError(f"{files.key}: {exc}") from exc
        if audio.shape[0] == 0:
            raise _UnreadableClipError(f"{files.key}: {files.audio} has no samples")
        waveform = torch.from_numpy(np.ascontiguousarray(audio.T))
        row = _describe(torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous(), waveform, int(sample_rate),
                        None, audio.shape[0] / sample_rate, predictor)
        return {"clip": files.key, "source": str(files.frame_dir.relative_to(root)), "subset": files.subset,
                "split": files.split, **row}

    return _collect(clips, read, lambda f: f.key, "drift: clips", strict)


def _jsonl_records(path: Path) -> Iterator[tuple[int, str]]:
    with path.open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, start=1):
            if line.strip():
                yield number, line


def _jsonl_rows(path: Path, strict: bool) -> tuple[list[dict[str, Any]], list[str]]:
    rows, skipped, versions = [], [], set()
    try:
        lines = list(_jsonl_records(path))
    except (OSError, UnicodeDecodeError) as exc:
        raise StepError(f"{path}: cannot read the log ({exc})") from exc
    for number, line in lines:
        try:
            record = json.loads(line)
            version = int(record["descriptor_version"]) if isinstance(record, dict) else None
        except (ValueError, KeyError, TypeError) as exc:
            problem = f"{path}:{number}: not a descriptor record ({exc})"
        else:
            if version == DESCRIPTOR_VERSION:
                rows.append({k: (math.nan if v is None else v) for k, v in record.items()})
                continue
            if version is None:
                problem = f"{path}:{number}: not a JSON object"
            else:
                versions.add(version)
                problem = f"{path}:{number}: descriptor version {version}, this code computes {DESCRIPTOR_VERSION}"
        if strict:
            raise StepError(f"{problem} (rerun without --strict to skip such lines)")
        skipped.append(problem)
    if not rows and versions:
        raise StepError(f"{path}: every logged request has another descriptor version ({sorted(versions)}); "
                        f"this code computes version {DESCRIPTOR_VERSION}: log new traffic with the current code")
    return rows, skipped


def video_files(folder: Path) -> list[Path]:
    """Every file under `folder` (recursively) whose suffix is a video container's, sorted."""
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def read_source(path: Path, *, predictor: Predictor | None = None, split: str | None = None,
                strict: bool = False, model_info: dict[str, Any] | None = None,
                max_seconds: float | None = 60.0) -> DescriptorTable:
    """Descriptor rows of every clip at `path` (an AVSBench folder, a table folder, a JSONL log or a video folder).

    predictor: fills the prediction columns (not possible for logs and tables, which hold descriptors only).
    split: for AVSBench folders, read only this split (default: all). strict: an unreadable clip is fatal
    instead of skipped. model_info: provenance recorded with the rows when `predictor` is given.
    max_seconds: longer videos are skipped as too long (None: no limit; the endpoint's limit is 60 s).
    Raises StepError for a missing path, an empty folder, or when no clip at all could be read.
    """
    path = Path(path)
    if not path.exists():
        raise StepError(f"{path}: no such file or folder")
    if path.is_file():
        if path.suffix.lower() != ".jsonl":
            raise StepError(f"{path}: a file SRC must be a JSONL log of the endpoint (*.jsonl); pass a folder "
                            "for videos or AVSBench")
        if predictor is not None:
            raise StepError(f"{path}: --model cannot be applied to a log (it holds descriptors, not videos); "
                            "the predictions logged by the endpoint are used when present")
        rows, skipped = _jsonl_rows(path, strict)
        kind, info = "jsonl", None
    elif is_table(path):
        if predictor is not None:
            raise StepError(f"{path}: --model cannot be applied to a descriptor table (it holds no videos)")
        return read_table(path, "current")
    elif present_subsets(path):
        rows, skipped = _avsbench_rows(path, split, predictor, strict)
        kind, info = "avsbench", model_info if predictor is not None else None
    else:
        rows, skipped = _video_rows(path, predictor, strict, max_seconds)
        kind, info = "videos", model_info if predictor is not None else None
    if not rows:
        detail = f"; {len(skipped)} skipped, first: {skipped[0]}" if skipped else ""
        raise StepError(f"{path}: no readable clips{detail}")
    return DescriptorTable(make_frame(rows), kind, str(path), skipped, DESCRIPTOR_VERSION, info)


def _video_rows(folder: Path, predictor: Predictor | None, strict: bool,
                max_seconds: float | None) -> tuple[list[dict[str, Any]], list[str]]:
    from components.media import MediaError, decode_video

    files = video_files(folder)
    if not files:
        others = sum(1 for p in folder.rglob("*") if p.is_file())
        raise StepError(f"{folder}: empty - no video files ({', '.join(VIDEO_SUFFIXES)}) and no AVSBench metadata"
                        + (f" ({others} other file(s))" if others else ""))

    def read(path: Path) -> dict[str, Any]:
        name = str(path.relative_to(folder))
        try:
            media = decode_video(path, max_seconds=max_seconds, name=name)
        except MediaError as exc:
            raise _UnreadableClipError(f"{exc} [{exc.kind}]") from exc
        row = _describe(media.frames, media.waveform, media.sample_rate, media.fps, media.duration, predictor)
        return {"clip": name, "source": name, **row}

    return _collect(files, read, str, "drift: videos", strict)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_predictor(model: Path, device: str | None = None) -> tuple[Predictor, dict[str, Any]]:
    """A Predictor over the trained model at `model`, and its provenance (files and their sha256).

    model: the pipeline's models folder (stage1/best.pt and, if present, stage2/best.pt), an extracted
    serving folder (stage1.pt [+ stage2.pt]) or a single stage-1 best.pt. Inference is components.infer's
    Segmenter, the code path of the endpoint. StepError when no model is found or it cannot be loaded.
    """
    from components.drift.descriptors import prediction_arrays
    from components.infer import model_files, open_segmenter

    model = Path(model)
    stage1, stage2 = model_files(model)
    segmenter = open_segmenter(model, device=device)
    files = [p for p in (stage1, stage2) if p is not None]
    info = {"path": str(model), "files": [str(p) for p in files],
            "sha256": _sha256(stage1) if stage2 is None else "+".join(_sha256(p)[:32] for p in files),
            "classes": len(segmenter.class_names)}

    def predict(frames: torch.Tensor, waveform: torch.Tensor,
                sample_rate: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        return prediction_arrays(segmenter.predict(frames, waveform, sample_rate), segmenter.class_names)

    return predict, info
