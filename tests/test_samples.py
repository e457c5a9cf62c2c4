"""Training samples beyond augmentation: frame windows, and the label oracle's audio."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from components.train.data import Sample, batches, frame_window


def _sample(frames: int, annotated: list[int]) -> Sample:
    """Frame t's pixels, audio, maskige, labels, regions and prior all hold t, so a cut can be read back."""
    t = torch.arange(frames, dtype=torch.float32)
    has_gt = torch.zeros(frames, dtype=torch.bool)
    has_gt[annotated] = True
    image = t.view(-1, 1, 1, 1).expand(-1, 3, 8, 8).clone()
    return Sample(image, t.view(-1, 1, 1, 1).expand(-1, 3, 96, 64).clone(), image.clone(),
                  t.view(-1, 1, 1).expand(-1, 8, 8).long(), has_gt, t.view(-1, 1, 1).expand(-1, 8, 8).clone(),
                  "s4/clip", t.view(-1, 1, 1).expand(-1, 8, 8).long(), t.view(-1, 1, 1).expand(-1, 8, 8).long())


def test_a_window_holds_an_annotated_frame_and_cuts_every_field_alike() -> None:
    first_only = _sample(5, [0])
    for seed in range(10):
        out = frame_window(first_only, 3, torch.Generator().manual_seed(seed))
        assert out.frames[:, 0, 0, 0].tolist() == [0, 1, 2]          # S4 train: the annotated first frame
    starts = set()
    for seed in range(40):
        out = frame_window(_sample(10, list(range(10))), 3, torch.Generator().manual_seed(seed))
        first = int(out.frames[0, 0, 0, 0])
        starts.add(first)
        for field in (out.audio[:, 0, 0, 0], out.maskige[:, 0, 0, 0], out.labels[:, 0, 0], out.prior[:, 0, 0],
                      out.regions[:, 0, 0], out.looks[:, 0, 0]):
            assert field.tolist() == [first, first + 1, first + 2]
        assert out.has_gt.all() and len(out.frames) == 3
    assert starts == set(range(8))                                   # every window can be drawn
    again = [int(frame_window(_sample(10, list(range(10))), 3, torch.Generator().manual_seed(s)).frames[0, 0, 0, 0])
             for s in range(5)]
    assert again == [int(frame_window(_sample(10, list(range(10))), 3, torch.Generator().manual_seed(s))
                         .frames[0, 0, 0, 0]) for s in range(5)]     # one seed, one window
    whole = _sample(2, [1])
    assert frame_window(whole, 3, torch.Generator()) is whole        # shorter clips stay whole
    assert frame_window(whole, 0, torch.Generator()) is whole        # 0: every frame


def test_batches_group_clips_by_their_windowed_length(tiny_data, tmp_path) -> None:
    from components.features.proposals import RegionProposer
    from components.features.step import compute_features
    from components.train.data import ClipDataset

    compute_features(tiny_data, tmp_path / "features", RegionProposer(), maskige_size=64)
    dataset = ClipDataset(tiny_data, tmp_path / "features", 1, "train", 64)
    lengths = {c.num_frames for c in dataset.clips}
    assert lengths == {5, 10}                                         # AVSS v2 clips have 10 frames
    whole = batches(dataset, 4, torch.Generator().manual_seed(0))
    assert all(len({dataset.clips[i].num_frames for i in b}) == 1 for b in whole)
    windows = batches(dataset, 4, torch.Generator().manual_seed(0), frames=3)
    assert sorted(i for b in windows for i in b) == list(range(len(dataset)))
    assert sum(len(b) == 4 for b in windows) >= sum(len(b) == 4 for b in whole)  # one group: fuller batches
    twice = batches(dataset, 4, torch.Generator().manual_seed(0), frames=3, repeat={"ms3": 2})
    seen = [i for b in twice for i in b]
    for i, clip in enumerate(dataset.clips):                          # MS3 clips twice an epoch, others once
        assert seen.count(i) == (2 if clip.subset == "ms3" else 1), clip.key
    assert batches(dataset, 4, torch.Generator().manual_seed(0), frames=3, repeat={}) == windows


def test_the_label_oracle_hears_the_sounding_classes(tiny_data) -> None:
    """`sounding_classes` names, per second, exactly the classes the ground truth paints, and a network with
    `audio_input: classes` trains on them."""
    from components.avsbench.classes import AVSS_CLASSES
    from components.avsbench.layout import list_clips
    from components.avsbench.reader import read_target
    from components.synth.generate import resolve_config, sounding_classes
    from model import create_model

    hot = sounding_classes(resolve_config("tiny"), 0)
    checked = 0
    for files in list_clips(tiny_data, "avss", "train"):
        for t in range(files.num_frames):
            target = read_target(files, t)
            if target is not None:
                assert set(np.flatnonzero(hot[files.key][t])) == set(np.unique(target)) - {0}, (files.key, t)
                checked += 1
    assert checked > 10 and all(v.shape[1] == len(AVSS_CLASSES) for v in hot.values())
    net = create_model("tiny", audio_input="classes")
    audio = torch.from_numpy(np.stack([hot[k][:2] for k in list(hot)[:2]]))       # [B, T, 71]
    frames, maskige = torch.randn(2, 2, 3, 64, 64), torch.rand(2, 2, 3, 64, 64)
    preds = net(frames, audio, maskige)
    preds[-1]["pred_masks"].sum().backward()
    assert net.audio.embed.weight.grad.any()
    with torch.no_grad():  # other classes heard, other masks
        assert not torch.allclose(net(frames, audio.flip(0), maskige)[-1]["pred_masks"], preds[-1]["pred_masks"])


def test_looks_name_the_class_of_each_sounding_pixel_where_the_data_gives_it(tiny_data, tmp_path) -> None:
    """S4: the clip's category on its sounding pixels; AVSS: the label's class; MS3 (which source is which is
    not annotated), background and frames without ground truth: none. The class-agnostic labels stay 0/1."""
    from components.avsbench.classes import AVSS_CLASSES, S4_CATEGORY_TO_AVSS
    from components.avsbench.reader import read_target
    from components.features.proposals import RegionProposer
    from components.features.step import compute_features
    from components.train.data import ClipDataset

    compute_features(tiny_data, tmp_path / "features", RegionProposer(), maskige_size=64)
    dataset = ClipDataset(tiny_data, tmp_path / "features", 1, "train", 64)
    named = {"s4": 0, "ms3": 0, "avss": 0}
    for index, files in enumerate(dataset.clips):
        sample = dataset[index]
        assert sample.looks.shape == sample.labels.shape and set(sample.labels.unique().tolist()) <= {0, 1, 255}
        where = sample.looks != 255
        assert not where[~sample.has_gt].any() and torch.equal(where, where & (sample.labels == 1))
        if files.subset == "s4":
            category = AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[files.label])
            assert torch.equal(where, sample.labels == 1) and set(sample.looks[where].tolist()) == {category}
        elif files.subset == "avss":
            shape = next(read_target(files, t) for t in range(files.num_frames) if sample.has_gt[t]).shape
            truth = torch.stack([torch.from_numpy(read_target(files, t)) if sample.has_gt[t]
                                 else torch.full(shape, 255) for t in range(files.num_frames)])
            truth = F.interpolate(truth[:, None].float(), size=(64, 64), mode="nearest")[:, 0].long()
            assert torch.equal(sample.looks, torch.where((truth > 0) & (truth != 255), truth, 255))
        named[files.subset] += int(where.sum())
    assert named["s4"] > 0 and named["avss"] > 0 and named["ms3"] == 0
