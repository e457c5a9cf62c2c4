"""The AVS networks (NTAVS / AAVS with the Stepping Stones prior), their criterion, and the AVSBench metrics.

    from model import create_model
    net = create_model("tiny", num_classes=71, prior=True)
"""

from __future__ import annotations

from typing import Any

from model.config import PRESETS, ModelConfig, get_config


def create_model(preset: str | ModelConfig, **overrides: Any):
    """Build a network from a preset name ("ntavs-pvt", "ntavs-r50", "aavs", "tiny") or a ModelConfig,
    with field overrides. Returns an `AVSegmenter`."""
    from model.ntavs import AVSegmenter

    cfg = get_config(preset, **overrides) if isinstance(preset, str) else preset
    return AVSegmenter(cfg)


__all__ = ["PRESETS", "ModelConfig", "create_model", "get_config"]
