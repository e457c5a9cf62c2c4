"""Painting class-agnostic masks into a maskige, exactly by the NTAVS rule (docs/design.md, Maskiges).

Masks are ordered by area, smallest first; mask i of that order gets label i + 1 and smaller masks
win where masks overlap; 0 means no mask. The label map is resized with nearest-neighbour and saved
as a palette PNG whose colours are the ADE20K palette (label k -> ADE20K colour k - 1, 0 -> black).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MAX_LABEL = 255
MASKIGE_SIZE = 224

# The 150 colours of the ADE20K semantic-segmentation palette, in class order.
ADE20K_PALETTE: tuple[tuple[int, int, int], ...] = (
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80),
    (140, 140, 140), (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61),
    (120, 120, 70), (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3),
    (0, 102, 200), (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230),
    (220, 220, 220), (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71),
    (255, 41, 10), (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8),
    (0, 255, 20), (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255),
    (140, 140, 140), (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0),
    (0, 0, 255), (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0),
    (0, 255, 245), (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0),
    (194, 255, 0), (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255),
    (173, 255, 0), (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0),
    (255, 0, 20), (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194),
    (0, 255, 82), (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163),
    (255, 153, 0), (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0),
    (8, 184, 170), (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255),
    (255, 0, 112), (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255),
    (71, 255, 0), (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235),
    (245, 0, 255), (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255),
    (255, 255, 0), (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255),
    (0, 245, 255), (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255),
    (255, 214, 0), (25, 194, 194), (102, 255, 0), (92, 0, 255),
)


def label_map(masks: np.ndarray) -> np.ndarray:
    """Paint masks into one label map.

    masks: bool [K, H, W]. Returns uint8 [H, W]: the pixel's label is 1 + the area rank (ascending,
    ties kept in input order) of the smallest mask covering it, 0 where no mask does. Masks ranked
    beyond 255 (the largest ones) are dropped: a uint8 label cannot name them.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be [K, H, W], got shape {masks.shape}")
    order = np.argsort(masks.sum((1, 2)), kind="stable")[:MAX_LABEL]
    out = np.zeros(masks.shape[1:], np.uint8)
    for rank in range(len(order) - 1, -1, -1):  # largest first, so smaller masks paint over them
        out[masks[order[rank]]] = rank + 1
    return out


def maskige_palette() -> list[int]:
    """Flat PIL palette (768 ints): index 0 black, index k >= 1 ADE20K colour (k - 1) mod 150."""
    colours = [(0, 0, 0)] + [ADE20K_PALETTE[(k - 1) % len(ADE20K_PALETTE)] for k in range(1, 256)]
    return [c for rgb in colours for c in rgb]


def paint_maskige(masks: np.ndarray, size: int | tuple[int, int] = MASKIGE_SIZE) -> Image.Image:
    """The maskige of one frame as a palette ("P") image.

    masks: bool [K, H, W]; size: output side, or (width, height). Nearest-neighbour resize keeps labels.
    """
    labels = Image.fromarray(label_map(masks), mode="L")
    wh = (size, size) if isinstance(size, int) else size
    img = labels.resize(wh, Image.Resampling.NEAREST) if labels.size != wh else labels
    out = Image.frombytes("P", img.size, img.tobytes())
    out.putpalette(maskige_palette())
    return out


def save_maskige(path: Path, maskige: Image.Image) -> None:
    """Write a maskige PNG, creating folders."""
    path.parent.mkdir(parents=True, exist_ok=True)
    maskige.save(path, optimize=False, compress_level=1)
