"""The NTAVS hierarchical log-mel input (docs/design.md, Audio features), on torch, batched over clips.

For a window of F samples: mono 16 kHz audio, frames of F samples every 160 samples (no centring,
incomplete frames dropped), periodic Hann, FFT length F, magnitude spectrum, 64 HTK mel bands over
0-8000 Hz with the DC bin zeroed, ln(mel + 0.01), cut into non-overlapping 96-frame examples (0.96 s).
The VGGish-style single scale is the same recipe with a 400-sample window, FFT 512 and 125-7500 Hz.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

SAMPLE_RATE = 16000
HOP = 160
NUM_MELS = 64
EXAMPLE_FRAMES = 96
LOG_OFFSET = 0.01
NTAVS_WINDOWS: tuple[int, ...] = (256, 512, 1024)
VGGISH = "vggish"


@dataclass(frozen=True)
class Scale:
    """One spectrogram scale: window length, FFT length and mel band range in Hz."""

    window: int
    n_fft: int
    f_min: float
    f_max: float


def scale_of(window: int | str) -> Scale:
    """The scale for an NTAVS window (256/512/1024 or any other length) or "vggish"."""
    if window == VGGISH:
        return Scale(400, 512, 125.0, 7500.0)
    if not isinstance(window, int) or window < 16:
        raise ValueError(f"window must be an int >= 16 or {VGGISH!r}, got {window!r}")
    return Scale(window, window, 0.0, SAMPLE_RATE / 2)


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    return 1127.0 * torch.log1p(hz / 700.0)


@lru_cache(maxsize=16)
def mel_matrix(n_fft: int, f_min: float, f_max: float, num_mels: int = NUM_MELS) -> torch.Tensor:
    """HTK mel weights float64 [n_fft // 2 + 1, num_mels]: triangles linear on the mel scale, DC row zero."""
    bins_mel = _hz_to_mel(torch.linspace(0.0, SAMPLE_RATE / 2, n_fft // 2 + 1, dtype=torch.float64))
    edges = torch.linspace(float(_hz_to_mel(torch.tensor(f_min))), float(_hz_to_mel(torch.tensor(f_max))),
                           num_mels + 2, dtype=torch.float64)
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising = (bins_mel[:, None] - lower) / (centre - lower)
    falling = (upper - bins_mel[:, None]) / (upper - centre)
    weights = torch.clamp(torch.minimum(rising, falling), min=0.0)
    weights[0, :] = 0.0
    return weights


def to_mono_16k(waveform: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """float64 [samples] at 16 kHz from [samples] or [channels, samples] at `sample_rate` (channels averaged)."""
    x = torch.as_tensor(waveform)
    if x.ndim == 2:
        x = x.mean(0)
    elif x.ndim != 1:
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {tuple(x.shape)}")
    x = x.to(torch.float64)
    if sample_rate != SAMPLE_RATE:
        import torchaudio.functional as AF

        x = AF.resample(x, sample_rate, SAMPLE_RATE)
    return x


def _pad_examples(examples: torch.Tensor, seconds: int | None, pad: str) -> torch.Tensor:
    """Trim or pad [..., n, 96, 64] to `seconds` examples: "repeat" the last one or add "zeros"."""
    if seconds is None:
        return examples
    n = examples.shape[-3]
    if n >= seconds:
        return examples[..., :seconds, :, :]
    if pad == "repeat" and n > 0:
        filler = examples[..., -1:, :, :].expand(*examples.shape[:-3], seconds - n, *examples.shape[-2:])
    elif pad in ("repeat", "zeros"):
        filler = examples.new_zeros(*examples.shape[:-3], seconds - n, *examples.shape[-2:])
    else:
        raise ValueError(f"pad must be 'repeat' or 'zeros', got {pad!r}")
    return torch.cat([examples, filler], dim=-3)


# Frames per FFT call, scaled to the window so one block (~1 MB of float64) stays in cache.
_BLOCK_SAMPLES = 131072


@lru_cache(maxsize=16)
def _tables(window: int | str) -> tuple[Scale, torch.Tensor, torch.Tensor]:
    sc = scale_of(window)
    hann = torch.hann_window(sc.window, periodic=True, dtype=torch.float64)
    return sc, hann, mel_matrix(sc.n_fft, sc.f_min, sc.f_max).to(torch.float32)


def _mel_frames(x: torch.Tensor, window: int | str, frames: int) -> torch.Tensor:
    """ln(mel + 0.01) of the first `frames` frames of one mono 16 kHz clip (float64 [samples]).

    Returns float32 [frames, 64]. The FFT runs in float64 (float32 rounding of a loud tone leaks into
    silent bands enough to move their log by ~1e-3); once the magnitudes exist, each band is a sum of
    positive terms, so float32 keeps it to ~1e-7 relative.
    """
    sc, hann, weights = _tables(window)
    out = torch.empty(frames, NUM_MELS)
    if frames == 0:
        return out
    framed = x.unfold(0, sc.window, HOP)  # view [all frames, window]
    block = max(16, _BLOCK_SAMPLES // sc.n_fft)
    for start in range(0, frames, block):
        stop = min(start + block, frames)
        spectrum = torch.fft.rfft(framed[start:stop] * hann, n=sc.n_fft)  # [block, bins] complex128
        magnitude = torch.from_numpy(np.abs(spectrum.numpy())).to(torch.float32)  # numpy's abs is ~4x faster
        torch.matmul(magnitude, weights, out=out[start:stop])
    return out.add_(LOG_OFFSET).log_()


def _clip_examples(x: torch.Tensor, window: int | str, seconds: int | None, pad: str) -> torch.Tensor:
    n = seconds_in(len(x), window)
    if seconds is not None:
        n = min(n, seconds)
    mel = _mel_frames(x, window, n * EXAMPLE_FRAMES).reshape(n, EXAMPLE_FRAMES, NUM_MELS)
    return _pad_examples(mel, seconds, pad).unsqueeze(1)


def log_mel_scales(waveforms: torch.Tensor, windows: tuple[int | str, ...] = NTAVS_WINDOWS,
                   seconds: int | None = None, pad: str = "repeat") -> dict[int | str, torch.Tensor]:
    """Log-mel examples of a batch of mono 16 kHz clips at several scales, clips spread over threads.

    waveforms: float [B, samples] (float64 keeps full precision). Returns window -> float32
    [B, n, 1, 96, 64], n = whole 0.96 s examples (or `seconds`, padded per `pad`). Runs one clip and
    scale per task on `torch.get_num_threads()` threads, each op single-threaded meanwhile (small FFTs
    run faster side by side than split across cores).
    """
    x = torch.as_tensor(waveforms).to(torch.float64)
    if x.ndim != 2:
        raise ValueError(f"waveforms must be [batch, samples], got shape {tuple(x.shape)}")
    tasks = [(b, w) for b in range(len(x)) for w in windows]
    threads = torch.get_num_threads()
    if threads > 1 and len(tasks) > 1:
        torch.set_num_threads(1)
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                results = list(pool.map(lambda t: _clip_examples(x[t[0]], t[1], seconds, pad), tasks))
        finally:
            torch.set_num_threads(threads)
    else:
        results = [_clip_examples(x[b], w, seconds, pad) for b, w in tasks]
    per_window = {w: results[i::len(windows)] for i, w in enumerate(windows)}
    return {w: torch.stack(r) if r else torch.empty(0, 0, 1, EXAMPLE_FRAMES, NUM_MELS) for w, r in per_window.items()}


def log_mel_at(waveform: torch.Tensor, positions: list[float],
               windows: tuple[int | str, ...] = NTAVS_WINDOWS) -> dict[int | str, torch.Tensor]:
    """Log-mel examples of one mono 16 kHz clip at any positions on the example grid (denser than one a second).

    waveform: float [samples]; positions: p per wanted example, in examples (0.96 s each). Example p is
    the 96 frames from frame round(96 p), so a whole p gives exactly example p of `log_mel_scales`; past
    the last whole example it is held at that example (the "repeat" padding), and a clip holding no whole
    example gives zeros. Only the frames the positions need are computed. Returns window -> float32
    [len(positions), 1, 96, 64].
    """
    x = torch.as_tensor(waveform).to(torch.float64)
    out: dict[int | str, torch.Tensor] = {}
    for window in windows:
        whole = seconds_in(len(x), window)
        examples = torch.zeros(len(positions), 1, EXAMPLE_FRAMES, NUM_MELS)
        if whole and positions:
            starts = [min(round(EXAMPLE_FRAMES * p), EXAMPLE_FRAMES * (whole - 1)) for p in positions]
            first, last = min(starts), max(starts) + EXAMPLE_FRAMES
            span = x[HOP * first: HOP * (last - 1) + scale_of(window).window]
            mel = _mel_frames(span, window, last - first)
            for i, start in enumerate(starts):
                examples[i, 0] = mel[start - first: start - first + EXAMPLE_FRAMES]
        out[window] = examples
    return out


def log_mel_batch(waveforms: torch.Tensor, window: int | str, seconds: int | None = None,
                  pad: str = "repeat") -> torch.Tensor:
    """Log-mel examples of a batch of mono 16 kHz clips at one scale: float32 [B, n, 1, 96, 64]."""
    return log_mel_scales(waveforms, (window,), seconds, pad)[window]


def log_mel(waveform: torch.Tensor, sample_rate: int, window: int | str, seconds: int | None = None,
            pad: str = "repeat") -> torch.Tensor:
    """Log-mel examples of one clip.

    waveform: [samples] or [channels, samples] at any `sample_rate` (mixed to mono, resampled to
    16 kHz). window: 256, 512, 1024 (NTAVS scales) or "vggish". seconds/pad: S4/MS3 use 5 and
    "repeat" (repeat the last example), AVSS uses 10 and "zeros".
    Returns float32 [seconds, 1, 96, 64] (time frames x mel bands).
    """
    x = to_mono_16k(waveform, sample_rate)
    return log_mel_batch(x[None], window, seconds, pad)[0]


def padding_for(subset: str) -> tuple[int, str]:
    """(seconds, pad mode) of a subset: S4/MS3 pad to 5 by repetition, AVSS to 10 with zeros."""
    return (10, "zeros") if subset == "avss" else (5, "repeat")


def seconds_in(num_samples: int, window: int | str) -> int:
    """How many whole 0.96 s examples a 16 kHz clip of `num_samples` yields at this window."""
    frames = 0 if num_samples < scale_of(window).window else (num_samples - scale_of(window).window) // HOP + 1
    return math.floor(frames / EXAMPLE_FRAMES)
