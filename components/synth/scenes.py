"""One synthetic clip: moving objects of known classes, a subset of which sound.

A scene has T one-second steps. Each step has a frame (the moment the benchmark samples) and one
second of audio. Sounding objects contribute their class's sound to the audio; silent distractors are
visible only, so which object sounds can be told from the audio alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from components.synth.looks import look_of, shape_mask, texture_shade
from components.synth.sounds import SAMPLE_RATE, background_noise, class_sound


@dataclass(frozen=True)
class Scene:
    """A rendered clip.

    frames:    uint8 [T, H, W, 3]
    instances: int16 [T, H, W], index into `classes` of the object visible at each pixel, -1 for none
    classes:   int [num_objects], AVSS class index of each object
    sounding:  bool [T, num_objects], whether each object sounds during each second
    audio:     float32 [T * SAMPLE_RATE], mono, in [-1, 1]
    """

    frames: np.ndarray
    instances: np.ndarray
    classes: np.ndarray
    sounding: np.ndarray
    audio: np.ndarray

    def sounding_mask(self) -> np.ndarray:
        """bool [T, H, W]: pixels of objects that sound in that second (the S4/MS3 ground truth)."""
        lookup = np.concatenate([self.sounding, np.zeros((len(self.sounding), 1), bool)], axis=1)
        t = np.arange(len(self.instances))[:, None, None]
        return lookup[t, self.instances]  # index -1 hits the appended all-False column

    def semantic_labels(self, sounding_only: bool = True) -> np.ndarray:
        """int64 [T, H, W]: class index of each sounding (or, if not `sounding_only`, visible) object, 0 elsewhere."""
        cls = np.concatenate([self.classes, [0]]).astype(np.int64)[self.instances]
        keep = self.sounding_mask() if sounding_only else self.instances >= 0
        return np.where(keep, cls, 0)


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A muted two-colour gradient with mild blotches, float32 [H, W, 3]."""
    c0, c1 = rng.uniform(50, 140, size=(2, 3))
    angle = rng.uniform(0, np.pi)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)
    img = c0 + (c1 - c0) * ramp[..., None]
    blot = np.zeros((h, w), np.float32)
    for _ in range(4):
        cy, cx, s = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0.1, 0.3) * max(h, w)
        blot += rng.uniform(-15, 15) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s * s))
    return (img + blot[..., None]).astype(np.float32)


def _trajectories(rng: np.random.Generator, radii: np.ndarray, steps: int, h: int, w: int) -> np.ndarray:
    """Positions float [num_objects, T, 2] (x, y) moving linearly and bouncing off the borders."""
    n = len(radii)
    pos = np.zeros((n, steps, 2))
    for i, r in enumerate(radii):
        # spread the starting points so objects rarely start on top of each other
        for _ in range(50):
            p = rng.uniform([r, r], [w - r, h - r])
            if all(np.hypot(*(p - pos[j, 0])) > 0.8 * (r + radii[j]) for j in range(i)):
                break
        angle = rng.uniform(0, 2 * np.pi)
        vel = rng.uniform(0.02, 0.07) * min(h, w) * np.array([np.cos(angle), np.sin(angle)])
        for t in range(steps):
            pos[i, t] = p
            p = p + vel
            for d, size in ((0, w), (1, h)):
                if p[d] < r or p[d] > size - r:
                    vel[d] = -vel[d]
                    p[d] = np.clip(p[d], r, size - r)
    return pos


def _schedule(rng: np.random.Generator, num_sources: int, num_objects: int, steps: int,
              changing: bool) -> np.ndarray:
    """bool [T, num_objects]: objects 0..num_sources-1 are the sound sources, the rest stay silent."""
    sounding = np.zeros((steps, num_objects), bool)
    if not changing:
        sounding[:, :num_sources] = True
        return sounding
    for t in range(steps):
        if rng.random() < 0.1:
            continue  # a second where nothing sounds
        on = rng.random(num_sources) < 0.6
        if not on.any():
            on[rng.integers(num_sources)] = True
        sounding[t, :num_sources] = on
    return sounding


def paint_objects(rng: np.random.Generator, background: np.ndarray, instances: np.ndarray, classes: np.ndarray,
                  radii: np.ndarray, centres: np.ndarray, order: np.ndarray, tint: np.ndarray) -> np.ndarray:
    """One frame: the objects painted over `background` (float32 [H, W, 3], left unchanged), plus sensor noise.

    classes int [N] (AVSS indices 1..70), radii float [N] (pixels), centres float [N, 2] (x, y), order: the
    drawing order (later objects occlude earlier ones), tint float [N] (brightness factors). `instances`
    (int [H, W], filled in place) receives each painted pixel's object index. Returns uint8 [H, W, 3].
    """
    height, width = background.shape[:2]
    img = background.copy()
    for i in order:
        look = look_of(int(classes[i]))
        r = radii[i]
        x0, x1 = max(0, int(centres[i, 0] - r) - 1), min(width, int(centres[i, 0] + r) + 2)
        y0, y1 = max(0, int(centres[i, 1] - r) - 1), min(height, int(centres[i, 1] + r) + 2)
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        u, v = (xx + 0.5 - centres[i, 0]) / r, (yy + 0.5 - centres[i, 1]) / r
        inside = shape_mask(look.shape, u, v)
        shade = texture_shade(look.texture, u, v)[..., None]
        patch = img[y0:y1, x0:x1]
        patch[inside] = np.clip(look.colour * tint[i] * shade, 0, 255)[inside]
        instances[y0:y1, x0:x1][inside] = i
    img += rng.normal(0, 3.0, size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


def render_scene(rng: np.random.Generator, source_classes: list[int], distractor_classes: list[int],
                 steps: int, height: int, width: int, noise_level: float, changing: bool = False,
                 radius: tuple[float, float] = (0.11, 0.2)) -> Scene:
    """Render a clip with the given sounding and silent classes (AVSS indices 1..70).

    steps: number of one-second steps (frames). changing: the set of sounding objects changes from
    second to second (AVSS v2) instead of staying fixed. noise_level: RMS of the background noise
    relative to a source at full loudness. radius: range of object radii as fractions of the short side.
    """
    classes = np.array(list(source_classes) + list(distractor_classes), dtype=np.int64)
    n = len(classes)
    side = min(height, width)
    radii = rng.uniform(*radius, size=n) * side
    pos = _trajectories(rng, radii, steps, height, width)
    order = rng.permutation(n)  # drawing order: later objects occlude earlier ones
    tint = rng.uniform(0.85, 1.1, size=n)
    bg = background(rng, height, width)

    frames = np.empty((steps, height, width, 3), np.uint8)
    instances = np.full((steps, height, width), -1, np.int16)
    for t in range(steps):
        frames[t] = paint_objects(rng, bg, instances[t], classes, radii, pos[:, t], order, tint)

    sounding = _schedule(rng, len(source_classes), n, steps, changing)
    audio = _mix_audio(rng, classes[: len(source_classes)], sounding[:, : len(source_classes)], noise_level)
    return Scene(frames, instances, classes, sounding, audio)


def _mix_audio(rng: np.random.Generator, source_classes: np.ndarray, on: np.ndarray,
               noise_level: float) -> np.ndarray:
    """Mix the sources, gated per second by `on` (bool [T, num_sources]), over background noise."""
    steps = len(on)
    n = steps * SAMPLE_RATE
    gains = np.ones(len(source_classes)) if len(source_classes) == 1 else rng.uniform(0.35, 1.0, len(source_classes))
    ramp = np.hanning(2 * 320 + 1)[: 320 + 1]
    mix = noise_level * background_noise(n, rng)
    for k, cls in enumerate(source_classes):
        gate = np.repeat(on[:, k].astype(np.float64), SAMPLE_RATE)
        gate = np.convolve(gate, ramp / ramp.sum(), mode="same")  # 20 ms fades, no clicks
        mix += gains[k] * gate * class_sound(int(cls), n, rng)
    mix *= rng.uniform(0.05, 0.15) / (np.sqrt(np.mean(mix * mix)) + 1e-12)
    return np.clip(mix, -0.99, 0.99).astype(np.float32)
