"""`avs predict`: the trained model on any video files, offline, with an overlay video to look at.

    avs predict talk.mp4 street.webm --model models --out predictions/ --fps 5

For each video it writes `<name>.json`, the endpoint's answer (same schema: `components.serve.api`), and
`<name>.overlay.mp4`, the sampled frames with the sounding objects tinted by class and a legend, at the
sampling rate, with the video's own audio track. Inference is the endpoint's `Segmenter`.

How frames, audio and windows line up:
- `--fps N` samples the frame on screen at k / N seconds, k = 0, 1, ... (N = 1: what the model was
  trained on and what the endpoint answers).
- The frame at t seconds hears the 0.96 s log-mel example at position t of the clip's example grid (the
  0.96 s from 0.96 t s), so at N = 1 frame k hears example k exactly as in training; between whole
  seconds the example slides with t. Past the last whole example the last one is repeated (training's
  padding).
- A video longer than `--window` seconds (default 10, an AVSS clip) is cut into consecutive windows of
  round(window x N) frames; each window is one forward pass (GTAVM mixes over its frames), and hears
  the audio at its frames' own times, so every sampled frame gets a mask whatever the video's length.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from components.common import StepError, progress, write_json_atomic
from components.media import MediaError, decode_video
from components.overlay import overlay_video
from components.params import FeaturesParams

WINDOW_SECONDS = 10.0


@dataclass
class VideoOutcome:
    """What `avs predict` made of one video: its outputs, or why it failed."""

    video: Path
    json: Path | None = None
    overlay: Path | None = None
    frames: int = 0
    seconds: float = 0.0
    error: str | None = None
    timings: dict[str, float] = field(default_factory=dict)


def frame_windows(count: int, per_window: int) -> list[range]:
    """Consecutive frame index ranges of at most `per_window` frames covering 0..count-1."""
    if per_window < 1:
        raise ValueError(f"per_window must be at least 1, got {per_window}")
    return [range(start, min(start + per_window, count)) for start in range(0, count, per_window)]


def _merge_classes(found: dict[int, dict[str, Any]], window: list[dict[str, Any]], first_frame: int) -> None:
    """Fold one window's clip-level classes ({"id", "name", "score", "frames"}) into the video's."""
    for entry in window:
        seen = found.setdefault(entry["id"], {"id": entry["id"], "name": entry["name"], "score": 0.0, "frames": []})
        seen["score"] = max(seen["score"], entry["score"])
        seen["frames"] = [*seen["frames"], *(first_frame + f for f in entry["frames"])]


def predict_video(segmenter: Any, video: Path, out: Path, fps: float = 1.0, window: float = WINDOW_SECONDS,
                  max_seconds: float | None = None, mask_format: str = "png", name: str | None = None,
                  ) -> VideoOutcome:
    """Predict one video and write `out/<name>.json` and `out/<name>.overlay.mp4` (each via a temporary
    file and a rename, so a failure leaves neither half-written).

    segmenter: a components.infer.Segmenter; fps: sampled frames per second; window: seconds per forward
    pass; max_seconds: longer videos fail (None: no limit). Raises MediaError for a video that cannot
    be decoded (no audio, no frames, too long, not a video).
    """
    from components.serve.api import ClipRequest, encode_result

    name = name or video.stem
    timer = _Timer()
    media = decode_video(video, max_seconds=max_seconds, name=str(video), rate=fps)
    timer.lap("decode")
    count = media.frames.shape[0]
    per_window = max(1, round(window * fps))
    model_info = {**segmenter.info(), "fps": fps, "window_frames": per_window}
    found: dict[int, dict[str, Any]] = {}
    frames_json: list[dict[str, Any]] = []
    out.mkdir(parents=True, exist_ok=True)
    json_path, overlay_path = out / f"{name}.json", out / f"{name}.overlay.mp4"
    with overlay_video(overlay_path, fps, tuple(media.frames.shape[-2:]), segmenter.class_names, media.waveform,
                       media.sample_rate, video) as draw:
        for span in progress(frame_windows(count, per_window), f"{name}: windows"):
            clip = media.frames[span.start: span.stop]
            times = [k / fps for k in span]
            result = segmenter.predict(clip, media.waveform, media.sample_rate, times=times)
            timer.lap("predict")
            request = ClipRequest(clip, media.waveform, media.sample_rate, mask_format, "video", 0.0)
            answer = encode_result(result, request, model_info, first_frame=span.start, rate=fps)
            frames_json.extend(answer["frames"])
            _merge_classes(found, result.clip_classes, span.start)
            for t, k in enumerate(span):
                draw(clip[t].permute(1, 2, 0).numpy(), result.class_map[t].numpy(), k / fps)
            timer.lap("overlay")
    answer = {"num_frames": count, "size": list(media.frames.shape[-2:]), "mask_format": mask_format,
              "request_kind": "video", "classes": sorted(found.values(), key=lambda c: -c["score"]),
              "frames": frames_json, "fps": fps, "windows": math.ceil(count / per_window),
              "source": {"file": str(video), "fps": media.fps, "duration": media.duration},
              "timings_ms": timer.laps, "model": model_info}
    write_json_atomic(json_path, answer)
    return VideoOutcome(video, json_path, overlay_path, count, media.duration, timings=timer.laps)


class _Timer:
    def __init__(self) -> None:
        import time

        self._now, self.laps = time.perf_counter, {}
        self._last = self._now()

    def lap(self, name: str) -> None:
        now = self._now()
        self.laps[name] = round(self.laps.get(name, 0.0) + (now - self._last) * 1000, 1)
        self._last = now


def output_names(videos: Sequence[Path]) -> list[str]:
    """Output name per video (its file stem); StepError naming both files when two share a stem."""
    names: dict[str, Path] = {}
    for video in videos:
        if video.stem in names:
            raise StepError(f"{names[video.stem]} and {video} would both write {video.stem}.json: "
                            "rename one or predict them into different --out folders")
        names[video.stem] = video
    return list(names)


def predict_videos(videos: Sequence[Path], model: Path, out: Path, fps: float = 1.0,
                   window: float = WINDOW_SECONDS, strict: bool = False, max_seconds: float | None = None,
                   mask_format: str = "png", device: str | None = None,
                   features: FeaturesParams | None = None) -> list[VideoOutcome]:
    """`avs predict`: every video through the model at `model` (see components.infer.model_files).

    features: the `features` parameters the model was trained with (mask_source, maskige_size, the SAM
    checkpoint and type), so that its maskiges are made the same way; None: the defaults.
    A video that cannot be decoded is reported in its outcome's `error` and skipped; with `strict` the
    first one raises StepError instead. Returns one VideoOutcome per video, in order.
    """
    from components.infer import open_segmenter

    if not fps > 0:
        raise StepError(f"--fps must be positive, got {fps}")
    if not window > 0:
        raise StepError(f"--window must be positive, got {window}")
    if mask_format not in ("png", "rle"):
        raise StepError(f"--mask-format must be png or rle, got {mask_format!r}")
    videos = [Path(v) for v in videos]
    names = output_names(videos)
    features = features or FeaturesParams()
    segmenter = open_segmenter(model, device=device, mask_source=features.mask_source,
                               maskige_size=features.maskige_size, sam_checkpoint=features.sam_checkpoint or None,
                               sam_model_type=features.sam_model_type)
    out.mkdir(parents=True, exist_ok=True)
    outcomes = []
    with torch.inference_mode():
        for video, name in progress(list(zip(videos, names, strict=True)), "predict: videos"):
            try:
                outcome = predict_video(segmenter, video, out, fps, window, max_seconds, mask_format, name)
            except MediaError as exc:
                if strict:
                    raise StepError(f"{exc} (rerun without --strict to skip such files)") from exc
                outcome = VideoOutcome(video, error=str(exc))
            outcomes.append(outcome)
    return outcomes
