"""The optional visual stand-in pretraining: it learns the object looks, and its file loads through the
local-weights path (`train.model.backbone_weights`) a downloaded checkpoint takes."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from components.common import StepError
from components.params import Params
from components.train.loop import make_model, train_config
from components.train.visual_pretrain import pretrain_visual


def _config(**changes):
    """Stage 1's TrainConfig of the default parameters (the tiny preset) with `changes`."""
    return dataclasses.replace(train_config(Params(), 1), **changes)


@pytest.mark.slow
def test_pretraining_learns_the_looks_and_loads_as_backbone_weights(tmp_path: Path) -> None:
    out = tmp_path / "visual.pth"
    report = pretrain_visual("pvt_v2_b0", 32, out, steps=200, batch=16, lr=3e-3, images=256, seed=0,
                             val_images=64, progress=False)
    assert out.is_file() and out.with_suffix(".json").is_file()
    # 10 colours on object pixels: a guess scores about 0.1 (0.64 measured after these 200 steps)
    assert report["val_colour_accuracy"] > 0.4, report
    saved = torch.load(out, weights_only=True)
    cfg = _config(model={"backbone_weights": str(out)})
    net = make_model(cfg)
    # timm's feature wrapper names stage k "stages_k" where the plain model (the file) says "stages.k"
    body = {k.replace("stages_", "stages."): v for k, v in net.backbone.body.state_dict().items()}
    assert set(body) <= set(saved), "some backbone tensors have no counterpart in the file"
    assert all(torch.equal(v, saved[k]) for k, v in body.items())
    fresh = make_model(cfg, initial_weights=False)   # a run resumed from trained tensors reads no file
    assert not all(torch.equal(v, saved[k.replace("stages_", "stages.")])
                   for k, v in fresh.backbone.body.state_dict().items())


def test_a_missing_or_ill_fitting_weight_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "nope.pth"
    with pytest.raises(StepError, match=r"nope\.pth"):
        make_model(_config(model={"backbone_weights": str(missing)}))
    wrong = tmp_path / "wrong.pth"
    torch.save({"patch_embed1.proj.weight": torch.zeros(3, 3, 1, 1)}, wrong)
    with pytest.raises(StepError, match=r"wrong\.pth"):
        make_model(_config(model={"backbone_weights": str(wrong)}))
    with pytest.raises(StepError, match="divisible by 32"):
        pretrain_visual("pvt_v2_b0", 40, tmp_path / "x.pth", steps=1, batch=2, lr=3e-3, images=4, seed=0)
