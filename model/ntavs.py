"""The NTAVS / AAVS network: backbone (+ maskige branch) -> GTAVM -> pixel decoder -> audio-queried
masked-attention decoder, with the optional Stepping Stones stage-2 prior. Any input size divisible by
32, any number of frames."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.audio import AudioEncoder, ClassTokens
from model.backbone import Backbone
from model.config import ORACLE_CLASSES, ModelConfig
from model.fusion import MaskigeFusion, PriorInputs
from model.gtavm import GTAVM
from model.pixel_decoder import PixelDecoder
from model.transformer_decoder import TransformerDecoder


class AVSegmenter(nn.Module):
    """forward(frames, audio, maskige=None, prior=None) -> list of predictions (initial first).

    frames  float [B, T, 3, H, W] (normalised images; H, W divisible by 32)
    audio   float [B, T, scales, 96, 64] (log-mel examples, one per frame); with cfg.audio_input
            "classes" (the label oracle) float [B, T, 71], the multi-hot of the sounding classes
    maskige float [B, T, 3, H, W], needed when cfg.maskige
    prior   float [B, T, H, W] foreground probability in [0, 1], needed when cfg.prior (stage 2)
    Each prediction: "pred_logits" [B*T, Q, C + 1], "pred_masks" [B*T, Q, H/4, W/4]; in training with
    cfg.look_weight the last one also holds "look_logits" [B*T, 71, H/4, W/4] (see `criterion.look_loss`).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        cfg.check()
        self.cfg = cfg
        d = cfg.d_model
        self.backbone = Backbone(cfg.backbone, d, cfg.backbone_weights)
        if cfg.maskige:
            self.maskige_backbone = Backbone(cfg.backbone, d, cfg.backbone_weights)
            self.maskige_fusion = MaskigeFusion(d)
        if cfg.audio_input == "classes":
            self.audio = ClassTokens(ORACLE_CLASSES, cfg.audio_tokens, d)
        else:
            self.audio = AudioEncoder(cfg.audio_dim, cfg.audio_depth, cfg.audio_heads, cfg.audio_patch, d,
                                      cfg.audio_frozen, cfg.audio_weights)
        if cfg.gtavm != "off":
            self.gtavm = GTAVM(d, cfg.gtavm_heads, cfg.gtavm_mix)
        self.pixel_decoder = PixelDecoder(d, cfg.encoder_layers, cfg.encoder_heads, cfg.encoder_points,
                                          cfg.encoder_ffn)
        self.audio_queries = nn.Linear(d, d)
        if cfg.queries == "ntavs" and cfg.gtavm == "off":
            self.audio_queries_second = nn.Linear(d, d)
        self.decoder = TransformerDecoder(d, cfg.decoder_layers, cfg.decoder_heads, cfg.decoder_ffn,
                                          cfg.num_queries, cfg.num_classes, cfg.mask_threshold)
        if cfg.prior:
            self.prior_inputs = PriorInputs(d)
        if cfg.look_weight > 0:  # training only: names each pixel's AVSS class from the mask features
            self.look_head = nn.Conv2d(d, ORACLE_CLASSES, 1)

    def _query_content(self, tokens: torch.Tensor, mixed: torch.Tensor | None) -> torch.Tensor:
        """What the audio adds to the learned query features: [B*T, Q, d]."""
        cfg = self.cfg
        if cfg.queries == "ntavs":
            second = mixed if mixed is not None else self.audio_queries_second(tokens)
            return torch.cat([self.audio_queries(tokens), second], 1)          # 2 x 72 queries
        source = mixed if mixed is not None else tokens                         # the GTAVM output when present
        audio = self.audio_queries(source.mean(1))                             # [B*T, d]
        if cfg.queries == "trivial":
            return audio[:, None, :].expand(-1, cfg.num_queries, -1)
        learned = self.decoder.query_feat.weight                                # AAVS: cos(q, a) * a
        cos = F.cosine_similarity(learned[None], audio[:, None, :], dim=-1)     # [B*T, Q]
        return cos[..., None] * audio[:, None, :]

    def forward(self, frames, audio, maskige=None, prior=None):
        cfg = self.cfg
        t, (h, w) = frames.shape[1], frames.shape[-2:]
        if h % 32 or w % 32:
            raise ValueError(f"frame size {h}x{w} must be divisible by 32")
        feats = self.backbone(frames.flatten(0, 1))
        if cfg.maskige:
            if maskige is None:
                raise ValueError("this model uses maskiges (cfg.maskige): pass maskige [B, T, 3, H, W]")
            feats = self.maskige_fusion(feats, self.maskige_backbone(maskige.flatten(0, 1)))
        tokens = self.audio(audio.flatten(0, 1))                                # [B*T, 72, d]
        mixed = None
        if cfg.gtavm == "before":
            feats, mixed = self.gtavm(feats, tokens, t)
        mask_features, levels = self.pixel_decoder(feats)
        if cfg.gtavm == "after":
            maps, mixed = self.gtavm([mask_features, *levels[::-1]], tokens, t)
            mask_features, levels = maps[0], maps[1:][::-1]
        level_pos = first_blocked = None
        if cfg.prior:
            if prior is None:
                raise ValueError("this is a stage-2 model (cfg.prior): pass prior [B, T, H, W]")
            flat = prior.flatten(0, 1).to(mask_features.dtype)
            sizes = [tuple(x.shape[-2:]) for x in levels]
            mask_features = self.prior_inputs.mask_features(mask_features, flat)
            level_pos = self.prior_inputs.level_positions(flat, sizes)
            first_blocked = self.prior_inputs.first_blocked(flat, sizes)
        predictions = self.decoder(levels, mask_features, self._query_content(tokens, mixed), level_pos, first_blocked)
        if self.training and cfg.look_weight > 0:
            predictions[-1]["look_logits"] = self.look_head(mask_features)               # [B*T, 71, H/4, W/4]
        return predictions


def semantic_map(prediction: dict[str, torch.Tensor], size: tuple[int, int] | None = None,
                 normalize: bool = True, resize_scores: bool = False) -> torch.Tensor:
    """Per-class scores [B*T, C, H, W] = einsum(softmax(class)[..., :-1], sigmoid(mask)), optionally resized.

    The Mask2Former sum over queries is unbounded; with `normalize` each pixel's scores are divided by
    their sum, giving class probabilities. For 2-class models channel 1 is then the sounding-object
    probability the S4/MS3 metrics threshold at 0.5; AVSS takes the argmax. The mask logits are resized
    to `size` before the sum (what evaluation reads); `resize_scores` resizes the C summed scores instead
    of the Q masks, a close and much cheaper form for the training loss (C = 2 or 71 against Q = 144).
    """
    masks = prediction["pred_masks"]
    if size is not None and not resize_scores:
        masks = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
    probs = prediction["pred_logits"].softmax(-1)[..., :-1]
    scores = torch.einsum("bqc,bqhw->bchw", probs, masks.sigmoid())
    if size is not None and resize_scores:
        scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    return scores / scores.sum(1, keepdim=True).clamp(min=1e-6) if normalize else scores
