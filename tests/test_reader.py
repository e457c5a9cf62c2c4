"""The dataset API reads back exactly what the generator wrote, for S4, MS3 and AVSS."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from components.avsbench.classes import NUM_AVSS_CLASSES, avss_palette
from components.avsbench.layout import LABEL2IDX
from components.avsbench.reader import IGNORE_INDEX, AVSBenchDataset
from components.synth.generate import iter_clips, resolve_config


@pytest.fixture(scope="module")
def scenes() -> dict[str, object]:
    return {c.clip_id: c for c in iter_clips(resolve_config("tiny"), seed=0)}


def test_palette_and_label2idx(tiny_data: Path) -> None:
    pal = avss_palette()
    assert pal.shape == (71, 3)
    assert [tuple(pal[i]) for i in range(5)] == [(0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)]
    assert len({tuple(c) for c in pal}) == 71
    mapping = json.loads((tiny_data / LABEL2IDX).read_text())
    assert len(mapping) == NUM_AVSS_CLASSES and mapping["background"] == 1 and mapping["woman"] == 71


@pytest.mark.parametrize("subset", ["s4", "ms3", "avss"])
@pytest.mark.parametrize("split", ["train", "val", "test"])
def test_reader_matches_generated_scene(tiny_data: Path, scenes, subset: str, split: str) -> None:
    ds = AVSBenchDataset(tiny_data, subset, split)
    assert len(ds) > 0
    for i in range(len(ds)):
        clip = ds[i]
        scene = scenes[clip.files.clip_id].scene
        t = len(scene.frames)
        assert clip.frames.shape == (t, 3, *scene.frames.shape[1:3]) and clip.frames.dtype.is_floating_point is False
        assert clip.sample_rate == 16000 and clip.waveform.shape == (1, t * 16000)
        assert np.abs(clip.waveform[0].numpy() - scene.audio).max() < 2 / 32768
        first_only = split == "train" and (subset == "s4" or clip.files.label == "v1s")
        assert clip.has_gt.tolist() == [k == 0 or not first_only for k in range(t)]
        expected = scene.semantic_labels() if subset == "avss" else scene.sounding_mask().astype(np.int64)
        target = clip.target.numpy()
        assert np.array_equal(target[clip.has_gt.numpy()], expected[clip.has_gt.numpy()])
        assert (target[~clip.has_gt.numpy()] == IGNORE_INDEX).all()
        if subset != "avss":  # PNG frames are lossless; AVSS frames are JPEG like the real data
            assert np.array_equal(clip.frames.permute(0, 2, 3, 1).numpy(), scene.frames)


def test_avss_label_filter(tiny_data: Path) -> None:
    v2 = AVSBenchDataset(tiny_data, "avss", "train", labels=("v2",))
    assert len(v2) == 2 and all(c.label == "v2" and c.num_frames == 10 for c in v2.clips)
    with pytest.raises(ValueError, match="unknown subset"):
        AVSBenchDataset(tiny_data, "s5", "train")
