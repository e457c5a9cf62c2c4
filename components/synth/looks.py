"""How each AVSS class looks: a shape, a colour and a surface texture, fixed per class.

Class identity must not depend on the generation seed (a model trained on one seed must recognise the
classes of another), so everything here is a pure function of the class index.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SHAPES = ("disc", "square", "triangle", "diamond", "cross", "ring", "hexagon")
TEXTURES = ("solid", "stripes", "checker")
# Ten well-separated hues (RGB), bright enough to stand out on the muted backgrounds.
COLOURS = np.array([
    (230, 40, 40), (40, 170, 60), (40, 90, 230), (240, 200, 30), (200, 60, 200),
    (30, 200, 210), (250, 130, 20), (150, 90, 40), (245, 245, 245), (120, 240, 110),
], dtype=np.float32)


@dataclass(frozen=True)
class Look:
    """The appearance of one class: shape name, base RGB colour (float32 [3]) and texture name."""

    shape: str
    colour: np.ndarray
    texture: str


def look_of(class_index: int) -> Look:
    """The look of AVSS class `class_index` (1..70). Distinct classes get distinct (shape, colour) pairs."""
    if not 1 <= class_index <= len(SHAPES) * len(COLOURS):
        raise ValueError(f"class index {class_index} outside 1..70")
    k = class_index - 1
    return Look(SHAPES[k % len(SHAPES)], COLOURS[k // len(SHAPES)], TEXTURES[(k // len(SHAPES) + k) % 3])


def shape_mask(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Inside-test of a unit-size shape on normalised coordinates.

    u, v: float arrays [H, W], the pixel offsets from the object centre divided by its radius.
    Returns a bool array [H, W].
    """
    au, av = np.abs(u), np.abs(v)
    if shape == "disc":
        return u * u + v * v <= 1.0
    if shape == "square":
        return np.maximum(au, av) <= 0.82
    if shape == "triangle":  # apex up (image y grows downwards)
        return (v <= 0.75) & (v >= -0.95) & (au <= (v + 0.95) / 1.7 * 1.05)
    if shape == "diamond":
        return au + av <= 1.1
    if shape == "cross":
        return ((au <= 0.34) & (av <= 1.0)) | ((av <= 0.34) & (au <= 1.0))
    if shape == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    if shape == "hexagon":
        return np.maximum(au * 0.866 + av * 0.5, av) <= 0.9
    raise ValueError(f"unknown shape {shape!r}")


def texture_shade(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Per-pixel brightness factor of a texture (float32 [H, W], around 1)."""
    if texture == "solid":
        return np.ones_like(u, dtype=np.float32)
    if texture == "stripes":
        return np.where(np.floor((u + v) * 2.5) % 2 == 0, 1.0, 0.55).astype(np.float32)
    if texture == "checker":
        return np.where((np.floor(u * 2.2) + np.floor(v * 2.2)) % 2 == 0, 1.0, 0.6).astype(np.float32)
    raise ValueError(f"unknown texture {texture!r}")
