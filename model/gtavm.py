"""GTAVM: the Global Temporal Audio-Visual Mixer (docs/design.md, The network).

Visual tokens are each spatial position's sequence over the T frames; audio tokens are each of the 72
audio tokens' sequence over T. Each modality runs temporal self-attention; before the attention is
applied, each modality's T x T attention map is mixed with the other's average:
    A_v' = (1 - mix) A_v + mix * mean_over_audio_tokens(A_a)
    A_a' = (1 - mix) A_a + mix * mean_over_positions(A_v)
then out = proj(A' v), a residual, a residual MLP on LayerNorm, and a final LayerNorm.
"""

from __future__ import annotations

import torch
from torch import nn


class _Modality(nn.Module):
    def __init__(self, d: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.mlp_norm = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
        self.out_norm = nn.LayerNorm(d)

    def attention(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, N, T, d] -> (attention [B, N, heads, T, T], values [B, N, heads, T, d/heads])."""
        b, n, t, d = x.shape
        q, k, v = self.qkv(x).view(b, n, t, 3, self.heads, d // self.heads).permute(3, 0, 1, 4, 2, 5)
        attn = (q @ k.transpose(-1, -2)) * (d // self.heads) ** -0.5
        return attn.softmax(-1), v

    def finish(self, x: torch.Tensor, attn: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        b, n, t, d = x.shape
        mixed = (attn @ v).permute(0, 1, 3, 2, 4).reshape(b, n, t, d)
        x = x + self.proj(mixed)
        x = x + self.mlp(self.mlp_norm(x))
        return self.out_norm(x)


class GTAVMBlock(nn.Module):
    """One mixing block. visual [B, Nv, T, d], audio [B, Na, T, d] -> the same shapes."""

    def __init__(self, d: int, heads: int, mix: float = 0.1):
        super().__init__()
        self.mix = mix
        self.visual = _Modality(d, heads)
        self.audio = _Modality(d, heads)

    def forward(self, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attn_v, v_v = self.visual.attention(visual)
        attn_a, v_a = self.audio.attention(audio)
        mixed_v = (1 - self.mix) * attn_v + self.mix * attn_a.mean(1, keepdim=True)
        mixed_a = (1 - self.mix) * attn_a + self.mix * attn_v.mean(1, keepdim=True)
        return self.visual.finish(visual, mixed_v, v_v), self.audio.finish(audio, mixed_a, v_a)


class GTAVM(nn.Module):
    """One block per feature map, in cascade: the audio leaving a block passes a Linear into the next.

    maps: list of [B*T, d, h, w]; audio [B*T, Na, d]; frames = T. Returns (maps, audio) in the same shapes;
    the returned audio is the "audio after the GTAVM blocks" used by the NTAVS queries.
    """

    def __init__(self, d: int, heads: int, mix: float, levels: int = 4):
        super().__init__()
        self.blocks = nn.ModuleList(GTAVMBlock(d, heads, mix) for _ in range(levels))
        self.audio_links = nn.ModuleList(nn.Linear(d, d) for _ in range(levels))

    def forward(self, maps: list[torch.Tensor], audio: torch.Tensor, frames: int,
                ) -> tuple[list[torch.Tensor], torch.Tensor]:
        bt, na, d = audio.shape
        b = bt // frames
        out = []
        for block, link, fmap in zip(self.blocks, self.audio_links, maps, strict=True):
            _, _, h, w = fmap.shape
            visual = fmap.reshape(b, frames, d, h * w).permute(0, 3, 1, 2)           # [B, hw, T, d]
            tokens = audio.reshape(b, frames, na, d).transpose(1, 2)                 # [B, Na, T, d]
            visual, tokens = block(visual, tokens)
            out.append(visual.permute(0, 2, 3, 1).reshape(bt, d, h, w))
            audio = link(tokens.transpose(1, 2).reshape(bt, na, d))
        return out, audio
