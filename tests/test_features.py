"""Features: the log-mel recipe against an independent numpy implementation, padding, the maskige
painting rule on hand-made masks, the proposals, and the `avs features` step end to end."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from PIL import Image

from components.avsbench.layout import list_clips, logmel_file, maskige_files
from components.cli import main
from components.common import StepError
from components.features import log_mel
from components.features.logmel import NTAVS_WINDOWS, scale_of
from components.features.maskige import ADE20K_PALETTE, label_map, paint_maskige
from components.features.proposals import RegionProposer, make_proposer
from components.features.step import read_features
from components.synth.generate import iter_clips, resolve_config
from tests.numpy_logmel import numpy_log_mel

WINDOWS = [*NTAVS_WINDOWS, "vggish"]


def _signals() -> dict[str, np.ndarray]:
    rng = np.random.default_rng()  # fresh each run: the recipe must hold for any input
    t = np.arange(5 * 16000) / 16000
    clip = next(c for c in iter_clips(resolve_config("tiny"), seed=int(rng.integers(1000))) if c.part == "ms3")
    return {
        "noise": rng.standard_normal(len(t)) * 0.1,
        "tones": 0.3 * np.sin(2 * np.pi * 440 * t) + 0.2 * np.sin(2 * np.pi * 3150 * t),
        "silence+click": np.where(np.arange(len(t)) % 16000 == 0, 0.9, 0.0),
        "synthetic clip": clip.scene.audio.astype(np.float64),
        "odd length": rng.standard_normal(3 * 16000 + 1234) * 0.05,
    }


@pytest.mark.parametrize("window", WINDOWS)
def test_log_mel_matches_numpy_recipe(window) -> None:
    sc = scale_of(window)
    for name, x in _signals().items():
        ours = log_mel(torch.from_numpy(x), 16000, window)
        ref = numpy_log_mel(x, sc.window, sc.n_fft, sc.f_min, sc.f_max)
        assert ours.shape == (len(ref), 1, 96, 64) and ours.dtype == torch.float32, name
        assert np.abs(ours[:, 0].numpy() - ref).max() <= 1e-4, name


def test_padding_per_subset_and_channels_and_resampling() -> None:
    rng = np.random.default_rng(0)
    short = torch.from_numpy(rng.standard_normal(int(3.2 * 16000)) * 0.1)
    s4 = log_mel(short, 16000, 512, seconds=5, pad="repeat")
    assert s4.shape == (5, 1, 96, 64)
    assert torch.equal(s4[3], s4[2]) and torch.equal(s4[4], s4[2]) and not torch.equal(s4[2], s4[1])
    avss = log_mel(short, 16000, 512, seconds=10, pad="zeros")
    assert avss.shape == (10, 1, 96, 64) and torch.equal(avss[:3], s4[:3]) and (avss[3:] == 0).all()
    assert log_mel(short, 16000, 256, seconds=2).shape == (2, 1, 96, 64)  # longer audio is trimmed
    stereo = torch.stack([short, short])
    assert torch.allclose(log_mel(stereo, 16000, 1024), log_mel(short, 16000, 1024))
    t = np.arange(5 * 44100) / 44100
    tone_44k = log_mel(torch.from_numpy(np.sin(2 * np.pi * 1000 * t)), 44100, 1024)
    t16 = np.arange(5 * 16000) / 16000
    tone_16k = log_mel(torch.from_numpy(np.sin(2 * np.pi * 1000 * t16)), 16000, 1024)
    assert tone_44k.shape == tone_16k.shape
    assert torch.equal(tone_44k.mean((0, 1, 2)).argmax(), tone_16k.mean((0, 1, 2)).argmax())
    with pytest.raises(ValueError):
        log_mel(torch.zeros(2, 2, 100), 16000, 256)


def test_maskige_rule_smaller_wins_with_rank_labels() -> None:
    big = np.zeros((6, 6), bool)
    big[:, :] = True                                   # area 36 -> rank 2 -> label 3
    mid = np.zeros((6, 6), bool)
    mid[0:4, 0:4] = True                               # area 16 -> label 2
    small = np.zeros((6, 6), bool)
    small[2:5, 2:5] = True                             # area 9 -> label 1, wins where it overlaps mid
    labels = label_map(np.stack([mid, big, small]))
    expected = np.array([
        [2, 2, 2, 2, 3, 3],
        [2, 2, 2, 2, 3, 3],
        [2, 2, 1, 1, 1, 3],
        [2, 2, 1, 1, 1, 3],
        [3, 3, 1, 1, 1, 3],
        [3, 3, 3, 3, 3, 3],
    ])
    assert np.array_equal(labels, expected)


def test_maskige_rule_uncovered_ties_and_limits() -> None:
    a = np.zeros((4, 4), bool)
    a[0, :2] = True
    b = np.zeros((4, 4), bool)
    b[0, 1:3] = True                                   # same area as a: input order breaks the tie
    labels = label_map(np.stack([a, b]))
    assert labels[0].tolist() == [1, 1, 2, 0] and (labels[1:] == 0).all()
    assert label_map(np.zeros((0, 4, 4), bool)).sum() == 0
    many = np.zeros((300, 20, 20), bool)
    for k in range(300):
        many[k].flat[: k + 1] = True                   # areas 1..300
    labels = label_map(many)
    assert labels.max() == 255 and labels.flat[0] == 1 and labels.flat[254] == 255 and labels.flat[260] == 0


def test_maskige_image_nearest_resize_and_ade_palette() -> None:
    masks = np.zeros((2, 4, 4), bool)
    masks[0, :2, :2] = True
    masks[1, 2:, :] = True
    img = paint_maskige(masks, 8)
    assert img.mode == "P" and img.size == (8, 8)
    labels = np.asarray(img)
    assert set(np.unique(labels)) == {0, 1, 2}
    assert (labels[:4, :4] == 1).all() and (labels[4:, :] == 2).all() and (labels[:4, 4:] == 0).all()
    rgb = np.asarray(img.convert("RGB"))
    assert tuple(rgb[0, 0]) == ADE20K_PALETTE[0] and tuple(rgb[7, 7]) == ADE20K_PALETTE[1]
    assert tuple(rgb[0, 7]) == (0, 0, 0)
    assert len(ADE20K_PALETTE) == 150 and ADE20K_PALETTE[2] == (6, 230, 230)
    assert paint_maskige(masks, (10, 6)).size == (10, 6)


def test_region_proposals_find_the_objects() -> None:
    proposer, ious = RegionProposer(), []
    for clip in iter_clips(resolve_config("tiny", image_size=96), seed=5):
        scene = clip.scene
        for t in range(0, len(scene.frames), 2):
            masks = proposer(scene.frames[t])
            assert masks.dtype == bool and masks.shape[1:] == scene.frames.shape[1:3]
            for i in range(len(scene.classes)):
                obj = scene.instances[t] == i
                if obj.sum() >= 0.02 * obj.size:
                    inter = (masks & obj).reshape(len(masks), -1).sum(1)
                    union = (masks | obj).reshape(len(masks), -1).sum(1)
                    ious.append((inter / union).max())
    assert len(ious) > 50 and np.mean(ious) > 0.8


def test_sam_backend_errors_are_clear(tmp_path) -> None:
    with pytest.raises(StepError, match="needs --sam-checkpoint"):
        make_proposer("sam")
    with pytest.raises(StepError, match=r"segment_anything|not found"):
        make_proposer("sam", tmp_path / "missing.pth")
    with pytest.raises(StepError, match="unknown mask source"):
        make_proposer("magic")


def test_features_step_writes_every_clip(tiny_data, tmp_path) -> None:
    out = tmp_path / "features"
    assert main(["features", "--data", str(tiny_data), "--out", str(out), "--maskige-size", "64",
                 "--batch-size", "3"]) == 0
    for subset in ("s4", "ms3", "avss"):
        for files in list_clips(tiny_data, subset):
            feats = read_features(logmel_file(out, files))
            seconds = 10 if subset == "avss" else 5
            assert set(feats) == {"logmel_256", "logmel_512", "logmel_1024"}
            data, rate = sf.read(files.audio, dtype="float32")
            for w in NTAVS_WINDOWS:
                expected = log_mel(torch.from_numpy(data), rate, w, seconds, "zeros" if subset == "avss" else "repeat")
                assert torch.allclose(feats[f"logmel_{w}"], expected, atol=1e-5)
            for path in maskige_files(out, files):
                with Image.open(path) as img:
                    assert img.mode == "P" and img.size == (64, 64)


def test_features_are_byte_identical_run_to_run(tiny_data, tmp_path) -> None:
    """The same data give the same bytes (DVC hashes them: different bytes would retrain on unchanged
    inputs), whatever the batch size and thread count."""
    runs = []
    for i, (batch, threads) in enumerate(((3, 1), (32, 2))):
        before = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            assert main(["features", "--data", str(tiny_data), "--out", str(tmp_path / f"f{i}"),
                         "--maskige-size", "64", "--batch-size", str(batch)]) == 0
        finally:
            torch.set_num_threads(before)
        runs.append({p.relative_to(tmp_path / f"f{i}"): p.read_bytes()
                     for p in sorted((tmp_path / f"f{i}").rglob("*")) if p.is_file()})
    assert runs[0].keys() == runs[1].keys() and len(runs[0]) > 100
    assert [k for k in runs[0] if runs[0][k] != runs[1][k]] == []


def test_features_step_fails_on_a_corrupt_clip_leaving_nothing(tiny_copy, tmp_path, capsys) -> None:
    files = list_clips(tiny_copy, "ms3", "val")[0]
    files.audio.write_bytes(b"RIFF....WAVEgarbage")
    out = tmp_path / "features"
    assert main(["features", "--data", str(tiny_copy), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert files.key in err and str(files.audio) in err and "Traceback" not in err
    assert not out.exists()
    assert not any(p.name.startswith(".features") for p in tmp_path.iterdir())  # no partial output left
