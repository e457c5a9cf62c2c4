"""A small Python client of the prediction endpoint (standard library and numpy; `--overlay` also PyAV).

    from components.serve.client import Client
    client = Client("http://127.0.0.1:8080", model="avs", key_file=".serve/key_file.json")
    answer = client.predict_video("clip.mp4")                        # the video file as the body
    answer = client.predict_frames(["0.png", "1.png"], "audio.wav")   # multipart frames + audio
    answer = client.predict_json(["0.png", "1.png"], "audio.wav")     # JSON with base64 fields
    masks = masks_of(answer)   # per frame: class map uint8 [H, W] and foreground bool [H, W]

Or from a shell: `python -m components.serve.client clip.mp4 --url http://127.0.0.1:8080 --key-file
.serve/key_file.json [--overlay clip.overlay.mp4]` (the overlay is drawn as `avs predict` draws it).
A 4xx/5xx answer raises PredictionError carrying the server's JSON error.
"""

from __future__ import annotations

import argparse
import base64
import json
import mimetypes
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_CONTENT_TYPES = {".mp4": "video/mp4", ".m4v": "video/mp4", ".webm": "video/webm", ".mkv": "video/x-matroska"}


class PredictionError(Exception):
    """The endpoint refused or failed a request: HTTP `status` and the parsed JSON `body` (if any)."""

    def __init__(self, status: int, body: Any):
        error = body.get("error", body) if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {error}")
        self.status, self.body = status, body


def _bytes(item: bytes | str | Path) -> bytes:
    return bytes(item) if isinstance(item, bytes | bytearray) else Path(item).read_bytes()


class Client:
    """Calls POST {url}/predictions/{model}. token: the inference key; key_file: TorchServe's
    key_file.json, re-read for every request (keys change at every server start)."""

    def __init__(self, url: str = "http://127.0.0.1:8080", model: str = "avs", token: str | None = None,
                 key_file: str | Path | None = None, timeout: float = 300.0):
        self.url, self.model, self.token, self.timeout = url.rstrip("/"), model, token, timeout
        self.key_file = Path(key_file) if key_file else None

    def _token(self) -> str | None:
        if self.token:
            return self.token
        if self.key_file and self.key_file.is_file():
            return json.loads(self.key_file.read_text())["inference"]["key"]
        return None

    def post(self, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> dict[str, Any]:
        """POST raw bytes to the prediction URL; the parsed JSON answer, or PredictionError."""
        head = {"Content-Type": content_type, **(headers or {})}
        if self._token():
            head["Authorization"] = f"Bearer {self._token()}"
        request = urllib.request.Request(f"{self.url}/predictions/{self.model}", data=body, headers=head, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                payload: Any = json.loads(raw)
            except ValueError:
                payload = raw.decode("utf-8", "replace")
            raise PredictionError(err.code, payload) from err

    def predict_video(self, video: bytes | str | Path, content_type: str | None = None,
                      mask_format: str | None = None) -> dict[str, Any]:
        """Send a video file (mp4/webm/mkv) as the body; content_type defaults from the file suffix."""
        if content_type is None:
            suffix = Path(video).suffix.lower() if not isinstance(video, bytes | bytearray) else ".mp4"
            content_type = VIDEO_CONTENT_TYPES.get(suffix, "video/mp4")
        return self.post(_bytes(video), content_type, {"X-Mask-Format": mask_format} if mask_format else None)

    def predict_frames(self, frames: list[bytes | str | Path], audio: bytes | str | Path,
                       mask_format: str | None = None) -> dict[str, Any]:
        """Send frames (one per second, PNG/JPEG) and an audio file as multipart/form-data."""
        boundary = uuid.uuid4().hex
        parts = []
        fields = [(f"frame_{i}", f"{i}.png", _bytes(f)) for i, f in enumerate(frames)]
        fields.append(("audio", "audio.wav", _bytes(audio)))
        for name, filename, data in fields:
            kind = mimetypes.guess_type(filename)[0] or "application/octet-stream"
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                         f"Content-Type: {kind}\r\n\r\n".encode() + data + b"\r\n")
        if mask_format:
            parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="mask_format"\r\n\r\n'
                         f"{mask_format}\r\n".encode())
        body = b"".join(parts) + f"--{boundary}--\r\n".encode()
        return self.post(body, f"multipart/form-data; boundary={boundary}")

    def predict_json(self, frames: list[bytes | str | Path], audio: bytes | str | Path,
                     mask_format: str | None = None) -> dict[str, Any]:
        """Send {"frames": [base64 ...], "audio": base64} as application/json."""
        payload: dict[str, Any] = {"frames": [base64.b64encode(_bytes(f)).decode() for f in frames],
                                   "audio": base64.b64encode(_bytes(audio)).decode()}
        if mask_format:
            payload["mask_format"] = mask_format
        return self.post(json.dumps(payload).encode(), "application/json")


def masks_of(answer: dict[str, Any]) -> list[dict[str, np.ndarray]]:
    """Per frame of an answer: {"class_map": uint8 [H, W] class indices, "foreground": bool [H, W]},
    whichever mask format the answer used."""
    from components.serve.api import png_decode, rle_decode

    h, w = answer["size"]
    out = []
    for frame in answer["frames"]:
        if answer["mask_format"] == "png":
            class_map = png_decode(frame["mask"])
            foreground = png_decode(frame["foreground"]) > 127
        else:
            class_map = np.zeros((h, w), np.uint8)
            for c in frame["classes"]:
                class_map[rle_decode(c["rle"])] = c["id"]
            foreground = rle_decode(frame["foreground"])
        out.append({"class_map": class_map, "foreground": foreground})
    return out


def write_overlay(answer: dict[str, Any], video: str | Path, out: str | Path) -> Path:
    """Draw an answer to `video` over its frames, as `avs predict` draws its own: an mp4 at one frame per
    second (the endpoint's rate) with the video's audio track. Written via a temporary file and a rename.
    ValueError when the answer does not fit the video (frame count or size)."""
    from components.infer import class_names
    from components.media import decode_video
    from components.overlay import overlay_video

    media = decode_video(video, max_seconds=None)
    masks = masks_of(answer)
    if len(masks) != media.frames.shape[0] or list(media.frames.shape[-2:]) != list(answer["size"]):
        raise ValueError(f"the answer ({len(masks)} frames of {answer['size']}) is not about {video} "
                         f"({media.frames.shape[0]} frames of {list(media.frames.shape[-2:])})")
    names = class_names(int(answer["model"]["num_classes"]))
    out = Path(out)
    with overlay_video(out, 1.0, tuple(answer["size"]), names, media.waveform, media.sample_rate, Path(video)) as draw:
        for k, (frame, mask) in enumerate(zip(media.frames, masks, strict=True)):
            draw(frame.permute(1, 2, 0).numpy(), mask["class_map"], float(k))
    return out


def main(argv: list[str] | None = None) -> int:
    """Command line: send a video (or --frames + --audio) and print the answer without its masks."""
    parser = argparse.ArgumentParser(description="Send a clip to the AVS endpoint")
    parser.add_argument("video", nargs="?", help="video file (mp4/webm/mkv)")
    parser.add_argument("--frames", nargs="*", default=[], help="frame images instead of a video (one per second)")
    parser.add_argument("--audio", help="audio file to go with --frames")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="avs")
    parser.add_argument("--key-file", default=".serve/key_file.json", help="TorchServe's key file (token auth)")
    parser.add_argument("--mask-format", choices=["png", "rle"])
    parser.add_argument("--out", help="write the full JSON answer here")
    parser.add_argument("--overlay", metavar="OUT.mp4", help="draw the answer over the video (needs a video)")
    args = parser.parse_args(argv)
    if args.overlay and not args.video:
        parser.error("--overlay draws over a video: give one")
    client = Client(args.url, args.model, key_file=args.key_file)
    try:
        if args.video:
            answer = client.predict_video(args.video, mask_format=args.mask_format)
        elif args.frames and args.audio:
            answer = client.predict_frames(args.frames, args.audio, args.mask_format)
        else:
            parser.error("give a video, or --frames and --audio")
    except PredictionError as err:
        print(json.dumps(err.body, indent=2) if isinstance(err.body, dict) else err, file=sys.stderr)
        return 1
    if args.out:
        Path(args.out).write_text(json.dumps(answer))
    if args.overlay:
        from components.common import StepError

        try:
            print(f"overlay: {write_overlay(answer, args.video, args.overlay)}", file=sys.stderr)
        except (ValueError, OSError, StepError) as err:   # StepError: a video PyAV cannot decode
            print(f"overlay: cannot draw {args.overlay}: {err}", file=sys.stderr)
            return 1
    summary = {k: v for k, v in answer.items() if k != "frames"}
    summary["frames"] = [{"index": f["index"], "classes": [{k: c[k] for k in ("id", "name", "score", "area")}
                                                          for c in f["classes"]]} for f in answer["frames"]]
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
