"""Training augmentation: one transform for every image-shaped field of a clip, reproducible from its seed."""

from __future__ import annotations

import pytest
import torch

from components.train.augment import augment
from components.train.data import Sample

T, S = 3, 32


def _sample(with_prior: bool = True) -> Sample:
    """Labels 0..3 in blocks; the maskige and the prior carry the labels too, so alignment can be read back."""
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 4, (T, S // 4, S // 4), generator=g).repeat_interleave(4, 1).repeat_interleave(4, 2)
    labels[0, :4, :4] = 255  # an ignored corner
    frames = torch.rand(T, 3, S, S, generator=g)
    maskige = (labels.float() / 255)[:, None].expand(-1, 3, -1, -1).clone()
    prior = (labels == 1).float() if with_prior else None
    return Sample(frames, torch.rand(T, 3, 96, 64, generator=g), maskige, labels, torch.ones(T, dtype=torch.bool),
                  prior, "s4/clip", regions=labels % 255 + 1, looks=labels.clone())


def test_labels_maskige_and_prior_stay_aligned() -> None:
    for seed in range(20):
        sample = _sample()
        out = augment(sample, torch.Generator().manual_seed(seed), flip=True, max_zoom=2.0)
        assert out.frames.shape == sample.frames.shape and out.labels.shape == sample.labels.shape
        assert out.labels.dtype == torch.int64 and set(out.labels.unique().tolist()) <= {0, 1, 2, 3, 255}
        assert torch.equal((out.maskige[:, 0] * 255).round().long(), out.labels)  # same pixels moved
        assert torch.equal(out.regions, out.labels % 255 + 1) and torch.equal(out.looks, out.labels)
        assert out.prior is not None and out.prior.min() >= 0 and out.prior.max() <= 1
        inside = (out.prior == 1) | (out.prior == 0)  # away from block edges the prior is exact
        assert torch.equal(out.prior[inside] == 1, out.labels[inside] == 1)
        assert torch.equal(out.audio, sample.audio) and out.key == sample.key


def test_the_same_seed_gives_the_same_clip_and_other_seeds_differ() -> None:
    sample = _sample()
    a, b = (augment(sample, torch.Generator().manual_seed(7), True, 1.5) for _ in range(2))
    assert torch.equal(a.frames, b.frames) and torch.equal(a.labels, b.labels)
    outs = [augment(sample, torch.Generator().manual_seed(s), True, 1.5).frames for s in range(8)]
    assert len({o.sum().item() for o in outs}) > 1


def test_flip_alone_mirrors_about_half_the_clips_and_changes_nothing_else() -> None:
    sample = _sample(with_prior=False)
    mirrored = 0
    for seed in range(40):
        out = augment(sample, torch.Generator().manual_seed(seed), flip=True, max_zoom=1.0)
        assert out.prior is None
        if torch.equal(out.frames, sample.frames.flip(-1)):
            mirrored += 1
            assert torch.equal(out.labels, sample.labels.flip(-1))
        else:
            assert torch.equal(out.frames, sample.frames) and torch.equal(out.labels, sample.labels)
    assert 10 <= mirrored <= 30
    still = augment(sample, torch.Generator().manual_seed(0), flip=False, max_zoom=1.0)
    assert torch.equal(still.frames, sample.frames)


def test_zoom_enlarges_what_stays_in_view() -> None:
    """Zooming by z into a crop: what stays in view grows by z in each direction, every frame the same way."""
    sample = _sample(with_prior=False)
    sample.labels[:] = 0
    sample.labels[:, 12:20, 12:20] = 1  # an 8 x 8 square in the middle
    grown = []
    for seed in range(10):
        out = augment(sample, torch.Generator().manual_seed(seed), flip=False, max_zoom=2.0)
        areas = (out.labels == 1).flatten(1).sum(1)
        assert (areas == areas[0]).all()
        grown.append(areas[0].item() / 64)
    assert sum(grown) / len(grown) > 1.2 and max(grown) > 1.5  # a crop may cut the square, on average it grows


def test_bad_zoom_is_refused() -> None:
    with pytest.raises(ValueError, match="max_zoom"):
        augment(_sample(), torch.Generator(), max_zoom=0.5)
