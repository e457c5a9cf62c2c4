"""Drawing predictions over frames: the one drawing used by `avs predict`, the endpoint client and the
evaluation gallery.

    from components.overlay import draw_overlay
    image = draw_overlay(frame, class_map, names)   # uint8 [H, W, 3], class map int [H, W], class names

Each class has its AVSS palette colour (the colours of the palette PNG masks the endpoint returns): its
pixels are tinted with it and outlined, and a legend in the top-left corner lists the classes on screen.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from components.avsbench.classes import avss_palette

TINT = 0.55          # weight of the class colour over a tinted pixel
# The binary palette's colour 1 (dark red) is hard to see on dark frames: a 2-class map is drawn in red.
BINARY_COLOUR = np.array([255, 60, 60], np.uint8)


def class_colours(num_classes: int) -> np.ndarray:
    """uint8 [num_classes, 3]: the colour of each class index (0, background, is never drawn)."""
    if num_classes == 2:
        return np.stack([np.zeros(3, np.uint8), BINARY_COLOUR])
    colours = avss_palette(max(num_classes, 2)).copy()
    dark = colours.max(1) < 96                       # lift the darkest palette colours so they show
    colours[dark] = np.clip(colours[dark].astype(int) + 96, 0, 255).astype(np.uint8)
    return colours


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size)
    except TypeError:                                # Pillow < 10.1 has one bitmap size only
        return ImageFont.load_default()


def _edges(class_map: np.ndarray) -> np.ndarray:
    """bool [H, W]: pixels whose right or lower neighbour has another class (an object's outline)."""
    edge = np.zeros(class_map.shape, bool)
    edge[:, :-1] |= class_map[:, :-1] != class_map[:, 1:]
    edge[:-1, :] |= class_map[:-1, :] != class_map[1:, :]
    edge[:, 1:] |= edge[:, :-1].copy()
    edge[1:, :] |= edge[:-1, :].copy()
    return edge & (class_map > 0)


def draw_overlay(frame: np.ndarray, class_map: np.ndarray, names: Sequence[str], legend: bool = True,
                 caption: str | None = None) -> np.ndarray:
    """One frame with its predicted (or true) classes drawn on.

    frame: uint8 [H, W, 3]; class_map: int [H, W] class index per pixel (0 = background), at the frame's
    size; names: class names by index (their count picks the colours: 2 gives the binary red). legend:
    list the classes on screen in the top-left corner; caption: a line of text at the bottom (e.g. the
    time). Returns a new uint8 [H, W, 3].
    """
    if frame.shape[:2] != class_map.shape:
        raise ValueError(f"class map {class_map.shape} does not match frame {frame.shape[:2]}")
    colours = class_colours(len(names))
    ids = np.clip(class_map.astype(np.int64), 0, len(colours) - 1)
    tint = colours[ids].astype(np.float32)
    out = frame.astype(np.float32)
    on = (ids > 0)[..., None]
    out = np.where(on, (1 - TINT) * out + TINT * tint, out)
    out = np.where(_edges(ids)[..., None], tint, out).astype(np.uint8)
    present = [int(c) for c in np.unique(ids) if c > 0]
    if not (legend and present) and caption is None:
        return out
    image = Image.fromarray(out)
    draw = ImageDraw.Draw(image)
    size = max(10, round(min(frame.shape[:2]) / 22))
    font = _font(size)
    pad = max(2, size // 4)
    if legend:
        y = pad
        for cid in present:
            label = names[cid] if cid < len(names) else f"class-{cid}"
            width = draw.textlength(label, font=font)
            draw.rectangle([pad, y, pad + 2 * pad + size + width + pad, y + size + 2 * pad], fill=(0, 0, 0))
            draw.rectangle([2 * pad, y + pad, 2 * pad + size, y + pad + size], fill=tuple(int(v) for v in colours[cid]))
            draw.text((3 * pad + size, y + pad), label, fill=(255, 255, 255), font=font)
            y += size + 3 * pad
    if caption is not None:
        y = frame.shape[0] - size - 3 * pad
        width = draw.textlength(caption, font=font)
        draw.rectangle([pad, y, 3 * pad + width, y + size + 2 * pad], fill=(0, 0, 0))
        draw.text((2 * pad, y + pad), caption, fill=(255, 255, 255), font=font)
    return np.asarray(image).copy()


def overlay_frame(frame: np.ndarray, class_map: np.ndarray, names: Sequence[str], seconds: float) -> np.ndarray:
    """A video frame of an overlay video: `draw_overlay` with the frame's time as caption, cropped to even
    sides (H.264). frame uint8 [H, W, 3]; class_map int [H, W]. Returns uint8 [H', W', 3]."""
    drawn = draw_overlay(frame, class_map, names, caption=f"{seconds:.1f} s")
    h, w = drawn.shape[:2]
    return drawn[: h - h % 2, : w - w % 2]


@contextmanager
def overlay_video(target: Path, fps: float, size: tuple[int, int], names: Sequence[str], waveform,
                  sample_rate: int, audio_from: Path) -> Iterator[Callable[[np.ndarray, np.ndarray, float], None]]:
    """Write an overlay video: yields draw(frame uint8 [H, W, 3], class_map int [H, W], seconds), which adds
    `overlay_frame` of it. Frames of `size` (H, W) are shown at `fps` with the audio of `audio_from` (copied,
    else `waveform` [samples] at `sample_rate` encoded). Written to a temporary file renamed to `target` at
    the end, so a failure leaves nothing half-written."""
    from components.media import VideoWriter

    height, width = size
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}.mp4")
    try:
        with VideoWriter(tmp, fps, (height - height % 2, width - width % 2), waveform, sample_rate,
                         audio_from=audio_from) as writer:
            yield lambda frame, class_map, seconds: writer.add(overlay_frame(frame, class_map, names, seconds))
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
