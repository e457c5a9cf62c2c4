"""How each AVSS class sounds: a sound family and a pitch, fixed per class.

Five families (steady harmonic tone, pulsed tone, band noise, vibrato tone, percussive hits) times
fourteen pitches spread log-uniformly over 180-3200 Hz give 70 distinct, learnable signatures.
Like the looks, a class's sound does not depend on the generation seed; only phases and the noise
realisation do.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
FAMILIES = ("tone", "pulsed", "noise", "vibrato", "hits")
PITCHES_HZ = np.geomspace(180.0, 3200.0, 14)


def signature(class_index: int) -> tuple[str, float, float]:
    """(family, fundamental Hz, rhythm Hz) of AVSS class `class_index` (1..70)."""
    if not 1 <= class_index <= len(FAMILIES) * len(PITCHES_HZ):
        raise ValueError(f"class index {class_index} outside 1..70")
    k = class_index - 1
    rhythm = 2.0 + (k % 4)  # 2..5 Hz for the rhythmic families
    return FAMILIES[k % len(FAMILIES)], float(PITCHES_HZ[k // len(FAMILIES)]), rhythm


def _band_noise(rng: np.random.Generator, n: int, lo: float, hi: float, sr: int) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    spec[(freqs < lo) | (freqs > hi)] = 0.0
    out = np.fft.irfft(spec, n)
    return out / (np.std(out) + 1e-12)


def _harmonics(f0: float, t: np.ndarray, rng: np.random.Generator, count: int, sr: int) -> np.ndarray:
    out = np.zeros_like(t)
    for h in range(1, count + 1):
        if h * f0 >= 0.47 * sr:
            break
        out += np.sin(2 * np.pi * h * f0 * t + rng.uniform(0, 2 * np.pi)) / h**1.2
    return out


def class_sound(class_index: int, num_samples: int, rng: np.random.Generator,
                sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """A clip-long recording of one object of class `class_index`.

    Returns float64 [num_samples] with unit RMS; `rng` only sets phases and noise.
    """
    family, f0, rhythm = signature(class_index)
    t = np.arange(num_samples) / sample_rate
    phase = rng.uniform(0, 1.0 / rhythm)
    if family == "tone":
        x = _harmonics(f0, t, rng, 4, sample_rate)
    elif family == "pulsed":
        gate = ((t + phase) * rhythm) % 1.0 < 0.5
        ramp = np.convolve(gate.astype(float), np.hanning(161) / np.hanning(161).sum(), mode="same")
        x = _harmonics(f0, t, rng, 3, sample_rate) * ramp
    elif family == "noise":
        x = _band_noise(rng, num_samples, f0 / 1.35, f0 * 1.35, sample_rate)
    elif family == "vibrato":
        depth = 0.06 * f0
        inst = 2 * np.pi * f0 * t + depth / rhythm * np.sin(2 * np.pi * rhythm * t + rng.uniform(0, 6.28))
        x = np.sin(inst) + 0.4 * np.sin(2 * inst)
    else:  # hits: decaying noise bursts at the rhythm, centred on the pitch
        carrier = _band_noise(rng, num_samples, f0 / 1.5, f0 * 1.5, sample_rate)
        since_hit = ((t + phase) * rhythm) % 1.0 / rhythm
        x = carrier * np.exp(-since_hit / 0.04)
    return x / (np.sqrt(np.mean(x * x)) + 1e-12)


def background_noise(num_samples: int, rng: np.random.Generator) -> np.ndarray:
    """Pink-ish background noise (1/f power), unit RMS, float64 [num_samples]."""
    spec = np.fft.rfft(rng.standard_normal(num_samples))
    freqs = np.fft.rfftfreq(num_samples)
    spec[1:] /= np.sqrt(freqs[1:] * num_samples)
    spec[0] = 0.0
    out = np.fft.irfft(spec, num_samples)
    return out / (np.std(out) + 1e-12)
