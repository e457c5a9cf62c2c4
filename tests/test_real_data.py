"""A copy with the real data's quirks (`avs synth --quirks`): validation warns about each, naming the clip
and the file, and passes; the features and training steps handle each; the pipeline runs on it."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from components.avsbench.classes import label2idx, read_label2idx
from components.avsbench.layout import LABEL2IDX, clip_files, list_clips, logmel_file
from components.avsbench.reader import read_target
from components.cli import main
from components.features.step import read_features
from components.synth.generate import generate, resolve_config
from components.synth.quirks import QUIRK_RATE, STRAY_COLOUR


@pytest.fixture(scope="module")
def quirks(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny synthetic set (seed 0, as tests/conftest.py's tiny_data) with every quirk, its features
    (maskiges at 64 px), and what add_quirks changed."""
    root = tmp_path_factory.mktemp("quirks")
    data, features = root / "data", root / "features"
    generate(data, resolve_config("tiny"), seed=0, quirks=True)
    assert main(["features", "--data", str(data), "--out", str(features), "--maskige-size", "64"]) == 0
    done = json.loads((data / "SYNTHETIC.json").read_text())["quirks"]
    return {"root": root, "data": data, "features": features, "done": done}


def _files(data: Path, rel: str):
    """The ClipFiles (as listed, padded) of the clip a changed file belongs to."""
    for subset in ("s4", "avss"):
        for files in list_clips(data, subset):
            if any(rel.startswith(str(p.relative_to(data))) for p in (files.audio, files.frame_dir, *files.masks)):
                return files
    raise AssertionError(rel)


def test_validation_warns_about_each_quirk_naming_clip_and_file_and_passes(quirks: dict, tmp_path: Path,
                                                                           capsys) -> None:
    out = tmp_path / "report"
    assert main(["validate", "--data", str(quirks["data"]), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    done = quirks["done"]
    short_clip = _files(quirks["data"], done["missing_train_frames"][0])
    expected = {  # file named -> the clip it belongs to
        done["audio_44k1_stereo"][0]: _files(quirks["data"], done["audio_44k1_stereo"][0]).key,
        done["short_audio"][0]: _files(quirks["data"], done["short_audio"][0]).key,
        str(short_clip.frame_dir.relative_to(quirks["data"])): short_clip.key,
        done["stray_colour"][0]: _files(quirks["data"], done["stray_colour"][0]).key,
    }
    for named, key in expected.items():
        assert any(line.strip().startswith(f"warning: {key}") and named in line for line in err.splitlines()), \
            f"{key} / {named} not warned in:\n{err}"
    results = json.loads((out / "results.json").read_text())
    assert results["success"] and results["failures"] == []
    assert set(results["warned_checks"]) == {"sample_rate", "audio_long_enough", "frame_count", "mask_values"}


def test_resampled_stereo_audio_gives_the_features_of_the_original(quirks: dict, tiny_data: Path,
                                                                   tmp_path: Path) -> None:
    """44.1 kHz stereo AVSS audio (channels 1.0 and 0.9 x the 16 kHz original) is averaged and resampled
    to 16 kHz by the features step: its log-mel scales match the original's features."""
    rel = quirks["done"]["audio_44k1_stereo"][0]
    quirky = _files(quirks["data"], rel)
    import soundfile as sf

    assert sf.info(quirky.audio).samplerate == QUIRK_RATE and sf.info(quirky.audio).channels == 2
    clean_out = tmp_path / "clean"
    assert main(["features", "--data", str(tiny_data), "--out", str(clean_out), "--maskige-size", "64"]) == 0
    clean = read_features(logmel_file(clean_out, clip_files(tiny_data, "avss", quirky.clip_id, quirky.split,
                                                            quirky.label)))
    feats = read_features(logmel_file(quirks["features"], quirky))
    for name, reference in clean.items():
        if not name.startswith("logmel_"):
            continue
        assert feats[name].shape == reference.shape
        got, reference = feats[name][: quirky.num_frames], reference[: quirky.num_frames]  # not the padding
        sounding = reference > math.log(0.2)  # mel well above the 0.01 floor of log(mel + 0.01)
        assert sounding.sum() > 100, name
        # the 0.95 gain shifts log-mel by log(0.95) = -0.051 where the signal dominates; the two resamplings
        # lose some of the band next to 8 kHz
        diff = (got - reference)[sounding]
        assert abs(diff.median().item() - (-0.051)) < 0.01 and diff.abs().quantile(0.75).item() < 0.1, name


def test_short_audio_is_padded_by_repeating_its_last_second(quirks: dict) -> None:
    files = _files(quirks["data"], quirks["done"]["short_audio"][0])
    feats = read_features(logmel_file(quirks["features"], files))
    for name in (n for n in feats if n.startswith("logmel_")):
        x = feats[name]
        assert x.shape[0] == 5, name     # S4: 5 seconds, the clip holds 3 s of audio
        assert torch.equal(x[4], x[3]) and torch.equal(x[3], x[2]) and not torch.equal(x[2], x[1]), name


def test_a_train_clip_short_of_frames_is_padded_and_its_padding_not_annotated(quirks: dict) -> None:
    from components.train.data import ClipDataset

    files = _files(quirks["data"], quirks["done"]["missing_train_frames"][0])
    assert files.num_frames == 10 and files.frames[8] == files.frames[9] == files.frames[7]
    dataset = ClipDataset(quirks["data"], quirks["features"], 2, "train", 64)
    sample = dataset[[c.key for c in dataset.clips].index(files.key)]
    assert sample.frames.shape[0] == 10 and torch.equal(sample.frames[9], sample.frames[7])
    assert sample.has_gt.tolist() == [True] * 8 + [False] * 2
    assert (sample.labels[8:] == 255).all() and (sample.labels[:8] != 255).any()


def test_stray_label_colours_are_read_as_background(quirks: dict) -> None:
    files = _files(quirks["data"], quirks["done"]["stray_colour"][0])
    target = read_target(files, 0)
    assert (target[:3, :3] == 0).all() and (target != 255).all()
    from PIL import Image

    with Image.open(files.masks[0]) as img:
        assert img.convert("RGB").getpixel((0, 0)) == STRAY_COLOUR


def test_label2idx_either_convention_is_accepted_and_another_order_refused(quirks: dict, tiny_data: Path,
                                                                           tiny_copy: Path, tmp_path: Path,
                                                                           capsys) -> None:
    assert read_label2idx(tiny_data / LABEL2IDX) == 1                  # ours: the real file's convention
    assert json.loads((tiny_data / LABEL2IDX).read_text())["background"] == 1
    assert read_label2idx(quirks["data"] / LABEL2IDX) == 0             # the quirks copy counts from 0
    swapped = label2idx()
    swapped["dog"], swapped["cat"] = swapped["cat"], swapped["dog"]
    (tiny_copy / LABEL2IDX).write_text(json.dumps(swapped))
    assert main(["validate", "--data", str(tiny_copy), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert str(LABEL2IDX) in err and "'cat' is" in err


@pytest.mark.slow
def test_the_pipeline_runs_on_the_quirks_copy(quirks: dict, tmp_path: Path) -> None:
    """features (done) -> stage 1 -> stage-1 masks -> stage 2 -> evaluation, a few steps each."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "train": {"input_size": 64, "batch_clips": 2, "checkpoint_every": 2, "val_every": 2},
        "train_stage1": {"steps": 2, "audio_pretrain_steps": 2}, "train_stage2": {"steps": 2}}))
    common = ["--data", str(quirks["data"]), "--features", str(quirks["features"]), "--params", str(params)]
    one, two, priors = tmp_path / "stage1", tmp_path / "stage2", tmp_path / "priors"
    assert main(["train", "--stage", "1", *common, "--out", str(one)]) == 0
    assert main(["predict-masks", *common[:4], "--model", str(one / "best.pt"), "--out", str(priors)]) == 0
    assert main(["train", "--stage", "2", *common, "--priors", str(priors), "--init", str(one / "best.pt"),
                 "--out", str(two)]) == 0
    metrics = tmp_path / "metrics.json"
    assert main(["evaluate", *common[:4], "--stage1", str(one / "best.pt"), "--stage2", str(two / "best.pt"),
                 "--priors", str(priors), "--out", str(tmp_path / "report"), "--metrics", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    assert {"s4", "ms3", "avss"} <= set(values)


def test_quirks_without_room_for_them_are_refused_before_writing(tmp_path: Path, capsys) -> None:
    out = tmp_path / "copy"
    assert main(["synth", "--out", str(out), "--size", "tiny", "--quirks", "--set", "synth.clips={s4: [2, 1, 1]}"]) == 2
    assert "needs an AVSS v2 train clip, an AVSS val clip" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []
