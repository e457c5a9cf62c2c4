"""Masked-attention transformer decoder (Mask2Former) with audio-derived queries (docs/design.md, The network).

Layers go round-robin over the three pixel-decoder levels (low to high resolution): masked
cross-attention -> self-attention -> FFN, post-norm. Cross-attention of a query is blocked where its
previous mask prediction has sigmoid < `mask_threshold` (NTAVS 0.2, Mask2Former 0.5), except where
that would block everything. A prediction is made from the initial queries and after every layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.positional import sine_position


class _Layer(nn.Module):
    def __init__(self, d: int, heads: int, ffn: int):
        super().__init__()
        self.cross = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_cross = nn.LayerNorm(d)
        self.self_attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.norm_self = nn.LayerNorm(d)
        self.ffn = nn.Sequential(nn.Linear(d, ffn), nn.ReLU(inplace=True), nn.Linear(ffn, d))
        self.norm_ffn = nn.LayerNorm(d)

    def forward(self, q, query_pos, memory, memory_pos, blocked):
        attended, _ = self.cross(q + query_pos, memory + memory_pos, memory, attn_mask=blocked)
        q = self.norm_cross(q + attended)
        attended, _ = self.self_attn(q + query_pos, q + query_pos, q)
        q = self.norm_self(q + attended)
        return self.norm_ffn(q + self.ffn(q))


class TransformerDecoder(nn.Module):
    """levels: 3 maps [B, d, h, w] (low to high resolution); mask_features [B, d, H/4, W/4];
    query_content [B, Q, d] (added to the learned query features); level_pos: optional extra positional
    maps per level [B, d, h, w] (the stage-2 prior); first_blocked: optional per-level bool masks
    [B, h*w] replacing the first attention mask (True = blocked).

    Returns a list of predictions, initial first: dicts with "pred_logits" [B, Q, C + 1] and
    "pred_masks" [B, Q, H/4, W/4].
    """

    def __init__(self, d: int, layers: int, heads: int, ffn: int, num_queries: int, num_classes: int,
                 mask_threshold: float):
        super().__init__()
        self.heads = heads
        self.mask_threshold = mask_threshold
        self.query_feat = nn.Embedding(num_queries, d)
        self.query_pos = nn.Embedding(num_queries, d)
        self.level_embed = nn.Embedding(3, d)
        self.layers = nn.ModuleList(_Layer(d, heads, ffn) for _ in range(layers))
        self.norm = nn.LayerNorm(d)
        self.class_embed = nn.Linear(d, num_classes + 1)
        self.mask_embed = nn.Sequential(nn.Linear(d, d), nn.ReLU(inplace=True), nn.Linear(d, d),
                                        nn.ReLU(inplace=True), nn.Linear(d, d))

    def _predict(self, q: torch.Tensor, mask_features: torch.Tensor, size: tuple[int, int]):
        q = self.norm(q)
        masks = torch.einsum("bqc,bchw->bqhw", self.mask_embed(q), mask_features)
        small = F.interpolate(masks, size=size, mode="bilinear", align_corners=False)
        blocked = (small.sigmoid() < self.mask_threshold).flatten(2).detach()   # [B, Q, hw]
        return {"pred_logits": self.class_embed(q), "pred_masks": masks}, blocked

    def _attention_mask(self, blocked: torch.Tensor) -> torch.Tensor:
        blocked = blocked & ~blocked.all(-1, keepdim=True)   # a query blocked everywhere attends everywhere
        return blocked.repeat_interleave(self.heads, dim=0)   # [B * heads, Q, hw]

    def forward(self, levels, mask_features, query_content, level_pos=None, first_blocked=None):
        b, d = mask_features.shape[:2]
        sizes = [tuple(x.shape[-2:]) for x in levels]
        memory, memory_pos = [], []
        for i, x in enumerate(levels):
            pos = sine_position(*sizes[i], d, x.device, x.dtype) + self.level_embed.weight[i].view(1, d, 1, 1)
            if level_pos is not None:
                pos = pos + level_pos[i]
            memory.append(x.flatten(2).transpose(1, 2))
            memory_pos.append(pos.expand(b, -1, -1, -1).flatten(2).transpose(1, 2))
        q = self.query_feat.weight.unsqueeze(0) + query_content
        query_pos = self.query_pos.weight.unsqueeze(0).expand(b, -1, -1)
        prediction, blocked = self._predict(q, mask_features, sizes[0])
        predictions = [prediction]
        for i, layer in enumerate(self.layers):
            level = i % len(levels)
            if i == 0 and first_blocked is not None:
                blocked = first_blocked[level][:, None, :].expand(-1, q.shape[1], -1)
            q = layer(q, query_pos, memory[level], memory_pos[level], self._attention_mask(blocked))
            prediction, blocked = self._predict(q, mask_features, sizes[(i + 1) % len(levels)])
            predictions.append(prediction)
        return predictions
