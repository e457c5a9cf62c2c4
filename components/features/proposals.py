"""Class-agnostic mask proposals per frame, behind one small interface.

A proposer maps an RGB frame (uint8 [H, W, 3]) to bool masks [K, H, W]. The default is "regions"; the "sam"
backend runs a Segment-Anything-family automatic mask generator from a local checkpoint.
"regions" needs no weights: it splits the frame into regions of smooth colour (see RegionProposer).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np
from scipy import ndimage

from components.common import StepError


class MaskProposer(Protocol):
    """Anything that proposes class-agnostic masks for a frame."""

    name: str

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """frame: uint8 [H, W, 3] -> bool [K, H, W] (K may be 0)."""
        ...


class RegionProposer:
    """Offline default: regions of smooth colour bounded by colour edges.

    Pixels are described by chromaticity, saturation and brightness; chromaticity is unchanged by
    shading, so a striped or chequered surface stays one region while a change of hue is an edge.
    Pixels whose (smoothed) feature gradient stays below `edge` form connected regions; regions smaller
    than `min_area` (fraction of the frame) are dropped and the edge pixels join their nearest region.
    """

    name = "regions"

    def __init__(self, edge: float = 0.5, smoothing: float = 1.0, min_area: float = 0.004):
        self.edge = edge
        self.smoothing = smoothing
        self.min_area = min_area

    @staticmethod
    def features(frame: np.ndarray) -> np.ndarray:
        """float32 [H, W, 4]: scaled chromaticity (r, g), saturation, brightness of an RGB frame."""
        rgb = frame.astype(np.float32) + 1.0
        total = rgb.sum(-1, keepdims=True)
        chroma = rgb[..., :2] / total
        saturation = (rgb.max(-1) - rgb.min(-1)) / rgb.max(-1)
        brightness = total[..., 0] / (3 * 256.0)
        return np.concatenate([chroma * 4.0, saturation[..., None], brightness[..., None] * 0.5], -1)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        f = ndimage.gaussian_filter(self.features(frame), sigma=(self.smoothing, self.smoothing, 0))
        grad = np.sqrt(sum(ndimage.sobel(f[..., c], axis=a) ** 2 for c in range(f.shape[-1]) for a in (0, 1)))
        regions, n = ndimage.label(grad < self.edge)
        sizes = ndimage.sum_labels(np.ones_like(regions), regions, index=np.arange(1, n + 1))
        keep = np.flatnonzero(sizes >= self.min_area * regions.size) + 1
        if len(keep) == 0:
            return np.zeros((0, *frame.shape[:2]), bool)
        relabel = np.zeros(n + 1, np.int32)
        relabel[keep] = np.arange(1, len(keep) + 1)
        regions = relabel[regions]
        nearest = ndimage.distance_transform_edt(regions == 0, return_distances=False, return_indices=True)
        regions = regions[nearest[0], nearest[1]]
        return regions[None] == np.arange(1, len(keep) + 1)[:, None, None]


class SamProposer:
    """Segment-Anything automatic masks from a local checkpoint (package `segment_anything`)."""

    name = "sam"

    def __init__(self, checkpoint: Path, model_type: str = "vit_b", device: str = "cpu"):
        checkpoint = Path(checkpoint)
        try:
            from segment_anything import SamAutomaticMaskGenerator, sam_model_registry
        except ImportError as exc:
            raise StepError("the 'sam' mask source needs the segment_anything package "
                            "(pip install segment-anything)") from exc
        if not checkpoint.is_file():
            raise StepError(f"SAM checkpoint {checkpoint} not found (pass a local file; nothing is downloaded)")
        if model_type not in sam_model_registry:
            raise StepError(f"unknown SAM model type {model_type!r}; choose from {', '.join(sam_model_registry)}")
        model = sam_model_registry[model_type](checkpoint=str(checkpoint)).to(device)
        self._generator = SamAutomaticMaskGenerator(model)

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        found = self._generator.generate(frame)
        if not found:
            return np.zeros((0, *frame.shape[:2]), bool)
        return np.stack([m["segmentation"].astype(bool) for m in found])


def make_proposer(source: str, checkpoint: Path | None = None, model_type: str = "vit_b") -> MaskProposer:
    """The proposer named `source`: "regions" (default, offline) or "sam" (needs `checkpoint`)."""
    if source == "regions":
        return RegionProposer()
    if source == "sam":
        if checkpoint is None:
            raise StepError("the 'sam' mask source needs --sam-checkpoint PATH")
        return SamProposer(checkpoint, model_type)
    raise StepError(f"unknown mask source {source!r}; choose 'regions' or 'sam'")
