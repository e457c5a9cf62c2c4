"""An independent numpy implementation of the NTAVS log-mel recipe, one clip at a time.

Written from the formula (docs/design.md, Audio features), sharing no code with `components.features`:
the exactness test holds the torch implementation against it, and the features benchmark uses it as the baseline.
"""

from __future__ import annotations

import numpy as np


def numpy_tables(window: int, fft_length: int, lo_hz: float, hi_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """(periodic Hann window [window], mel filterbank [fft_length // 2 + 1, 64]) of one scale."""
    hann = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(window) / window)  # periodic Hann

    def mel(hz):
        return 1127.0 * np.log(1.0 + hz / 700.0)

    bins = mel(np.linspace(0.0, 8000.0, fft_length // 2 + 1))
    edges = np.linspace(mel(lo_hz), mel(hi_hz), 64 + 2)
    weights = np.zeros((len(bins), 64))
    for i in range(64):
        lower, centre, upper = edges[i : i + 3]
        rising, falling = (bins - lower) / (centre - lower), (upper - bins) / (upper - centre)
        weights[:, i] = np.maximum(0.0, np.minimum(rising, falling))
    weights[0, :] = 0.0  # DC bin
    return hann, weights


def numpy_log_mel(x: np.ndarray, window: int, fft_length: int, lo_hz: float, hi_hz: float,
                  tables: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """Log-mel examples of mono 16 kHz float audio `x`: float64 [n, 96, 64] (whole 0.96 s examples only).
    tables: this scale's `numpy_tables`, when the caller keeps them (the benchmark does)."""
    hop = 160
    num_frames = 1 + (len(x) - window) // hop if len(x) >= window else 0
    frames = np.lib.stride_tricks.as_strided(x, shape=(num_frames, window), strides=(x.strides[0] * hop, x.strides[0]))
    hann, weights = tables if tables is not None else numpy_tables(window, fft_length, lo_hz, hi_hz)
    magnitude = np.abs(np.fft.rfft(frames * hann, n=fft_length))  # [frames, fft_length // 2 + 1]
    log_mel = np.log(magnitude @ weights + 0.01)
    n = log_mel.shape[0] // 96
    return log_mel[: n * 96].reshape(n, 96, 64)
