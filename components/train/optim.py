"""AdamW parameter groups and the poly learning-rate schedule (docs/design.md, Losses and the papers'
training recipe)."""

from __future__ import annotations

import torch
from torch import nn

_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.BatchNorm1d, nn.BatchNorm2d)
_BACKBONES = ("backbone.", "maskige_backbone.")


def param_groups(model: nn.Module, lr: float, weight_decay: float, backbone_mult: float) -> list[dict]:
    """Four groups: (backbone or not) x (decayed or not). Norm layers, embeddings and positional
    parameters get no weight decay; backbone parameters train at `backbone_mult` x lr."""
    no_decay: set[int] = set()
    for module in model.modules():
        if isinstance(module, (*_NORMS, nn.Embedding)):
            no_decay.update(id(p) for p in module.parameters(recurse=False))
    groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        bare = name.removeprefix("module.")
        decay = id(p) not in no_decay and "embed" not in bare.rsplit(".", 1)[-1]
        groups.setdefault((bare.startswith(_BACKBONES), decay), []).append(p)
    return [{"params": ps, "lr": lr * (backbone_mult if backbone else 1.0),
             "weight_decay": weight_decay if decay else 0.0}
            for (backbone, decay), ps in sorted(groups.items())]


def poly_schedule(optimizer: torch.optim.Optimizer, total_steps: int,
                  power: float) -> torch.optim.lr_scheduler.LambdaLR:
    """lr = base * (1 - step / total)^power."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total_steps) ** power)
