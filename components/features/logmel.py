"""The NTAVS hierarchical log-mel input (DESIGN §5), on torch, batched over clips.

For a window of F samples: mono 16 kHz audio, frames of F samples every 160 samples (no centring,
incomplete frames dropped), periodic Hann, FFT length F, magnitude spectrum, 64 HTK mel bands over
0-8000 Hz with the DC bin zeroed, ln(mel + 0.01), cut into non-overlapping 96-frame examples (0.96 s).
The VGGish-style single scale is the same recipe with a 400-sample window, FFT 512 and 125-7500 Hz.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

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
    """float32 [samples] at 16 kHz from [samples] or [channels, samples] at `sample_rate` (channels averaged)."""
    x = torch.as_tensor(waveform)
    if x.ndim == 2:
        x = x.mean(0)
    elif x.ndim != 1:
        raise ValueError(f"waveform must be [samples] or [channels, samples], got shape {tuple(x.shape)}")
    x = x.to(torch.float32)
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


def log_mel_batch(waveforms: torch.Tensor, window: int | str, seconds: int | None = None,
                  pad: str = "repeat") -> torch.Tensor:
    """Log-mel examples of a batch of mono 16 kHz clips of equal length.

    waveforms: float [B, samples]. Returns float32 [B, n, 1, 96, 64], n = whole 0.96 s examples
    (or `seconds`, padded per `pad`).
    """
    sc = scale_of(window)
    x = waveforms.to(torch.float32)
    if x.shape[-1] < sc.window:
        frames_mag = x.new_zeros(x.shape[0], 0, sc.n_fft // 2 + 1)
    else:
        # torch centres a short window inside the FFT frame; shift the signal so each window starts at
        # a multiple of the hop, as the recipe frames it, and pad the end so no whole frame is lost
        left = (sc.n_fft - sc.window) // 2
        x = torch.nn.functional.pad(x, (left, sc.n_fft - sc.window - left))
        spec = torch.stft(x, n_fft=sc.n_fft, hop_length=HOP, win_length=sc.window,
                          window=torch.hann_window(sc.window, periodic=True),
                          center=False, return_complex=True)  # [B, bins, frames]
        frames_mag = spec.abs().transpose(1, 2)  # [B, frames, bins]
    weights = mel_matrix(sc.n_fft, sc.f_min, sc.f_max).to(torch.float32)
    mel = torch.log(frames_mag @ weights + LOG_OFFSET)  # [B, frames, 64]
    n = mel.shape[1] // EXAMPLE_FRAMES
    examples = mel[:, : n * EXAMPLE_FRAMES].reshape(x.shape[0], n, EXAMPLE_FRAMES, NUM_MELS)
    return _pad_examples(examples, seconds, pad).unsqueeze(2)


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


def padding_for(subset: str, label: str = "") -> tuple[int, str]:
    """(seconds, pad mode) of a subset: S4/MS3 pad to 5 by repetition, AVSS to 10 with zeros."""
    return (10, "zeros") if subset == "avss" else (5, "repeat")


def seconds_in(num_samples: int, window: int | str) -> int:
    """How many whole 0.96 s examples a 16 kHz clip of `num_samples` yields at this window."""
    frames = 0 if num_samples < scale_of(window).window else (num_samples - scale_of(window).window) // HOP + 1
    return math.floor(frames / EXAMPLE_FRAMES)
