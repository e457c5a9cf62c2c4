"""Visual pretraining: the image backbone learns what objects look like before it learns what they sound like.

Both papers start from a PVT-v2 / ResNet-50 pretrained on ImageNet. The demo cannot download weights,
and a backbone trained from random weights on a few hundred clips spends the demo's whole budget learning
to see. This step stands in for the downloaded checkpoint. It renders images of its own: every one of
the 70 object looks of the synthetic generator (not only the classes a benchmark uses), on the
generator's backdrops, at random sizes, places and brightness. It then trains the timm backbone to name
the colour and the shape of the object under every pixel (the 70 looks are 10 colours x 7 shapes; two
heads learn faster than one 70-way head, as each colour and each shape is seen far more often than each
look) through a light FPN head, which is thrown away.

Nothing of an AVS dataset is read: no clip, no annotation, no sound, nothing about which object sounds.
The output is a plain timm state dict of the whole model, the format of a downloaded checkpoint. The
training stages load it through `train.model.backbone_weights`, the path a real checkpoint takes.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from components.common import StepError, write_json_atomic
from components.synth.looks import COLOURS, SHAPES, look_of
from components.synth.scenes import background, paint_objects
from components.train import checkpoint as ckpt
from components.train.data import MEAN, STD

NUM_LOOKS = len(SHAPES) * len(COLOURS)   # 70 object classes; label 0 is the backdrop
NUM_COLOURS, NUM_HEADS = len(COLOURS) + 1, len(COLOURS) + len(SHAPES) + 2   # with the backdrop in each head


def _look_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0..70 -> its colour label 0..10 and shape label 0..7 (0 for the backdrop), read from
    `looks.look_of`, the generator's own assignment."""
    colour, shape = torch.zeros(NUM_LOOKS + 1, dtype=torch.long), torch.zeros(NUM_LOOKS + 1, dtype=torch.long)
    for k in range(1, NUM_LOOKS + 1):
        look = look_of(k)
        colour[k] = 1 + next(i for i, c in enumerate(COLOURS) if np.array_equal(c, look.colour))
        shape[k] = 1 + SHAPES.index(look.shape)
    return colour, shape


_COLOUR_OF, _SHAPE_OF = _look_tables()


def colour_and_shape(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Class labels int64 [...] (0 backdrop, 1..70 looks) -> (colour 0..10, shape 0..7), 0 for the backdrop."""
    return _COLOUR_OF[labels], _SHAPE_OF[labels]


def render_images(count: int, size: int, seed: int, max_objects: int = 4,
                  radius: tuple[float, float] = (0.1, 0.3)) -> tuple[torch.Tensor, torch.Tensor]:
    """`count` images of 1..max_objects objects of random classes, rendered at twice `size` and resized,
    as the benchmark's frames are resized to the training size.

    Returns (images float [N, 3, size, size], normalised as training frames; labels int64 [N, size, size],
    the class 1..70 of the object on top at each pixel, 0 elsewhere). Deterministic for (count, size, seed).
    """
    rng = np.random.default_rng([seed, 7])
    side = 2 * size
    images = np.empty((count, side, side, 3), np.uint8)
    labels = np.empty((count, side, side), np.int64)
    for k in range(count):
        n = int(rng.integers(1, max_objects + 1))
        classes = rng.integers(1, NUM_LOOKS + 1, size=n)
        radii = rng.uniform(*radius, size=n) * side
        centres = rng.uniform(0, side, size=(n, 2))
        instances = np.full((side, side), -1, np.int16)
        images[k] = paint_objects(rng, background(rng, side, side), instances, classes, radii, centres,
                                  rng.permutation(n), rng.uniform(0.85, 1.1, size=n))
        labels[k] = np.concatenate([classes, [0]])[instances]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    x = (F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False) - MEAN) / STD
    y = F.interpolate(torch.from_numpy(labels)[:, None].float(), size=(size, size), mode="nearest")[:, 0].long()
    return x, y


class PretrainNet(nn.Module):
    """A whole timm model (the checkpoint to be saved) and a light FPN head over its 4 feature levels.

    forward(images [N, 3, S, S]) -> logits [N, 11 + 8, S/4, S/4]: colour (0 backdrop, 1..10) then shape
    (0 backdrop, 1..7).
    """

    def __init__(self, backbone: str, width: int = 64):
        super().__init__()
        import timm

        from model.backbone import _out_indices

        self.body = timm.create_model(backbone, pretrained=False)
        self.indices = list(_out_indices(backbone))
        channels = [o.shape[1] for o in self._levels(torch.zeros(1, 3, 64, 64))]
        self.lateral = nn.ModuleList(nn.Conv2d(c, width, 1) for c in channels)
        self.head = nn.Sequential(nn.GroupNorm(8, width), nn.ReLU(inplace=True), nn.Conv2d(width, NUM_HEADS, 1))

    def _levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        return self.body.forward_intermediates(x, indices=self.indices, intermediates_only=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        levels = self._levels(x)
        size = levels[0].shape[-2:]
        fused = sum(F.interpolate(lat(f), size=size, mode="bilinear", align_corners=False) if i else lat(f)
                    for i, (lat, f) in enumerate(zip(self.lateral, levels, strict=True)))
        return self.head(fused)


def _loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of the colour head plus that of the shape head; logits [N, 19, h, w] are resized to
    the labels' [N, H, W]."""
    logits = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    colour, shape = colour_and_shape(labels)
    return F.cross_entropy(logits[:, :NUM_COLOURS], colour) + F.cross_entropy(logits[:, NUM_COLOURS:], shape)


def _scores(net: PretrainNet, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> dict[str, float]:
    """On the object pixels of (x, y): how often the colour, the shape and both (the look) are right."""
    net.eval()
    with torch.no_grad():
        logits = torch.cat([F.interpolate(net(x[i:i + chunk]), size=y.shape[-2:], mode="bilinear",
                                          align_corners=False) for i in range(0, len(x), chunk)])
    colour, shape = colour_and_shape(y)
    right_colour = logits[:, :NUM_COLOURS].argmax(1) == colour
    right_shape = logits[:, NUM_COLOURS:].argmax(1) == shape
    objects = y > 0
    return {"colour_accuracy": float(right_colour[objects].double().mean()),
            "shape_accuracy": float(right_shape[objects].double().mean()),
            "look_accuracy": float((right_colour & right_shape)[objects].double().mean())}


def pretrain_visual(backbone: str, size: int, out: Path, *, steps: int, batch: int, lr: float, images: int,
                    seed: int, val_images: int = 256, progress: bool = True) -> dict[str, Any]:
    """Train the timm model `backbone` at `size` px to name the colour and shape under every pixel of
    rendered object images.

    AdamW (weight decay 0.05; one-cycle schedule peaking at `lr` after 10% of the steps) for `steps` steps
    of `batch` images drawn from a pool of `images` rendered images, each mirrored with probability 1/2;
    scored on `val_images` others. Writes `out` (the timm state dict of the whole model, atomically) and
    `out` with suffix .json (the report), and returns the report: {"backbone", "input_size", "steps",
    "val_colour_accuracy", "val_shape_accuracy", "val_look_accuracy" (over object pixels), "seconds"}.
    Deterministic for its arguments on one machine.
    """
    if size % 32:
        raise StepError(f"visual pretraining: input size {size} must be divisible by 32")
    if steps < 1 or batch < 1 or images < batch:
        raise StepError(f"visual pretraining: need steps >= 1 and images >= batch >= 1 (steps={steps}, "
                        f"batch={batch}, images={images})")
    started = time.perf_counter()
    torch.manual_seed(seed)
    try:
        net = PretrainNet(backbone)
    except RuntimeError as exc:  # timm: unknown model name
        raise StepError(f"visual pretraining: cannot build backbone {backbone!r} ({exc})") from exc
    x, y = render_images(images, size, seed)
    vx, vy = render_images(val_images, size, seed + 1)
    optimizer = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.05, fused=True)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.1)
    draws = torch.Generator().manual_seed(seed)
    from tqdm import tqdm

    for _ in tqdm(range(steps), desc="pretrain visual", unit="step", disable=None if progress else True):
        net.train()
        pick = torch.randint(len(x), (batch,), generator=draws)
        flip = torch.rand(batch, generator=draws) < 0.5
        xb = torch.where(flip[:, None, None, None], x[pick].flip(-1), x[pick])
        yb = torch.where(flip[:, None, None], y[pick].flip(-1), y[pick])
        loss = _loss(net(xb), yb)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    report = {"backbone": backbone, "input_size": size, "steps": steps,
              **{f"val_{k}": v for k, v in _scores(net, vx, vy).items()},
              "seconds": round(time.perf_counter() - started, 1)}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ckpt.save_atomic(net.body.state_dict(), out)
    write_json_atomic(out.with_suffix(".json"), report)
    return report
