"""`avs predict` on video files, `avs export-video`, the overlay drawing and frame sampling at any rate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from components.cli import main
from components.media import decode_audio, decode_video, encode_video

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py




def _streams(path: Path) -> dict[str, tuple[int, float]]:
    """{"video"/"audio": (frames or packets, seconds)} of a media file."""
    with av.open(str(path)) as container:
        out = {}
        for stream in container.streams:
            frames = sum(1 for _ in container.decode(stream)) if stream.type == "video" else stream.frames
            container.seek(0)
            seconds = float(stream.duration * stream.time_base) if stream.duration else 0.0
            out[stream.type] = (frames, seconds)
        return out


def _moving_video(path: Path, seconds: int, fps: int = 10, size: tuple[int, int] = (64, 80)) -> None:
    """A video whose frames show a square that moves every second, with a tone."""
    frames = torch.full((seconds * fps, 3, *size), 60, dtype=torch.uint8)
    for i in range(seconds * fps):
        x = (i // fps) * 3 % (size[1] - 16)
        frames[i, :, 20:36, x:x + 16] = torch.tensor([230, 40, 40], dtype=torch.uint8)[:, None, None]
    t = torch.arange(seconds * 16000) / 16000
    encode_video(path, frames, fps, 0.2 * torch.sin(2 * math.pi * 440 * t), 16000)


def test_decode_video_samples_any_rate(tmp_path: Path) -> None:
    """rate N gives the frame on screen at k / N s, for k up to N x the duration."""
    frames = torch.zeros(30, 3, 32, 32, dtype=torch.uint8)
    for i in range(30):
        frames[i, 0] = i * 8                       # frame i on screen from i / 10 s
    encode_video(tmp_path / "v.mp4", frames, 10, 0.1 * torch.randn(48000), 16000)
    for rate, expected in ((1, [0, 10, 20]), (5, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28])):
        media = decode_video(tmp_path / "v.mp4", rate=rate)
        red = media.frames[:, 0].float().mean((1, 2)) / 8
        assert media.frames.shape[0] == 3 * rate and media.rate == rate
        assert red.round().tolist() == expected


def test_overlay_draws_classes_and_legend() -> None:
    from components.avsbench.classes import AVSS_CLASSES
    from components.overlay import class_colours, draw_overlay

    frame = np.full((120, 160, 3), 100, np.uint8)
    labels = np.zeros((120, 160), np.int64)
    labels[60:100, 80:140] = 7
    drawn = draw_overlay(frame, labels, AVSS_CLASSES)
    assert drawn.shape == frame.shape and (drawn[:, :60] != 100).any()          # the legend, top left
    inside = drawn[70:90, 90:130].reshape(-1, 3).astype(float)
    expected = 0.45 * 100 + 0.55 * class_colours(len(AVSS_CLASSES))[7]
    assert np.allclose(inside, expected, atol=1)                               # tinted with class 7's colour
    assert (drawn[105:, 140:] == 100).all()                                    # background untouched
    assert (draw_overlay(frame, np.zeros_like(labels), AVSS_CLASSES) == frame).all()
    with pytest.raises(ValueError, match="does not match"):
        draw_overlay(frame, labels[:10], AVSS_CLASSES)


@pytest.mark.slow
def test_predict_equals_the_segmenter_on_the_clip(models: dict, tmp_path: Path) -> None:
    """An exported synthetic test clip: `avs predict`'s masks are those of Segmenter on the clip's own
    frames and WAV (within codec noise), and the model's prediction is not constant."""
    from components.export_video import clip_frames, find_clip
    from components.infer import Segmenter
    from components.serve.client import masks_of

    clip = find_clip(models["data"], subset="s4", split="test")
    video = tmp_path / "clip.mp4"
    assert main(["export-video", "--data", str(models["data"]), "--clip", clip.key, "--out", str(video),
                 "--fps", "5"]) == 0   # 360 px high (4:2:0 chroma would smear the stored 64 px frames)
    out = tmp_path / "out"
    assert main(["predict", str(video), "--model", str(models["folder"]), "--out", str(out),
                 "--params", str(models["params"])]) == 0
    answer = json.loads((out / "clip.json").read_text())
    frames = torch.from_numpy(clip_frames(clip, 360)).permute(0, 3, 1, 2).contiguous()   # what was encoded
    local = Segmenter(models["stage1"], models["stage2"], maskige_size=64).predict(frames, decode_audio(clip.audio),
                                                                                   16000)
    truth = local.foreground > 0.5
    assert 0.01 < truth.float().mean() < 0.9, "the fixture model predicts a constant map"
    got = torch.from_numpy(np.stack([m["foreground"] for m in masks_of(answer)]))
    assert answer["num_frames"] == len(clip.frames) == got.shape[0]
    iou = (got & truth).sum() / (got | truth).sum()
    assert iou >= 0.95, f"IoU {iou:.3f} between avs predict and Segmenter"
    assert [f["time"] for f in answer["frames"]] == [float(k) for k in range(len(clip.frames))]
    streams = _streams(out / "clip.overlay.mp4")
    assert streams["video"][0] == len(clip.frames) and "audio" in streams


@pytest.mark.slow
def test_predict_at_5_fps_long_videos_and_bad_files(models: dict, tmp_path: Path) -> None:
    """--fps 5 on a 5 s clip: 25 masks and a 25-frame overlay with audio; a 23 s video goes in windows with a
    mask for every second; an undecodable file is named and skipped, the others still processed, exit 1."""
    short, long, bad = tmp_path / "short.mp4", tmp_path / "long.mp4", tmp_path / "broken.mp4"
    _moving_video(short, 5)
    _moving_video(long, 23)
    bad.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    code = main(["predict", str(short), str(bad), str(long), "--model", str(models["folder"]), "--out", str(out),
                 "--params", str(models["params"]), "--fps", "5", "--window", "4"])
    assert code == 1
    assert not list(out.glob("broken*"))
    answer = json.loads((out / "short.json").read_text())
    assert answer["num_frames"] == 25 and len(answer["frames"]) == 25 and answer["windows"] == 2
    assert [f["time"] for f in answer["frames"]] == [round(k / 5, 4) for k in range(25)]
    streams = _streams(out / "short.overlay.mp4")
    assert streams["video"][0] == 25 and streams["video"][1] == pytest.approx(5.0, abs=0.05)
    assert streams["audio"][1] == pytest.approx(5.0, abs=0.1)
    answer = json.loads((out / "long.json").read_text())
    assert answer["num_frames"] == 115 and answer["windows"] == 6
    seconds = {int(f["time"]) for f in answer["frames"] if f["mask"]}
    assert seconds == set(range(23))
    # a window hears the audio at its frames' own times: its log-mel inputs are rows of the whole video's
    from components.infer import Segmenter

    segmenter = Segmenter(models["stage1"], models["stage2"], maskige_size=64)
    media = decode_video(long, rate=1)
    whole = segmenter.prepare(media.frames, media.waveform, 16000)
    window = segmenter.prepare(media.frames[8:12], media.waveform, 16000, times=[8.0, 9.0, 10.0, 11.0])
    assert torch.equal(window.audio, whole.audio[8:12]) and not torch.equal(window.audio, whole.audio[:4])
    # --strict stops at the broken file, naming it
    assert main(["predict", str(bad), "--model", str(models["folder"]), "--out", str(tmp_path / "strict"),
                 "--strict"]) == 2


def test_predict_and_export_refuse_bad_arguments(tmp_path: Path, capsys) -> None:
    video = tmp_path / "v.mp4"
    _moving_video(video, 1)
    assert main(["predict", str(video), "--model", str(tmp_path / "nothing"), "--out", str(tmp_path / "o")]) == 2
    assert "nothing: no such model" in capsys.readouterr().err
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "v.mp4").write_bytes(video.read_bytes())
    assert main(["predict", str(video), str(tmp_path / "a" / "v.mp4"), "--model", str(tmp_path),
                 "--out", str(tmp_path / "o")]) == 2
    assert "would both write v.json" in capsys.readouterr().err
    assert main(["export-video", "--data", str(tmp_path), "--out", str(tmp_path / "x.mp4")]) == 2
    assert "no AVSBench clips" in capsys.readouterr().err
