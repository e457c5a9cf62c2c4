"""The endpoint's drift log: one JSON line of descriptors per request, which `avs drift` reads as SRC.

The serving handler calls `log_request` after decoding a request (and, when it has one, after
inference). Each record is written with one `write` on a file opened for appending, under an exclusive
`flock`, so records from several worker processes never interleave and a crash loses at most the line
being written (a torn last line is skipped, and counted, when the log is read).
"""

from __future__ import annotations

import fcntl
import json
import math
import os
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

from components.drift.descriptors import DESCRIPTOR_VERSION, describe, prediction_arrays


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Append `record` as one JSON line to `path` (created with its folder if missing).

    NaN values are written as null. One `os.write` of the whole line on an O_APPEND descriptor under
    an exclusive flock: concurrent writers (threads or processes) never interleave their lines.
    """
    clean = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in record.items()}
    data = (json.dumps(clean, separators=(",", ":"), allow_nan=False) + "\n").encode("utf-8")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    finally:
        os.close(fd)  # closing releases the lock


def log_request(log: Path, frames: torch.Tensor | np.ndarray, waveform: torch.Tensor | np.ndarray,
                sample_rate: int, *, result: Any = None, class_names: Sequence[str] | None = None,
                fps: float | None = None, duration: float | None = None, request_id: str | None = None,
                source: str = "live") -> dict[str, Any]:
    """Describe one request's clip and append it to the JSONL drift log `log`.

    frames: uint8 [T, 3, H, W] (one per second); waveform: float [samples] or [channels, samples] at
    `sample_rate`; result: the request's components.infer.ClipResult (None: no prediction columns) with
    class_names = Segmenter.class_names; fps / duration of the uploaded video when known (duration
    defaults to the audio's length, as for AVSBench clips); request_id:
    the request's id (a fresh UUID if None). Returns the record written: descriptor_version, time, clip,
    source and every descriptor column (null where unknown).
    """
    foreground = class_map = None
    if result is not None:
        foreground, class_map = prediction_arrays(result, class_names)
    record: dict[str, Any] = {
        "descriptor_version": DESCRIPTOR_VERSION,
        "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "clip": request_id or uuid.uuid4().hex,
        "source": source,
    }
    if duration is None:
        duration = torch.as_tensor(waveform).shape[-1] / sample_rate
    record.update(describe(frames, waveform, sample_rate, fps=fps, duration=duration, foreground=foreground,
                           class_map=class_map))
    append_jsonl(log, record)
    return record
