"""Serving: media decoding, in-process inference, the TorchServe handler, packaging, and a real TorchServe
process on loopback answering every bad input with a JSON 4xx and then a good request."""

from __future__ import annotations

import io
import math

import pytest
import torch

from components.media import MediaError, decode_audio, decode_images, decode_video, encode_video


def _clip(seconds: float = 3.0, fps: int = 10, size: tuple[int, int] = (64, 96), rate: int = 22050,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames uint8 [N, 3, H, W] whose red channel encodes the second they belong to, and a stereo tone."""
    n = round(seconds * fps)
    frames = torch.zeros(n, 3, *size, dtype=torch.uint8)
    for i in range(n):
        frames[i, 0] = (i // fps) * 40
        frames[i, 1] = 200
    t = torch.arange(round(seconds * rate)) / rate
    tone = 0.3 * torch.sin(2 * math.pi * 440 * t)
    return frames, torch.stack([tone, tone])


def _video(container: str = "mp4", audio: bool = True, **kwargs) -> bytes:
    frames, wave = _clip(**kwargs)
    buf = io.BytesIO()
    encode_video(buf, frames, kwargs.get("fps", 10), wave if audio else None, kwargs.get("rate", 22050), container)
    return buf.getvalue()


@pytest.mark.parametrize("container", ["mp4", "webm", "mkv"])
def test_decode_video_one_frame_per_second(container: str, tmp_path) -> None:
    path = tmp_path / f"clip.{container}"
    path.write_bytes(_video(container, seconds=3.0))
    media = decode_video(path)
    assert media.frames.dtype == torch.uint8 and tuple(media.frames.shape) == (3, 3, 64, 96)
    # frame k is the one on screen at k seconds: its red channel says which second it came from
    assert [round(v / 40) for v in media.frames[:, 0, 10, 10].tolist()] == [0, 1, 2]
    assert media.sample_rate == 16000 and media.waveform.dtype == torch.float32 and media.waveform.ndim == 1
    assert abs(media.waveform.numel() / 16000 - 3.0) < 0.1
    assert media.fps == pytest.approx(10) and media.duration == pytest.approx(3.0, abs=0.1)
    assert (media.width, media.height) == (96, 64)
    assert decode_video(path.read_bytes()).frames.shape == media.frames.shape  # bytes work as well as paths


def test_decode_video_errors(tmp_path) -> None:
    cases = {
        "undecodable": b"this is not a video" * 50,
        "no_audio": _video(audio=False),
        "too_long": _video(seconds=4.0),
    }
    for kind, data in cases.items():
        with pytest.raises(MediaError) as info:
            decode_video(data, max_seconds=3, name="upload.mp4")
        assert info.value.kind == kind and "upload.mp4" in str(info.value)
    truncated = _video()[:2000]
    with pytest.raises(MediaError, match=r"upload\.mp4") as info:
        decode_video(truncated, name="upload.mp4")
    assert info.value.kind == "undecodable"
    audio_only = io.BytesIO()
    import av

    with av.open(audio_only, "w", format="wav") as out:
        stream = out.add_stream("pcm_s16le", rate=16000)
        frame = av.AudioFrame.from_ndarray(torch.zeros(1, 16000, dtype=torch.int16).numpy(), format="s16",
                                           layout="mono")
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode())
    with pytest.raises(MediaError) as info:
        decode_video(audio_only.getvalue())
    assert info.value.kind == "no_frames"
    assert decode_audio(audio_only.getvalue()).numel() == 16000
    with pytest.raises(MediaError) as info:
        decode_video(tmp_path / "missing.mp4")
    assert info.value.kind == "undecodable" and "missing.mp4" in str(info.value)


def test_decode_images() -> None:
    from PIL import Image

    def png(w: int, h: int) -> bytes:
        buf = io.BytesIO()
        Image.new("RGB", (w, h), (10, 20, 30)).save(buf, format="PNG")
        return buf.getvalue()

    frames = decode_images([png(40, 32), png(40, 32)])
    assert frames.dtype == torch.uint8 and tuple(frames.shape) == (2, 3, 32, 40) and frames[1, 2, 0, 0] == 30
    for images, kind in (([], "no_frames"), ([png(40, 32), b"junk"], "undecodable"),
                         ([png(40, 32), png(32, 32)], "bad_frames")):
        with pytest.raises(MediaError) as info:
            decode_images(images)
        assert info.value.kind == kind
