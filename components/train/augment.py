"""Training-time augmentation of a clip: one random zoom-in crop and one horizontal flip for all its frames.

The demo data has a few hundred training clips, which the network starts to memorise within ~2,000
steps; moving and mirroring the scene keeps what it learns tied to the look of the objects and to the
audio instead of to where things happen to be. The audio is left alone: a mirrored scene sounds the same.
Every image-shaped field of the sample (frames, maskige, labels, regions, looks, prior) gets the same transform, so the
labels stay aligned with the pixels.
"""

from __future__ import annotations

from dataclasses import replace

import torch
import torch.nn.functional as F

from components.train.data import Sample


def _crop_resize(x: torch.Tensor, top: int, left: int, side: int, size: int, mode: str) -> torch.Tensor:
    """x [T, C, S, S] -> the square [top:top+side, left:left+side] resized back to [T, C, size, size]."""
    crop = x[..., top:top + side, left:left + side]
    if side == size:
        return crop
    return F.interpolate(crop, size=(size, size), mode=mode, **({"align_corners": False} if mode == "bilinear" else {}))


def augment(sample: Sample, generator: torch.Generator, flip: bool = True, max_zoom: float = 1.0) -> Sample:
    """A randomly zoomed (factor uniform in [1, max_zoom], crop placed uniformly) and, if `flip`, with
    probability 1/2 mirrored copy of `sample` (frames/maskige [T, 3, S, S], labels/prior [T, S, S]).

    Labels and maskiges are resampled with nearest neighbours (no invented classes), frames and the
    prior bilinearly. Draws come from `generator` only, so a seeded generator gives the same result.
    """
    if max_zoom < 1.0:
        raise ValueError(f"max_zoom={max_zoom} must be >= 1 (1: no zoom)")
    size = sample.frames.shape[-1]
    zoom = 1.0 + (max_zoom - 1.0) * torch.rand((), generator=generator).item()
    side = max(1, min(size, round(size / zoom)))
    top, left = (int(torch.randint(0, size - side + 1, (), generator=generator)) for _ in range(2))
    mirror = flip and bool(torch.rand((), generator=generator) < 0.5)

    def transform(x: torch.Tensor, mode: str) -> torch.Tensor:
        out = _crop_resize(x, top, left, side, size, mode)
        return out.flip(-1) if mirror else out

    labels = transform(sample.labels[:, None].float(), "nearest")[:, 0].to(sample.labels.dtype)
    regions = transform(sample.regions[:, None].float(), "nearest")[:, 0].to(sample.regions.dtype)
    looks = transform(sample.looks[:, None].float(), "nearest")[:, 0].to(sample.looks.dtype)
    prior = None if sample.prior is None else transform(sample.prior[:, None], "bilinear")[:, 0]
    return replace(sample, frames=transform(sample.frames, "bilinear"), maskige=transform(sample.maskige, "nearest"),
                   labels=labels, prior=prior, regions=regions, looks=looks)
