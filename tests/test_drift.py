"""Drift reports: descriptors, sources, the drift rule on shifted and same-distribution synthetic sets, the CLI."""

from __future__ import annotations

import json
import math
import multiprocessing
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from components.avsbench.classes import AVSS_CLASSES
from components.cli import main
from components.common import StepError
from components.drift.descriptors import (
    AUDIO_COLUMNS,
    DESCRIPTOR_COLUMNS,
    DESCRIPTOR_VERSION,
    VIDEO_COLUMNS,
    audio_descriptors,
    describe,
    prediction_descriptors,
    video_descriptors,
)
from components.drift.live import append_jsonl, log_request
from components.drift.report import decide
from components.drift.run import build_reference
from components.drift.sources import read_source
from components.drift.table import META_COLUMNS, TABLE_META, DescriptorTable, read_table
from components.params import DriftParams
from components.synth.generate import SIZES, SynthClip, generate, resolve_config, write_clip
from components.synth.scenes import render_scene

# evidently's imports raise deprecation warnings from its web-UI dependencies; they are not ours to fix
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")
SETTINGS = DriftParams(alpha=0.01, min_clips=5)
LAYOUT_COLUMNS = {"video_width", "video_height", "video_fps", "video_duration_s"}


def train_only(size: str = "tiny", **knobs: object):
    """The synth preset with only its training clips (what a reference and a same-kind current set hold)."""
    cfg = resolve_config(size, **knobs)
    return replace(cfg, clips={part: (counts[0], 0, 0) for part, counts in cfg.clips.items()})


def darken(root: Path, factor: float) -> None:
    """Scale every frame image of an AVSBench folder by `factor` (masks untouched)."""
    for path in root.rglob("*"):
        if path.suffix in (".png", ".jpg") and ("visual_frames" in path.parts or "frames" in path.parts):
            pixels = np.asarray(Image.open(path).convert("RGB"), dtype=np.float32) * factor
            Image.fromarray(pixels.round().astype(np.uint8)).save(path, **({"quality": 92} if path.suffix == ".jpg"
                                                                            else {}))


def write_s4(root: Path, clips: list[SynthClip]) -> None:
    """Write S4 clips and their metadata CSV under `root`."""
    rows = [write_clip(root, clip) for clip in clips]
    pd.DataFrame(rows).to_csv(root / "AVSBench_object" / "Single-source" / "s4_meta_data.csv", index=False)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Reference folder: descriptors of the tiny synthetic training clips, seed 0 (14 clips, all subsets)."""
    base = tmp_path_factory.mktemp("drift")
    generate(base / "data", train_only(), seed=0)
    build_reference(base / "data", base / "reference")
    return base / "reference"


# -- descriptors ----------------------------------------------------------------------------------------------

def test_audio_descriptors_measure_what_they_say() -> None:
    t = np.arange(5 * 16000) / 16000
    tone = 0.1 * np.sin(2 * np.pi * 1000 * t)  # RMS 0.0707 -> -23 dBFS
    d = audio_descriptors(tone, 16000)
    assert d["audio_loudness_db"] == pytest.approx(-23.0, abs=0.1)
    assert d["audio_centroid_hz"] == pytest.approx(1000, abs=15)
    assert d["audio_silence_ratio"] == 0.0
    # all the energy sits in the mel group that holds 1 kHz, which reads the clip's loudness
    assert max(d[f"audio_mel_db_{g}"] for g in range(8)) == pytest.approx(-23.0, abs=0.5)
    half = np.concatenate([tone[: len(tone) // 2], np.zeros(len(tone) // 2)])
    assert audio_descriptors(half, 16000)["audio_silence_ratio"] == pytest.approx(0.5, abs=0.02)
    noise = np.random.default_rng(0).standard_normal(5 * 16000) * 0.1
    assert audio_descriptors(noise, 16000)["audio_bandwidth_hz"] > 10 * d["audio_bandwidth_hz"]
    # any rate and channel count: 44.1 kHz stereo of the same tone reads the same
    t44 = np.arange(5 * 44100) / 44100
    stereo = np.stack([0.1 * np.sin(2 * np.pi * 1000 * t44)] * 2).astype(np.float32)
    d44 = audio_descriptors(torch.from_numpy(stereo), 44100)
    assert d44["audio_centroid_hz"] == pytest.approx(1000, abs=15)
    assert d44["audio_loudness_db"] == pytest.approx(-23.0, abs=0.2)
    silent = audio_descriptors(np.zeros(10), 16000)
    assert silent["audio_silence_ratio"] == 1.0 and all(math.isfinite(v) for v in silent.values())


def test_video_descriptors_measure_what_they_say() -> None:
    grey = np.full((3, 3, 48, 64), 128, np.uint8)
    d = video_descriptors(grey, fps=25.0, duration=3.0)
    assert d["video_brightness"] == pytest.approx(128 / 255, abs=1e-3)
    assert d["video_contrast"] == pytest.approx(0, abs=1e-4) and d["video_sharpness"] == pytest.approx(0, abs=1e-6)
    assert d["video_saturation"] == pytest.approx(0, abs=1e-6)
    assert (d["video_width"], d["video_height"], d["video_fps"], d["video_duration_s"]) == (64, 48, 25, 3)
    red = np.zeros((1, 3, 32, 32), np.uint8)
    red[:, 0] = 200
    assert video_descriptors(red)["video_saturation"] == pytest.approx(1.0)
    assert math.isnan(video_descriptors(red)["video_fps"])
    # colour statistics do not depend on the resolution: the same picture (colour blocks) at 4x
    blocks = np.random.default_rng(0).integers(0, 256, (2, 3, 10, 12), dtype=np.uint8)
    small = blocks.repeat(8, axis=2).repeat(8, axis=3)
    big = small.repeat(4, axis=2).repeat(4, axis=3)
    a, b = video_descriptors(small), video_descriptors(big)
    for col in ("video_brightness", "video_saturation"):
        assert a[col] == pytest.approx(b[col], abs=0.02)
    with pytest.raises(ValueError, match="uint8"):
        video_descriptors(small.astype(np.float32))


def test_prediction_descriptors_and_describe_columns() -> None:
    fg = torch.zeros(2, 10, 10)
    fg[:, :5] = 0.9  # half the pixels sound
    cm = torch.zeros(2, 10, 10, dtype=torch.long)
    cm[:, :5, :4] = AVSS_CLASSES.index("dog")
    cm[:, :5, 4:] = AVSS_CLASSES.index("piano")
    d = prediction_descriptors(fg, cm)
    assert d["pred_sounding_area"] == pytest.approx(0.5)
    assert d["pred_confidence"] == pytest.approx(0.95)
    assert d["pred_sounding_objects"] == 2
    assert d["pred_share_dog"] == pytest.approx(0.4) and d["pred_share_piano"] == pytest.approx(0.6)
    assert math.isnan(prediction_descriptors(fg, None)["pred_share_dog"])
    row = describe(np.zeros((1, 3, 8, 8), np.uint8), np.zeros(16000), 16000)
    assert list(row) == list(DESCRIPTOR_COLUMNS)
    assert all(math.isnan(row[c]) for c in DESCRIPTOR_COLUMNS if c.startswith("pred_"))


# -- the drift rule on synthetic sets ---------------------------------------------------------------------------

def test_same_distribution_reports_no_drift_in_at_least_9_of_10_seeds(reference: Path, tmp_path: Path) -> None:
    ref = read_table(reference)
    alarms = []
    for seed in range(1, 11):
        generate(tmp_path / f"s{seed}", train_only(), seed=seed)
        summary = decide(ref, read_source(tmp_path / f"s{seed}"), SETTINGS)
        if summary["drift"]:
            alarms.append(summary["verdict"])
        shutil.rmtree(tmp_path / f"s{seed}")
    assert len(alarms) <= 1, alarms


def test_darker_frames_drift_in_brightness(reference: Path, tmp_path: Path) -> None:
    generate(tmp_path / "dark", train_only(), seed=1)
    darken(tmp_path / "dark", 0.6)
    summary = decide(read_table(reference), read_source(tmp_path / "dark"), SETTINGS)
    assert summary["drift"]
    assert "video_brightness" in summary["drifted_columns"]
    assert all(c.startswith("video_") and c not in LAYOUT_COLUMNS for c in summary["drifted_columns"]), summary
    assert "video_brightness" in summary["verdict"] and summary["verdict"].startswith("drift: DRIFT")


def test_louder_noise_drifts_in_audio_columns(reference: Path, tmp_path: Path) -> None:
    generate(tmp_path / "noisy", train_only(noise_level=1.0), seed=2)  # the reference has 0.1
    summary = decide(read_table(reference), read_source(tmp_path / "noisy"), SETTINGS)
    assert summary["drift"]
    assert summary["drifted_columns"] and all(c in AUDIO_COLUMNS for c in summary["drifted_columns"]), summary


def test_a_class_unseen_in_training_drifts_in_spectral_columns(tmp_path: Path) -> None:
    # reference: S4 training clips of the tiny preset's four categories (siren, baby, gun, cat)
    cfg = replace(SIZES["tiny"], clips={"s4": (16, 0, 0)})
    generate(tmp_path / "train", cfg, seed=0)
    build_reference(tmp_path / "train", tmp_path / "reference")
    seen = [AVSS_CLASSES.index(c) for c in ("emergency-car", "baby", "gun", "cat")]
    violin = AVSS_CLASSES.index("violin")

    def clips(source: list[int] | None, seed: int) -> list[SynthClip]:
        out = []
        for i in range(16):
            rng = np.random.default_rng([seed, i])
            sounding = source or [seen[i % 4]]
            others = [c for c in seen if c not in sounding]
            scene = render_scene(rng, sounding, [int(c) for c in rng.choice(others, 2, replace=False)], 5, 64, 64, 0.1)
            category = "playing_violin" if source else "cat_meowing"
            out.append(SynthClip("s4", "test", f"clip{seed}x{i:03d}_1", category, scene))
        return out

    write_s4(tmp_path / "unseen", clips([violin], 7))  # the same scenes, but the violin sounds
    summary = decide(read_table(tmp_path / "reference"), read_source(tmp_path / "unseen"), SETTINGS)
    assert summary["drift"]
    assert "audio_centroid_hz" in summary["drifted_columns"]
    assert not LAYOUT_COLUMNS & set(summary["drifted_columns"]), summary
    write_s4(tmp_path / "seen", clips(None, 7))  # control: seen classes, same recipe
    assert not decide(read_table(tmp_path / "reference"), read_source(tmp_path / "seen"), SETTINGS)["drift"]


# -- the command -------------------------------------------------------------------------------------------------

def _params(tmp_path: Path, **drift: object) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(json.dumps({"drift": {"alpha": 0.01, "min_clips": 5, **drift}}))  # JSON is YAML
    return path


def test_cli_reports_drift_with_exit_code_html_and_json(reference: Path, tmp_path: Path, capsys) -> None:
    generate(tmp_path / "dark", train_only(), seed=3)
    darken(tmp_path / "dark", 0.5)
    out = tmp_path / "report"
    args = ["drift", "--reference", str(reference), "--current", str(tmp_path / "dark"), "--out", str(out),
            "--params", str(_params(tmp_path))]
    assert main(args) == 1
    line = capsys.readouterr().out.strip()
    assert line.startswith("drift: DRIFT in ") and "video_brightness" in line and "\n" not in line
    names = {p.name for p in out.iterdir()}
    assert {"report.html", "summary.json", "summary.html", "evidently.json", "descriptors.csv"} <= names
    summary = json.loads((out / "summary.json").read_text())
    assert summary["drift"] and "video_brightness" in summary["drifted_columns"] and not summary["notes"]
    # evidently ran the same KS tests at the same corrected threshold and failed the brightness test
    ev = json.loads((out / "evidently.json").read_text())
    failed = {t["metric_config"]["params"].get("column") for t in ev["tests"] if t["status"] == "FAIL"}
    assert set(summary["drifted_columns"]) <= failed
    assert "video_brightness" in (out / "report.html").read_text()
    # the same folder again, on an undisturbed set: replaced whole, exit 0
    generate(tmp_path / "same", train_only(), seed=4)
    args[4] = str(tmp_path / "same")
    assert main(args) == 0
    assert capsys.readouterr().out.startswith("drift: no drift")
    assert not json.loads((out / "summary.json").read_text())["drift"]
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary folders left


def test_clear_errors(reference: Path, tmp_path: Path, capsys) -> None:
    params = str(_params(tmp_path))

    def run(current: Path, ref: Path = reference) -> tuple[int, str]:
        code = main(["drift", "--reference", str(ref), "--current", str(current), "--out", str(tmp_path / "o"),
                     "--params", params])
        return code, capsys.readouterr().err

    (tmp_path / "empty").mkdir()
    code, err = run(tmp_path / "empty")
    assert code == 2 and "empty" in err and "no video files" in err
    code, err = run(tmp_path / "missing")
    assert code == 2 and "no such file" in err
    # a reference built with another descriptor version
    old = tmp_path / "old_reference"
    shutil.copytree(reference, old)
    meta = json.loads((old / TABLE_META).read_text())
    (old / TABLE_META).write_text(json.dumps({**meta, "descriptor_version": DESCRIPTOR_VERSION - 1}))
    generate(tmp_path / "cur", train_only(), seed=5)
    code, err = run(tmp_path / "cur", old)
    assert code == 2 and f"descriptor version {DESCRIPTOR_VERSION - 1}" in err and "rebuild" in err
    code, err = run(tmp_path / "cur", tmp_path / "empty")
    assert code == 2 and "not a descriptor table" in err
    # too few clips for a test with any power
    few = main(["drift", "--reference", str(reference), "--current", str(tmp_path / "cur"), "--out",
                str(tmp_path / "o"), "--params", str(_params(tmp_path, min_clips=100))])
    assert few == 2 and "at least 100" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _videos(folder: Path, data: Path) -> int:
    """Encode every training clip of the AVSBench folder `data` as an mp4 (5 fps, AAC) under `folder`."""
    from components.avsbench.reader import AVSBenchDataset
    from components.media import encode_video

    count = 0
    for subset in ("s4", "ms3", "avss"):
        for clip in AVSBenchDataset(data, subset, "train"):
            path = folder / subset / f"{clip.files.clip_id}.mp4"
            path.parent.mkdir(parents=True, exist_ok=True)
            encode_video(path, clip.frames.repeat_interleave(5, 0), 5, clip.waveform, clip.sample_rate)
            count += 1
    return count


def test_video_folder_matches_its_avsbench_twin_and_skips_unreadable_files(reference: Path, tmp_path: Path,
                                                                            capsys) -> None:
    generate(tmp_path / "data", train_only(), seed=6)
    count = _videos(tmp_path / "videos", tmp_path / "data")
    (tmp_path / "videos" / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not really a video")
    (tmp_path / "videos" / "notes.txt").write_text("not a video, not counted")
    table = read_source(tmp_path / "videos")
    assert len(table.rows) == count and len(table.skipped) == 1 and table.skipped[0].startswith("broken.mp4")
    row = table.rows[table.rows["clip"].str.startswith("s4/")].iloc[0]
    assert row["video_fps"] == pytest.approx(5.0) and row["video_duration_s"] == pytest.approx(5.0, abs=0.1)
    assert (row["video_width"], row["video_height"]) == (64, 64)
    assert row["audio_silence_ratio"] == 0.0  # the AAC padding at the end is not read as silence
    with pytest.raises(StepError, match=r"broken\.mp4.*--strict"):
        read_source(tmp_path / "videos", strict=True)
    # decoded videos of the same kind of clips do not drift from the AVSBench reference; the CLI names the
    # skipped file and counts it; the frame rate is unknown in AVSBench and left out
    code = main(["drift", "--reference", str(reference), "--current", str(tmp_path / "videos"), "--out",
                 str(tmp_path / "o"), "--params", str(_params(tmp_path, min_clips=10))])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "skipped broken.mp4" in captured.err and "1 unreadable clip(s) skipped" in captured.err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["current"]["skipped"] == 1 and "video_fps" in summary["left_out"]


# -- the live log ------------------------------------------------------------------------------------------------

def _append_many(args: tuple[str, int]) -> None:
    path, worker = args
    for i in range(40):
        append_jsonl(Path(path), {"descriptor_version": DESCRIPTOR_VERSION, "clip": f"{worker}-{i}",
                                  "payload": "x" * 5000, "audio_loudness_db": float(i)})


def test_log_lines_never_interleave_across_processes(tmp_path: Path) -> None:
    log = tmp_path / "drift.jsonl"
    with multiprocessing.get_context("fork").Pool(4) as pool:
        pool.map(_append_many, [(str(log), w) for w in range(4)])
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(records) == 160 and len({r["clip"] for r in records}) == 160


def test_jsonl_log_as_current_source(reference: Path, tmp_path: Path, capsys) -> None:
    from components.avsbench.reader import AVSBenchDataset

    class Result:  # what components.infer.Segmenter.predict returns, for the fields the log uses
        def __init__(self, t: int, h: int, w: int):
            self.foreground = torch.full((t, h, w), 0.8)
            self.class_map = torch.full((t, h, w), AVSS_CLASSES.index("dog"))

    generate(tmp_path / "data", train_only(), seed=8)
    log = tmp_path / "serve" / "drift.jsonl"
    for subset in ("s4", "ms3", "avss"):
        for clip in AVSBenchDataset(tmp_path / "data", subset, "train"):
            record = log_request(log, clip.frames, clip.waveform, clip.sample_rate,
                                 result=Result(*clip.target.shape), class_names=AVSS_CLASSES, fps=25.0,
                                 request_id=clip.files.key)
            assert record["pred_share_dog"] == 1.0 and record["descriptor_version"] == DESCRIPTOR_VERSION
            assert record["video_duration_s"] == clip.frames.shape[0]  # defaults to the audio's length
    with log.open("a") as fh:
        fh.write('{"descriptor_version": 0, "clip": "from an older release"}\n')
        fh.write('{"descriptor_version": 1, "clip": "torn')  # a crash mid-line
    table = read_source(log)
    assert len(table.rows) == 14 and len(table.skipped) == 2
    assert "descriptor version 0" in table.skipped[0] and ":16:" in table.skipped[1]
    assert table.rows["pred_share_dog"].eq(1.0).all() and table.rows["video_fps"].eq(25.0).all()
    # compared with the AVSBench reference: same clips' kind -> no drift; fps and predictions are not compared
    code = main(["drift", "--reference", str(reference), "--current", str(log), "--out", str(tmp_path / "o"),
                 "--params", str(_params(tmp_path)), "--last", "10"])
    captured = capsys.readouterr()
    assert code == 0, captured
    assert "drift: no drift" in captured.out and "2 unreadable clip(s) skipped" in captured.err
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["current"]["clips"] == 10 and "video_fps" in summary["left_out"] and "pred_*" in summary["left_out"]
    assert main(["drift", "--reference", str(reference), "--current", str(log), "--out", str(tmp_path / "o"),
                 "--params", str(_params(tmp_path)), "--strict"]) == 2
    assert "descriptor version 0" in capsys.readouterr().err


# -- with a model -------------------------------------------------------------------------------------------------

def _random_models(folder: Path) -> Path:
    """A models folder (stage1/best.pt, stage2/best.pt) of untrained tiny networks, as `avs train` writes them."""
    from model import create_model

    torch.manual_seed(0)
    for stage, classes, prior in (("stage1", 2, False), ("stage2", len(AVSS_CLASSES), True)):
        net = create_model("tiny", num_classes=classes, prior=prior)
        (folder / stage).mkdir(parents=True)
        torch.save({"model": net.state_dict(), "model_config": net.cfg.to_dict(), "train_config": {"input_size": 64}},
                   folder / stage / "best.pt")
    return folder


@pytest.mark.slow
def test_model_predictions_are_described_and_compared(tmp_path: Path, capsys) -> None:
    cfg = replace(SIZES["tiny"], clips={"s4": (6, 0, 6)})
    generate(tmp_path / "data", cfg, seed=0)
    models = _random_models(tmp_path / "models")
    assert main(["drift-reference", "--data", str(tmp_path / "data"), "--out", str(tmp_path / "ref"),
                 "--model", str(models)]) == 0
    assert "with predictions" in capsys.readouterr().out
    ref = read_table(tmp_path / "ref")
    assert ref.has_predictions and ref.model["classes"] == len(AVSS_CLASSES)
    assert ref.rows[["pred_sounding_area", "pred_confidence", "pred_sounding_objects"]].notna().all().all()
    shares = ref.rows[[c for c in DESCRIPTOR_COLUMNS if c.startswith("pred_share_")]]
    assert np.allclose(shares.sum(1)[ref.rows["pred_sounding_area"] > 0], 1.0, atol=1e-6)
    code = main(["drift", "--reference", str(tmp_path / "ref"), "--current", str(tmp_path / "data"), "--split", "test",
                 "--out", str(tmp_path / "o"), "--model", str(models), "--params", str(_params(tmp_path))])
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    # test clips of the same generator as the reference's training clips: no drift, and the exit code says so
    assert summary["drift"] is False and code == 0, summary["verdict"]
    assert "pred_confidence" in summary["columns"] and summary["current"]["model"]["sha256"]
    # a reference without predictions cannot be compared on predictions
    build_reference(tmp_path / "data", tmp_path / "plain")
    code = main(["drift", "--reference", str(tmp_path / "plain"), "--current", str(tmp_path / "data"),
                 "--out", str(tmp_path / "o2"), "--model", str(models), "--params", str(_params(tmp_path))])
    assert code == 2 and "no prediction descriptors" in capsys.readouterr().err


def test_descriptor_columns_are_stable() -> None:
    # changing a column's meaning needs a DESCRIPTOR_VERSION bump; this pins the names and their order
    assert DESCRIPTOR_VERSION == 1
    assert len(AUDIO_COLUMNS) == 12 and len(VIDEO_COLUMNS) == 8 and len(DESCRIPTOR_COLUMNS) == 12 + 8 + 3 + 70


def _random_table(rng: np.random.Generator, clips: int, shift: float = 0.0) -> DescriptorTable:
    """Descriptor rows of `clips` clips whose audio and video columns are independent draws of one continuous
    distribution (+ `shift`); no predictions."""
    rows = pd.DataFrame({c: [f"c{i}" for i in range(clips)] for c in META_COLUMNS})
    for col in DESCRIPTOR_COLUMNS:
        rows[col] = rng.normal(shift, 1.0, clips) if col in AUDIO_COLUMNS + VIDEO_COLUMNS else np.nan
    return DescriptorTable(rows, "table", "random")


def test_the_false_alarm_rate_is_at_most_alpha_and_a_real_shift_is_found() -> None:
    """400 pairs of sets from one distribution: the family-wise false-alarm rate (alpha 0.01) stays near 1%
    (at most 10 alarms: a 10% rate would give about 40, a 2.5% rate 10 on average); a shift of one
    standard deviation in every column is found in almost every pair."""
    rng = np.random.default_rng(0)
    alarms = sum(decide(_random_table(rng, 40), _random_table(rng, 40), SETTINGS)["drift"] for _ in range(400))
    assert alarms <= 10, f"{alarms} false alarms in 400 (alpha {SETTINGS.alpha})"
    found = sum(decide(_random_table(rng, 40), _random_table(rng, 40, shift=1.0), SETTINGS)["drift"]
                for _ in range(50))
    assert found >= 45, found
