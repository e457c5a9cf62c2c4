"""Which stage-1 prior a stage-2 training clip is shown: ground truth, or the stage-1 prediction."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from components.params import Params
from components.train.data import Sample, training_prior, with_truth_prior
from components.train.loop import train_config

T, S = 3, 16


def _sample() -> Sample:
    """Labels: class 5 in the top half, background below, one ignored pixel; frame 2 unannotated."""
    labels = torch.zeros(T, S, S, dtype=torch.long)
    labels[:, : S // 2] = 5
    labels[0, 0, 0] = 255
    labels[2] = 255
    has_gt = torch.tensor([True, True, False])
    predicted = torch.full((T, S, S), 0.45)
    return Sample(torch.zeros(T, 3, S, S), torch.zeros(T, 3, 96, 64), torch.zeros(T, 3, S, S), labels, has_gt,
                  predicted, "avss/clip", torch.zeros(T, S, S, dtype=torch.long), labels.clone())


def test_truth_prior_is_the_sounding_foreground_of_annotated_frames_only() -> None:
    sample = _sample()
    out = with_truth_prior(sample)
    assert out.prior is not None and out.prior.dtype == torch.float32
    assert torch.equal(out.prior[1, : S // 2], torch.ones(S // 2, S)) and out.prior[1, S // 2:].eq(0).all()
    assert out.prior[0, 0, 0] == 0  # ignored pixel: not sounding
    assert torch.equal(out.prior[2], sample.prior[2])  # unannotated frame keeps the stage-1 prediction
    assert torch.equal(sample.prior, torch.full((T, S, S), 0.45))  # the input is left as it was
    with pytest.raises(ValueError, match="avss/clip"):
        with_truth_prior(Sample(sample.frames, sample.audio, sample.maskige, sample.labels, sample.has_gt, None,
                                "avss/clip", sample.regions, sample.looks))


def test_share_of_truth_priors_follows_the_setting_and_repeats_under_one_seed() -> None:
    sample = _sample()
    truth = with_truth_prior(sample).prior
    assert all(torch.equal(training_prior(sample, 1.0, 0, step, 0).prior, truth) for step in range(20))
    assert all(torch.equal(training_prior(sample, 0.0, 0, step, 0).prior, sample.prior) for step in range(20))

    def picks(seed: int) -> list[bool]:
        return [torch.equal(training_prior(sample, 0.3, seed, step, clip).prior, truth)
                for step in range(50) for clip in range(8)]

    first = picks(0)
    assert first == picks(0) and first != picks(1)
    assert 0.22 < sum(first) / len(first) < 0.38  # 400 draws at 0.3: 4 standard deviations either side


def test_prior_truth_keys_stage_two_runs_only() -> None:
    one, two = train_config(Params(), 1), train_config(Params(), 2)
    assert one.fingerprint("x") == replace(one, prior_truth=0.9).fingerprint("x")  # stage 1 not retrained
    assert two.fingerprint("x") != replace(two, prior_truth=0.9).fingerprint("x")  # stage 2 is
