"""Per-clip descriptors: the one function that turns a clip (and optionally a model's prediction) into numbers.

Every path that feeds a drift report (the training reference, a folder of videos, an AVSBench folder, the
live log of the endpoint) calls `describe`, so the columns mean the same thing everywhere. Changing what
any column measures must bump DESCRIPTOR_VERSION: references and logs record the version they were
built with, and `avs drift` refuses to compare across versions.

Columns (all float; NaN where the source does not know the value, e.g. the frame rate of AVSBench frames):

- audio (mono, resampled to 16 kHz, codec padding of <= 128 ms digital silence dropped at either end;
  32 ms Hann frames every 10 ms):
  `audio_loudness_db` clip RMS in dBFS; `audio_silence_ratio` share of frames whose RMS is below
  SILENCE_DB; `audio_centroid_hz` / `audio_bandwidth_hz` spectral centroid and spread, averaged over the
  non-silent frames; `audio_mel_db_0..7` mean power (dBFS) of eight groups of eight HTK mel bands
  (the features step's filterbank, 0-8 kHz; group edges in MEL_GROUP_EDGES_HZ).
- video (frames one per second, uint8 RGB; colour statistics on a copy whose short side is ANALYSIS_SIDE
  pixels, so they do not depend on the resolution): `video_brightness` mean luma (0-1),
  `video_contrast` RMS contrast (std of luma per frame), `video_saturation` mean HSV saturation,
  `video_sharpness` variance of the Laplacian of luma, `video_width` / `video_height` in pixels,
  `video_fps` frames per second of the source video, `video_duration_s`.
- predictions (only with a model): `pred_sounding_area` share of pixels with foreground probability
  > 0.5, `pred_sounding_objects` number of distinct classes in the class map, `pred_confidence` mean of
  max(p, 1 - p) over pixels, `pred_share_<class>` share of the predicted foreground pixels of each of
  the 70 AVSS classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import numpy as np
import torch
from PIL import Image

from components.avsbench.classes import AVSS_CLASSES
from components.features.logmel import SAMPLE_RATE, mel_matrix, to_mono_16k

DESCRIPTOR_VERSION = 1

FRAME = 512  # 32 ms at 16 kHz
HOP = 160  # 10 ms
SILENCE_DB = -50.0  # a frame quieter than this (RMS, dBFS) is silent
MEL_GROUPS = 8  # the 64 mel bands of the features step, in groups of 8
ANALYSIS_SIDE = 128  # short side of the frames the colour statistics are measured on
_FLOOR = 1e-10  # power floor before taking logs (-100 dB)
CODEC_PADDING = 2048  # samples (128 ms): leading/trailing digital silence up to this long is codec padding
DIGITAL_SILENCE = 1e-5  # |sample| at or below this (-100 dBFS) counts as digital silence

AUDIO_COLUMNS: tuple[str, ...] = (
    "audio_loudness_db", "audio_silence_ratio", "audio_centroid_hz", "audio_bandwidth_hz",
    *(f"audio_mel_db_{g}" for g in range(MEL_GROUPS)),
)
VIDEO_COLUMNS: tuple[str, ...] = (
    "video_brightness", "video_contrast", "video_saturation", "video_sharpness",
    "video_width", "video_height", "video_fps", "video_duration_s",
)
SHARE_COLUMNS: tuple[str, ...] = tuple(f"pred_share_{name}" for name in AVSS_CLASSES[1:])
PREDICTION_COLUMNS: tuple[str, ...] = ("pred_sounding_area", "pred_sounding_objects", "pred_confidence",
                                       *SHARE_COLUMNS)
DESCRIPTOR_COLUMNS: tuple[str, ...] = AUDIO_COLUMNS + VIDEO_COLUMNS + PREDICTION_COLUMNS


def _db(power: np.ndarray | float) -> np.ndarray:
    return 10.0 * np.log10(np.maximum(power, _FLOOR))


@lru_cache(maxsize=1)
def _audio_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    window = np.hanning(FRAME + 1)[:-1]  # periodic Hann
    freqs = np.fft.rfftfreq(FRAME, 1.0 / SAMPLE_RATE)
    mel = mel_matrix(FRAME, 0.0, SAMPLE_RATE / 2).numpy()  # [257, 64], the features step's filterbank
    # one-sided power -> mean square of the windowed frame (Parseval), so band powers read as dBFS
    scale = 2.0 / (FRAME * float(np.sum(window**2)))
    return window, freqs, mel, scale


def _mel_group_edges() -> tuple[float, ...]:
    """Lower edge of each mel group and the upper edge of the last, in Hz."""
    top = 1127.0 * math.log1p(SAMPLE_RATE / 2 / 700.0)
    edges_mel = np.linspace(0.0, top, 64 + 2)
    hz = 700.0 * (np.exp(edges_mel / 1127.0) - 1.0)
    return (*(round(float(hz[g * 8]), 1) for g in range(MEL_GROUPS)), SAMPLE_RATE / 2)


MEL_GROUP_EDGES_HZ: tuple[float, ...] = _mel_group_edges()


def _strip_codec_padding(x: np.ndarray) -> np.ndarray:
    """`x` without leading/trailing digital silence of at most CODEC_PADDING samples (a decoder's padding).

    AAC and other codecs pad the last (and sometimes first) frame with zeros: ~50 ms of exact silence that
    is in no WAV of the reference and would otherwise read as a silence-ratio shift of every video.
    """
    loud = np.flatnonzero(np.abs(x) > DIGITAL_SILENCE)
    if loud.size == 0:
        return x
    start = int(loud[0]) if loud[0] <= CODEC_PADDING else 0
    stop = int(loud[-1]) + 1 if len(x) - 1 - loud[-1] <= CODEC_PADDING else len(x)
    return x[start:stop]


def audio_descriptors(waveform: torch.Tensor | np.ndarray, sample_rate: int) -> dict[str, float]:
    """Audio columns (AUDIO_COLUMNS) of one clip.

    waveform: float [samples] or [channels, samples] in [-1, 1] at `sample_rate` (mixed to mono and
    resampled to 16 kHz). Leading/trailing digital silence up to CODEC_PADDING samples is dropped first
    (decoders pad the last audio frame). An empty waveform counts as silence. Returns column -> float.
    """
    x = _strip_codec_padding(to_mono_16k(torch.as_tensor(waveform), int(sample_rate)).numpy())
    if len(x) < FRAME:
        x = np.pad(x, (0, FRAME - len(x)))
    window, freqs, mel, scale = _audio_tables()
    frames = np.lib.stride_tricks.sliding_window_view(x, FRAME)[::HOP]  # [n, 512]
    frame_db = _db(np.mean(frames**2, axis=1))
    silent = frame_db < SILENCE_DB
    power = np.abs(np.fft.rfft(frames * window, axis=1)) ** 2 * scale  # [n, 257]
    active = power[~silent] if (~silent).any() else power
    weight = active.sum(1) + _FLOOR
    centroid = active @ freqs / weight
    spread = np.sqrt(np.sum(active * (freqs[None] - centroid[:, None]) ** 2, axis=1) / weight)
    bands = (power @ mel).reshape(len(power), MEL_GROUPS, -1).sum(2).mean(0)  # [8] mean power per group
    out = {
        "audio_loudness_db": float(_db(np.mean(x * x))),
        "audio_silence_ratio": float(silent.mean()),
        "audio_centroid_hz": float(centroid.mean()),
        "audio_bandwidth_hz": float(spread.mean()),
    }
    out.update({f"audio_mel_db_{g}": float(v) for g, v in enumerate(_db(bands))})
    return out


def _frame_stats(frame: np.ndarray) -> tuple[float, float, float, float]:
    """(brightness, contrast, saturation, sharpness) of one uint8 [3, H, W] frame, measured at ANALYSIS_SIDE."""
    height, width = frame.shape[1:]
    factor = ANALYSIS_SIDE / min(height, width)
    size = (max(3, round(width * factor)), max(3, round(height * factor)))
    img = Image.fromarray(np.ascontiguousarray(frame.transpose(1, 2, 0))).resize(size, Image.Resampling.BILINEAR)
    rgb = np.asarray(img, dtype=np.float32) / 255.0  # [h, w, 3]; PIL's bilinear filter antialiases when shrinking
    luma = rgb @ np.array([0.299, 0.587, 0.114], np.float32)
    top, bottom = rgb.max(2), rgb.min(2)
    saturation = np.where(top > 0, (top - bottom) / np.maximum(top, 1e-6), 0.0)
    lap = luma[:-2, 1:-1] + luma[2:, 1:-1] + luma[1:-1, :-2] + luma[1:-1, 2:] - 4.0 * luma[1:-1, 1:-1]
    return float(luma.mean()), float(luma.std()), float(saturation.mean()), float(lap.var())


def video_descriptors(frames: torch.Tensor | np.ndarray, fps: float | None = None,
                      duration: float | None = None) -> dict[str, float]:
    """Video columns (VIDEO_COLUMNS) of one clip.

    frames: uint8 [T, 3, H, W] RGB, typically one frame per second (T >= 1). fps: the source video's
    frame rate, duration: its length in seconds (None -> NaN, e.g. AVSBench stores only sampled frames).
    Returns column -> float.
    """
    x = frames.numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[0] == 0:
        raise ValueError(f"frames must be uint8 [T, 3, H, W] with T >= 1, got shape {tuple(x.shape)}")
    if x.dtype != np.uint8:
        raise ValueError(f"frames must be uint8, got {x.dtype}")
    height, width = int(x.shape[2]), int(x.shape[3])
    stats = [_frame_stats(frame) for frame in x]  # one frame at a time: a minute of 1080p stays small
    brightness, contrast, saturation_mean, sharpness = np.mean(np.array(stats), axis=0)
    return {
        "video_brightness": float(brightness),
        "video_contrast": float(contrast),
        "video_saturation": float(saturation_mean),
        "video_sharpness": float(sharpness),
        "video_width": float(width),
        "video_height": float(height),
        "video_fps": math.nan if fps is None else float(fps),
        "video_duration_s": math.nan if duration is None else float(duration),
    }


def prediction_descriptors(foreground: torch.Tensor | np.ndarray,
                           class_map: torch.Tensor | np.ndarray | None = None) -> dict[str, float]:
    """Prediction columns (PREDICTION_COLUMNS) of one clip from a model's output.

    foreground: float [T, H, W], per-pixel probability that the pixel belongs to a sounding object.
    class_map: int [T, H, W] of AVSS class indices (0 = background, 1..70), or None for a class-agnostic
    model (then the class columns are NaN). Returns column -> float.
    """
    p = torch.as_tensor(foreground, dtype=torch.float32)
    out = {
        "pred_sounding_area": float((p > 0.5).float().mean()),
        "pred_confidence": float(torch.maximum(p, 1.0 - p).mean()),
    }
    if class_map is None:
        out["pred_sounding_objects"] = math.nan
        out.update(dict.fromkeys(SHARE_COLUMNS, math.nan))
        return out
    cm = torch.as_tensor(class_map).long().flatten()
    counts = torch.bincount(cm.clamp(0, len(AVSS_CLASSES) - 1), minlength=len(AVSS_CLASSES))[1:].double()
    total = float(counts.sum())
    out["pred_sounding_objects"] = float((counts > 0).sum())
    out.update({col: float(c) / total if total else 0.0 for col, c in zip(SHARE_COLUMNS, counts, strict=True)})
    return out


def prediction_arrays(result: Any, class_names: Sequence[str] | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(foreground, class_map or None) for `describe` from an inference result (components.infer.ClipResult).

    result: anything with `.foreground` float [T, H, W] and `.class_map` int [T, H, W]. class_names: the
    model's class names (Segmenter.class_names); the class map is used only when they are the 71 AVSS
    classes, since a class-agnostic or differently labelled model has no AVSS class shares.
    """
    names = tuple(class_names) if class_names is not None else AVSS_CLASSES
    return result.foreground, (result.class_map if names == AVSS_CLASSES else None)


def describe(frames: torch.Tensor | np.ndarray, waveform: torch.Tensor | np.ndarray, sample_rate: int, *,
             fps: float | None = None, duration: float | None = None,
             foreground: torch.Tensor | np.ndarray | None = None,
             class_map: torch.Tensor | np.ndarray | None = None) -> dict[str, float]:
    """Every descriptor of one clip: the one function behind references, reports and the live log.

    frames: uint8 [T, 3, H, W] (one per second); waveform: float [samples] or [channels, samples] at
    `sample_rate`; fps / duration of the source video when known (None -> NaN). With a model's
    `foreground` float [T', H', W'] (and optionally `class_map` int [T', H', W']) the prediction columns
    are filled, otherwise they are NaN. Returns column -> float for every name in DESCRIPTOR_COLUMNS.
    """
    row = dict.fromkeys(DESCRIPTOR_COLUMNS, math.nan)
    row.update(audio_descriptors(waveform, sample_rate))
    row.update(video_descriptors(frames, fps, duration))
    if foreground is not None:
        row.update(prediction_descriptors(foreground, class_map))
    return row


def descriptor_row(values: Mapping[str, float]) -> dict[str, float]:
    """`values` restricted to DESCRIPTOR_COLUMNS, in column order, missing ones as NaN."""
    return {col: float(values.get(col, math.nan)) for col in DESCRIPTOR_COLUMNS}
