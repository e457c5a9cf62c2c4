"""One config system for every network variant, and the named presets.

`ModelConfig` holds every architectural choice; presets are ModelConfigs with names. Paper presets follow
docs/design.md; `tiny` keeps every part but shrinks widths and depths so it trains on 2 CPU cores.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

ORACLE_CLASSES = 71   # width of the label oracle's audio input: the AVSS classes, background included


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of an NTAVS / AAVS network.

    backbone: timm model name with 4 feature levels at strides 4/8/16/32; backbone_weights: optional local
    state-dict file (never downloaded). num_classes: semantic classes incl. background (2 for S4/MS3, 71
    for AVSS). gtavm: "before" (on backbone features, PVT variant), "after" (on pixel-decoder outputs,
    R50 variant) or "off". queries: "ntavs" (2 x 72 audio queries), "aavs" (learned queries, cosine-weighted
    audio added), "trivial" (learned queries plus the averaged audio). maskige: the Siamese maskige branch.
    prior: the Stepping Stones stage-2 prior inputs. audio_input: "logmel" (the audio transformer) or
    "classes" (the label oracle of the diagnostics: a multi-hot of the sounding AVSS classes per frame,
    `ORACLE_CLASSES` wide, replaces the audio). semantic_weight: weight of an extra loss on the
    per-pixel class probabilities that evaluation reads (`semantic_map`); 0 (the papers' recipe) is off.
    match_copies: queries matched to each target (1: one-to-one, the papers' Hungarian matching; k > 1:
    each target matched to k queries).
    region_targets: one target per maskige region (see `criterion.region_targets`) instead of one per class;
    region_classes: "all" (every region a target) or "silent" (only regions of class 0; the sounding
    classes stay one target per class). look_weight: weight of an auxiliary loss that names, from the mask
    features alone, the AVSS class of each sounding pixel whose class the data gives (S4 category, AVSS
    label; `look_loss`); 0 (the papers' recipe) is off and builds no look head.
    """

    backbone: str = "pvt_v2_b5"
    backbone_weights: str | None = None
    d_model: int = 256
    num_classes: int = 2
    # audio transformer (CED-Mini shape)
    audio_dim: int = 256
    audio_depth: int = 12
    audio_heads: int = 4
    audio_patch: int = 16
    audio_scales: int = 3
    audio_frozen: bool = True
    audio_weights: str | None = None
    audio_input: str = "logmel"
    # GTAVM
    gtavm: str = "before"
    gtavm_heads: int = 8
    gtavm_mix: float = 0.1
    # pixel decoder
    encoder_layers: int = 6
    encoder_heads: int = 8
    encoder_points: int = 4
    encoder_ffn: int = 1024
    # transformer decoder
    decoder_layers: int = 9
    decoder_heads: int = 8
    decoder_ffn: int = 2048
    queries: str = "ntavs"
    num_learned_queries: int = 100
    mask_threshold: float = 0.2
    # inputs
    maskige: bool = True
    prior: bool = False
    # criterion
    train_points: int = 12544
    oversample: float = 3.0
    importance: float = 0.75
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1
    semantic_weight: float = 0.0
    match_copies: int = 1
    region_targets: bool = False
    region_classes: str = "all"
    look_weight: float = 0.0

    @property
    def audio_tokens(self) -> int:
        """Audio tokens per frame: scales x (64 mel / patch) x (96 frames / patch) = 3 x 4 x 6 = 72."""
        return self.audio_scales * (64 // self.audio_patch) * (96 // self.audio_patch)

    @property
    def num_queries(self) -> int:
        return 2 * self.audio_tokens if self.queries == "ntavs" else self.num_learned_queries

    def check(self) -> None:
        """Raise ValueError naming the first inconsistent field."""
        choices = {"gtavm": ("before", "after", "off"), "queries": ("ntavs", "aavs", "trivial"),
                   "audio_input": ("logmel", "classes"), "region_classes": ("all", "silent")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {allowed}")
        if 64 % self.audio_patch or 96 % self.audio_patch:
            raise ValueError(f"audio_patch={self.audio_patch} must divide 64 and 96")
        for width, heads in (("d_model", "gtavm_heads"), ("d_model", "encoder_heads"), ("d_model", "decoder_heads"),
                             ("audio_dim", "audio_heads")):
            if getattr(self, width) % getattr(self, heads):
                raise ValueError(f"{width}={getattr(self, width)} is not divisible by {heads}={getattr(self, heads)}")
        if self.d_model % 32:
            raise ValueError(f"d_model={self.d_model} must be a multiple of 32 (GroupNorm(32))")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PRESETS: dict[str, ModelConfig] = {}
PRESETS["ntavs-pvt"] = ModelConfig(backbone="pvt_v2_b5", gtavm="before")
PRESETS["ntavs-r50"] = ModelConfig(backbone="resnet50", gtavm="after")
PRESETS["aavs"] = ModelConfig(backbone="pvt_v2_b5", gtavm="off", queries="aavs", maskige=False, mask_threshold=0.5)
PRESETS["tiny"] = ModelConfig(
    backbone="pvt_v2_b0", d_model=64, audio_dim=64, audio_depth=2, audio_heads=2, gtavm_heads=2,
    encoder_layers=1, encoder_heads=2, encoder_points=2, encoder_ffn=128, decoder_layers=3, decoder_heads=2,
    decoder_ffn=128, num_learned_queries=16, train_points=1024,
    audio_frozen=False,  # no CED weights of this size: trainable unless pretrained first (train.audio_pretrain_steps)
)


def get_config(preset: str, **overrides: Any) -> ModelConfig:
    """The named preset with `overrides` applied, checked. Raises KeyError for an unknown preset."""
    if preset not in PRESETS:
        raise KeyError(f"unknown model preset {preset!r}; choose from {', '.join(PRESETS)}")
    cfg = replace(PRESETS[preset], **overrides)
    cfg.check()
    return cfg
