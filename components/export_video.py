"""`avs export-video`: one benchmark clip (frames + WAV) as a video file with its audio, to send to the
endpoint or to `avs predict` (the README's demo loop uses a synthetic test clip)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from components.avsbench.layout import SUBSETS, ClipFiles, list_clips, present_subsets
from components.common import StepError
from components.media import MediaError, VideoWriter, decode_audio

EXPORT_CRF = 12   # H.264 quality of exported clips (lower is better; 23 is FFmpeg's default)


def find_clip(root: Path, key: str | None = None, subset: str | None = None, split: str = "test") -> ClipFiles:
    """The clip `key` ("subset/clip_id", e.g. "s4/OnWbltg4mq9_20"), else the first `split` clip of `subset`
    (default: the first subset present). StepError naming what was not found."""
    present = present_subsets(root)
    if key is not None:
        subset, _, clip_id = key.partition("/")
        if subset not in SUBSETS or not clip_id:
            raise StepError(f"--clip {key!r}: expected SUBSET/CLIP_ID with SUBSET one of {', '.join(SUBSETS)}")
    subset = subset or (present[0] if present else None)
    if subset not in present:
        raise StepError(f"{root}: no {subset or 'AVSBench'} clips (subsets present: {', '.join(present) or 'none'})")
    clips = list_clips(root, subset, None if key else split)
    for clip in clips:
        if key is None or clip.key == key:
            return clip
    raise StepError(f"{root}: no clip {key}" if key else f"{root}: no {subset} clips in split {split!r}")


def clip_frames(clip: ClipFiles, height: int | None = 360) -> np.ndarray:
    """The clip's frames as stored, resized (bilinear) to `height` pixels (None: as stored; the width keeps
    the aspect; both sides even for H.264): uint8 [T, H, W, 3]. StepError naming an unreadable frame."""
    frames = []
    for path in clip.frames:
        try:
            frames.append(np.asarray(Image.open(path).convert("RGB")))
        except OSError as exc:
            raise StepError(f"{path}: cannot read the frame ({exc})") from exc
    video = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()
    h, w = video.shape[-2:]
    if height is not None:
        h, w = height, round(w * height / h)
    h, w = h - h % 2, w - w % 2
    video = F.interpolate(video, size=(h, w), mode="bilinear", align_corners=False).round().clamp(0, 255)
    return video.to(torch.uint8).permute(0, 2, 3, 1).numpy()


def export_clip(clip: ClipFiles, out: Path, fps: int = 25, height: int | None = 360) -> dict[str, object]:
    """Write `clip` as an mp4 (H.264 at high quality + AAC): frame k of the clip (`clip_frames`) on screen
    from k to k + 1 seconds, shown at `fps`, with the clip's audio. Written to a temporary file, then
    renamed. Returns {"video", "frames", "seconds", "size"}. StepError naming a missing or unreadable file.
    """
    if fps < 1:
        raise StepError(f"--fps must be at least 1, got {fps}")
    images = clip_frames(clip, height)
    try:
        wave = decode_audio(clip.audio, max_seconds=None, name=str(clip.audio))
    except MediaError as exc:
        raise StepError(str(exc)) from exc
    h, w = images.shape[1:3]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}.mp4")
    try:
        with VideoWriter(tmp, fps, (h, w), wave, quality=EXPORT_CRF) as writer:
            for image in images:
                for _ in range(fps):
                    writer.add(image)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return {"video": str(out), "frames": len(images), "seconds": len(images), "size": [h, w]}
