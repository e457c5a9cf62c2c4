"""The audio transformer in the CED-Mini shape, reading the three log-mel scales of every frame.

Each scale's 96x64 example (time x mel) is normalised by a BatchNorm over the 64 mel bins, cut into
16x16 patches (4 mel x 6 time = 24 tokens) and encoded by one shared ViT; the three scales give 72
tokens per frame. The parameter names follow the CED checkpoints, so `load_ced_weights` can read one.
"""

from __future__ import annotations

from pathlib import Path

import torch
from timm.models.vision_transformer import Block
from torch import nn

N_MELS = 64
EXAMPLE_FRAMES = 96


class AudioTransformer(nn.Module):
    """ViT over one log-mel example. Input float [B, 96, 64] (time x mel); output [B, 24, dim]."""

    def __init__(self, dim: int = 256, depth: int = 12, heads: int = 4, patch: int = 16):
        super().__init__()
        self.init_bn = nn.BatchNorm2d(N_MELS)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(1, dim, patch, stride=patch)
        self.time_pos_embed = nn.Parameter(torch.randn(1, dim, 1, EXAMPLE_FRAMES // patch) * 0.02)
        self.freq_pos_embed = nn.Parameter(torch.randn(1, dim, N_MELS // patch, 1) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio=4.0, qkv_bias=True) for _ in range(depth))
        self.norm = nn.LayerNorm(dim, eps=1e-6)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        x = mel.transpose(1, 2).unsqueeze(2)              # [B, 64 mel, 1, 96 time]: mel bins as BN channels
        x = self.init_bn(x).transpose(1, 2)               # [B, 1, 64, 96]
        x = self.patch_embed.proj(x)                      # [B, dim, 4, 6]
        x = x + self.time_pos_embed + self.freq_pos_embed
        x = x.flatten(2).transpose(1, 2)                  # [B, 24, dim] (mel-major)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)


class AudioEncoder(nn.Module):
    """Three log-mel scales per frame -> 72 tokens at the model width.

    Input float [BT, scales, 96, 64]; output [BT, scales * 24, d_model]. Frozen (weights and BatchNorm
    statistics) when `frozen`, as in the paper.
    """

    def __init__(self, dim: int, depth: int, heads: int, patch: int, d_model: int, frozen: bool = True,
                 weights: str | Path | None = None):
        super().__init__()
        self.transformer = AudioTransformer(dim, depth, heads, patch)
        if weights is not None:
            load_ced_weights(self.transformer, weights)
        self.frozen = frozen
        if frozen:
            self.transformer.requires_grad_(False)
        self.out = nn.Linear(dim, d_model)

    def train(self, mode: bool = True) -> AudioEncoder:
        super().train(mode)
        if self.frozen:
            self.transformer.eval()  # frozen means BatchNorm statistics stay fixed too
        return self

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        bt, scales = mel.shape[:2]
        tokens = self.transformer(mel.flatten(0, 1))      # [BT * scales, 24, dim]
        return self.out(tokens.reshape(bt, scales * tokens.shape[1], -1))


def load_ced_weights(model: AudioTransformer, path: str | Path) -> None:
    """Load a CED checkpoint (e.g. the published CED-Mini file) into `model`.

    Key map: an optional "model."/"module." prefix is dropped; `outputlayer.*` (the AudioSet classifier)
    and `front_end.*` (CED's own mel front end: ours is computed by the features step) are skipped;
    positional embeddings longer than ours (CED trains on 10 s) keep their first positions.
    Raises FileNotFoundError / ValueError naming the file and the missing keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"audio checkpoint {path} not found (weights are never downloaded)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("model", state.get("state_dict", state))
    cleaned: dict[str, torch.Tensor] = {}
    for key, tensor in state.items():
        for prefix in ("model.", "module."):
            key = key.removeprefix(prefix)
        if key.startswith(("outputlayer.", "front_end.")):
            continue
        cleaned[key] = tensor
    own = model.state_dict()
    for name in ("time_pos_embed", "freq_pos_embed"):
        if name in cleaned:
            src, dst = cleaned[name], own[name]
            cleaned[name] = src[..., : dst.shape[2], : dst.shape[3]]
    missing = [k for k in own if k not in cleaned]
    if missing:
        raise ValueError(f"{path}: missing {len(missing)} audio-transformer tensors, e.g. {missing[:3]}")
    model.load_state_dict({k: cleaned[k] for k in own})


class ClassTokens(nn.Module):
    """The label oracle's stand-in for the audio encoder: which classes sound, instead of what is heard.

    Input float [BT, num_classes] (multi-hot: the classes sounding in each frame's second); output
    [BT, tokens, d_model]: one learned embedding of the class set plus a learned per-token offset, so
    the rest of the network (GTAVM, queries, decoder) runs unchanged. Used only by the diagnostics, to
    measure what the visual side reaches when hearing is perfect.
    """

    def __init__(self, num_classes: int, tokens: int, d_model: int):
        super().__init__()
        self.embed = nn.Linear(num_classes, d_model)
        self.token_embed = nn.Parameter(torch.randn(tokens, d_model) * 0.02)
        self.norm = nn.LayerNorm(d_model)

    def forward(self, classes: torch.Tensor) -> torch.Tensor:
        return self.norm(self.embed(classes)[:, None, :] + self.token_embed)
