"""Decoding user media into model inputs: one video file, or separate frames and an audio file.

API (every decoder raises `MediaError`, a `StepError`, whose `kind` says what was wrong):

    from components.media import decode_video, decode_images, decode_audio
    media = decode_video("clip.mp4", max_seconds=20)   # path, bytes or binary file object (mp4/webm/mkv/...)
    media.frames       # uint8 [T, 3, H, W]: one frame per second, frame k is the one on screen at k s
    media.waveform     # float32 [N]: the audio track mixed to mono, resampled to 16 kHz
    media.sample_rate  # 16000
    media.fps, media.duration, media.width, media.height   # of the source video stream
    frames = decode_images([png_bytes, ...])      # uint8 [T, 3, H, W]
    wave = decode_audio(wav_bytes)                # float32 [N] at 16 kHz mono
    encode_video("out.mp4", frames, fps, waveform, sample_rate)   # the reverse, for tests and benchmarks

Kinds: "undecodable" (not media PyAV/PIL can read), "no_audio" (no audio track, or an empty one),
"no_frames" (no video track or no decodable frame), "too_long" (longer than `max_seconds`),
"bad_frames" (frames of different sizes). Frame count T = whole seconds of video (at least 1): AVSBench
samples its 5- and 10-second clips at one frame per second the same way.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from components.common import StepError

SAMPLE_RATE = 16000
# A container's duration may round a 5 s clip down to 4.98 s: count a second that is this close to whole.
SECOND_TOLERANCE = 0.05

MediaSource = str | Path | bytes | bytearray | BinaryIO


class MediaError(StepError):
    """Media that cannot become model inputs; `kind` is one of MediaError.KINDS."""

    KINDS = ("undecodable", "no_audio", "no_frames", "too_long", "bad_frames")

    def __init__(self, message: str, kind: str):
        if kind not in self.KINDS:
            raise ValueError(f"unknown media error kind {kind!r}")
        super().__init__(message)
        self.kind = kind


@dataclass
class Media:
    """A decoded clip: frames uint8 [T, 3, H, W] (`rate` per second), waveform float32 [N] mono at
    `sample_rate` (16 kHz), and the source video's frame rate, duration (s) and resolution."""

    frames: torch.Tensor
    waveform: torch.Tensor
    sample_rate: int
    fps: float
    duration: float
    width: int
    height: int
    rate: float = 1.0

    @property
    def seconds(self) -> int:
        """Number of sampled frames T (whole seconds when sampled at one frame per second)."""
        return int(self.frames.shape[0])


def _open(source: MediaSource, name: str):
    import av

    if isinstance(source, bytes | bytearray):
        if not source:
            raise MediaError(f"{name}: empty payload", "undecodable")
        source = io.BytesIO(bytes(source))
    elif isinstance(source, str | Path):
        if not Path(source).is_file():
            raise MediaError(f"{name}: file not found", "undecodable")
        source = str(source)
    try:
        return av.open(source, mode="r")
    except (av.FFmpegError, ValueError, OSError, UnicodeDecodeError) as exc:
        raise MediaError(f"{name}: not a decodable media file ({exc})", "undecodable") from exc


def _seconds(count: float, tolerance: float = SECOND_TOLERANCE) -> int:
    return max(1, math.floor(count + tolerance))


def _stream_duration(stream, container) -> float | None:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / 1_000_000
    return None


def _check_length(seconds: float | None, max_seconds: float | None, name: str) -> None:
    if seconds is not None and max_seconds is not None and seconds > max_seconds + SECOND_TOLERANCE:
        raise MediaError(f"{name}: {seconds:.1f} s is longer than the maximum of {max_seconds:g} s", "too_long")


class _Resampler:
    """Any audio frame -> float32 mono 16 kHz samples, gathered in order."""

    def __init__(self) -> None:
        import av

        self._resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
        self.chunks: list[np.ndarray] = []

    def add(self, frame) -> None:
        for out in self._resampler.resample(frame):
            self.chunks.append(out.to_ndarray().reshape(-1))

    def finish(self) -> torch.Tensor:
        for out in self._resampler.resample(None):
            self.chunks.append(out.to_ndarray().reshape(-1))
        data = np.concatenate(self.chunks) if self.chunks else np.zeros(0, np.float32)
        return torch.from_numpy(data.astype(np.float32, copy=False))


def decode_video(source: MediaSource, max_seconds: float | None = 60.0, name: str | None = None,
                 rate: float = 1.0) -> Media:
    """Decode a video file with PyAV into `rate` frames per second (default one) and 16 kHz mono audio.

    source: a path, the file's bytes, or a binary file object (any container FFmpeg reads: mp4, webm,
    mkv, ...). max_seconds: longer videos raise MediaError("too_long") (None: no limit). name: how
    errors refer to the input (default: the path, or "video"). rate: sampled frames per second.
    Returns Media with frames uint8 [T, 3, H, W] (T = whole sampling periods in the video, at least 1;
    frame k = the frame on screen at k / rate seconds) and waveform float32 [N] at 16 kHz. Raises
    MediaError (kinds: undecodable, no_audio, no_frames, too_long).
    """
    if not rate > 0:
        raise ValueError(f"rate must be positive, got {rate}")
    import av

    name = name or (str(source) if isinstance(source, str | Path) else "video")
    container = _open(source, name)
    try:
        if not container.streams.video:
            raise MediaError(f"{name}: no video track (zero frames)", "no_frames")
        if not container.streams.audio:
            raise MediaError(f"{name}: no audio track", "no_audio")
        vstream, astream = container.streams.video[0], container.streams.audio[0]
        _check_length(_stream_duration(vstream, container), max_seconds, name)
        fps = float(vstream.average_rate or vstream.guessed_rate or 0.0)
        resampler = _Resampler()
        chosen: dict[int, np.ndarray] = {}       # second k -> RGB frame on screen at k s
        previous = None                          # (time, frame) of the last decoded video frame
        last_time, frame_count = 0.0, 0
        try:
            for packet in container.demux(vstream, astream):
                for frame in packet.decode():
                    if packet.stream.type == "audio":
                        resampler.add(frame)
                        continue
                    t = float(frame.time) if frame.time is not None else frame_count / (fps or 1.0)
                    _check_length(t, max_seconds, name)
                    if previous is not None:
                        _assign(chosen, previous, t, rate)
                    previous = (t if previous is not None else min(t, 0.0), frame)
                    last_time, frame_count = t, frame_count + 1
        except av.FFmpegError as exc:
            raise MediaError(f"{name}: the media stream is corrupt ({exc})", "undecodable") from exc
        if previous is None:
            raise MediaError(f"{name}: the video track holds zero frames", "no_frames")
        step = 1.0 / fps if fps > 0 else 0.0
        duration = max(last_time + step, _stream_duration(vstream, container) or 0.0)
        _check_length(duration, max_seconds, name)
        count = _seconds(duration * rate, SECOND_TOLERANCE * rate)
        _assign(chosen, previous, count / rate, rate)
        waveform = resampler.finish()
        if waveform.numel() == 0:
            raise MediaError(f"{name}: the audio track holds no samples", "no_audio")
        frames = torch.from_numpy(np.stack([chosen[k] for k in range(count)])).permute(0, 3, 1, 2).contiguous()
        return Media(frames, waveform, SAMPLE_RATE, fps, duration, vstream.codec_context.width,
                     vstream.codec_context.height, rate)
    finally:
        container.close()


def _assign(chosen: dict[int, np.ndarray], previous: tuple[float, object], until: float, rate: float = 1.0) -> None:
    """The previous frame is on screen from its time until `until`: it is the frame of each sample time
    k / rate in [time, until) not yet taken."""
    start, frame = previous
    first, stop = max(0, math.ceil(start * rate - 1e-9)), math.ceil(until * rate - 1e-9)
    if stop <= first:
        return
    rgb = None
    for k in range(first, stop):
        if k not in chosen:
            rgb = frame.to_ndarray(format="rgb24") if rgb is None else rgb
            chosen[k] = rgb


def decode_audio(source: MediaSource, max_seconds: float | None = 60.0, name: str | None = None) -> torch.Tensor:
    """Decode an audio file (WAV, FLAC, MP3, OGG, or a video's audio track) to float32 [N] mono at 16 kHz.

    Raises MediaError: undecodable, no_audio (no audio track or no samples), too_long.
    """
    import av

    name = name or (str(source) if isinstance(source, str | Path) else "audio")
    container = _open(source, name)
    try:
        if not container.streams.audio:
            raise MediaError(f"{name}: no audio track", "no_audio")
        stream = container.streams.audio[0]
        _check_length(_stream_duration(stream, container), max_seconds, name)
        resampler = _Resampler()
        try:
            for frame in container.decode(stream):
                resampler.add(frame)
        except av.FFmpegError as exc:
            raise MediaError(f"{name}: the audio stream is corrupt ({exc})", "undecodable") from exc
        waveform = resampler.finish()
    finally:
        container.close()
    if waveform.numel() == 0:
        raise MediaError(f"{name}: the audio holds no samples", "no_audio")
    _check_length(waveform.numel() / SAMPLE_RATE, max_seconds, name)
    return waveform


def decode_images(images: list[bytes], names: list[str] | None = None, max_pixels: int = 4096 * 4096) -> torch.Tensor:
    """Decode encoded frames (PNG, JPEG, WebP, ...) of one clip into uint8 [T, 3, H, W].

    names: how errors refer to each image (default "frame 0", "frame 1", ...). Raises MediaError:
    no_frames (empty list), undecodable (an image PIL cannot read, or one above `max_pixels`),
    bad_frames (images of different sizes).
    """
    from PIL import Image, UnidentifiedImageError

    names = names or [f"frame {i}" for i in range(len(images))]
    if not images:
        raise MediaError("no frames given (zero frames)", "no_frames")
    out = []
    for data, label in zip(images, names, strict=True):
        try:
            with Image.open(io.BytesIO(data)) as img:
                if img.width * img.height > max_pixels:
                    raise MediaError(f"{label}: {img.width}x{img.height} exceeds {max_pixels} pixels", "undecodable")
                out.append(np.asarray(img.convert("RGB")))
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
            raise MediaError(f"{label}: not a decodable image ({exc})", "undecodable") from exc
    sizes = {a.shape[:2] for a in out}
    if len(sizes) > 1:
        raise MediaError(f"frames differ in size ({', '.join(f'{w}x{h}' for h, w in sorted(sizes))})", "bad_frames")
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).contiguous()


CODECS = {"mp4": ("libx264", "aac"), "mkv": ("libx264", "aac"), "webm": ("libvpx", "libopus")}


# Audio codecs an mp4/mkv can hold as they are: `VideoWriter` copies such a source track unchanged.
COPYABLE_AUDIO = ("aac", "mp3", "alac")


class VideoWriter:
    """Write frames one at a time, with an audio track, as a video file.

    target: a path or a writable binary file object; fps: frames per second; size: (H, W), both even.
    Audio: `audio_from`, a media file whose first audio track is copied unchanged when its codec fits the
    container; otherwise `waveform` float [samples] or [channels, samples] at `sample_rate` is encoded (with
    `audio_from` and no `waveform`, the file's track is decoded for it). container: "mp4" (H.264 + AAC),
    "mkv" (H.264 + AAC) or "webm" (VP8 + Opus). quality: the video encoder's CRF (lower is better; None:
    the encoder's default). Use as a context manager, or call close() (which writes the audio and the index).
    """

    def __init__(self, target: str | Path | BinaryIO, fps: float, size: tuple[int, int],
                 waveform: torch.Tensor | None = None, sample_rate: int = SAMPLE_RATE,
                 audio_from: str | Path | None = None, container: str = "mp4", quality: int | None = None):
        import av

        if container not in CODECS:
            raise ValueError(f"container must be one of {', '.join(CODECS)}, got {container!r}")
        if size[0] % 2 or size[1] % 2:
            raise ValueError(f"frame size {size[0]}x{size[1]} must be even (yuv420p)")
        vcodec, acodec = CODECS[container]
        self._out = av.open(target if not isinstance(target, Path) else str(target), "w",
                            format={"mkv": "matroska"}.get(container, container))
        self._video = self._out.add_stream(vcodec, rate=Fraction(fps).limit_denominator(1001))
        self._video.width, self._video.height, self._video.pix_fmt = size[1], size[0], "yuv420p"
        if quality is not None:
            self._video.options = {"crf": str(quality)}
        self._size, self._source, self._audio, self._wave = size, None, None, None
        if audio_from is not None:
            source = av.open(str(audio_from))
            track = source.streams.audio[0] if source.streams.audio else None
            if track is not None and container != "webm" and track.codec_context.name in COPYABLE_AUDIO:
                self._source, self._audio = source, self._out.add_stream_from_template(track)
            else:
                source.close()
                if track is not None and waveform is None:   # the caller's decoded track serves when given
                    waveform, sample_rate = decode_audio(audio_from, max_seconds=None)[None], SAMPLE_RATE
        if self._source is None and waveform is not None:
            wave = torch.as_tensor(waveform, dtype=torch.float32)
            wave = wave[None] if wave.ndim == 1 else wave
            opus_rates = (8000, 12000, 16000, 24000, 48000)
            rate = 48000 if acodec == "libopus" and sample_rate not in opus_rates else sample_rate
            if rate != sample_rate:
                import torchaudio.functional as AF

                wave = AF.resample(wave, sample_rate, rate)
            self._audio = self._out.add_stream(acodec, rate=rate)
            self._audio.layout = "mono" if wave.shape[0] == 1 else "stereo"
            self._wave = wave[:2].numpy()

    def add(self, image: np.ndarray) -> None:
        """Append one frame: uint8 [H, W, 3] RGB at the writer's size."""
        import av

        if image.shape != (*self._size, 3) or image.dtype != np.uint8:
            raise ValueError(f"frame must be uint8 [{self._size[0]}, {self._size[1]}, 3], got {image.dtype} "
                             f"{tuple(image.shape)}")
        self._out.mux(self._video.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")))

    def close(self) -> None:
        """Flush the video, write the audio track, finish the file."""
        import av

        try:
            self._out.mux(self._video.encode())
            if self._source is not None:
                for packet in self._source.demux(self._source.streams.audio[0]):
                    if packet.dts is None:
                        continue
                    packet.stream = self._audio
                    self._out.mux(packet)
            elif self._audio is not None:
                size = self._audio.codec_context.frame_size or 1024
                for start in range(0, self._wave.shape[1], size):
                    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(self._wave[:, start:start + size]),
                                                       format="fltp", layout=self._audio.layout.name)
                    frame.sample_rate, frame.pts = self._audio.rate, start
                    self._out.mux(self._audio.encode(frame))
                self._out.mux(self._audio.encode())
        finally:
            self._out.close()
            if self._source is not None:
                self._source.close()

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def encode_video(target: str | Path | BinaryIO, frames: torch.Tensor, fps: float, waveform: torch.Tensor | None,
                 sample_rate: int = SAMPLE_RATE, container: str = "mp4") -> None:
    """Write frames and audio as a video file (the reverse of decode_video; tests and benchmarks use it).

    target: a path or a writable binary file object. frames: uint8 [N, 3, H, W] shown at `fps` (H, W even).
    waveform: float [samples] or [channels, samples] at `sample_rate` (None: no audio track).
    container: "mp4" (H.264 + AAC), "mkv" (H.264 + AAC) or "webm" (VP8 + Opus).
    """
    frames = torch.as_tensor(frames)
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.dtype != torch.uint8:
        raise ValueError(f"frames must be uint8 [N, 3, H, W], got {frames.dtype} {tuple(frames.shape)}")
    with VideoWriter(target, fps, tuple(frames.shape[-2:]), waveform, sample_rate, container=container) as writer:
        for image in frames.permute(0, 2, 3, 1).numpy():
            writer.add(image)
