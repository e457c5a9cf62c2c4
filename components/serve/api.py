"""The prediction API, independent of the server: parse a request into a clip, encode a result as JSON.

Three request kinds reach `POST /predictions/<name>`:

- a video file as the body, Content-Type video/mp4, video/webm or video/x-matroska (video/matroska);
- multipart/form-data with a `video` file, or with frames `frame_0`, `frame_1`, ... (PNG/JPEG, one per
  second) and an `audio` file (WAV, or any audio FFmpeg reads);
- application/json: {"frames": [base64 image, ...], "audio": base64 audio file} or {"video": base64 file}.

Options: "mask_format" ("png" or "rle") as a JSON field, a form field or the X-Mask-Format header.
Every bad input becomes an ApiError carrying an HTTP 4xx status and a JSON body
{"error": {"status", "code", "message"}}.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from components.media import MediaError, decode_audio, decode_images, decode_video
from components.params import PackageParams

VIDEO_TYPES = ("video/mp4", "video/webm", "video/x-matroska", "video/matroska")
ACCEPTED_TYPES = (*VIDEO_TYPES, "multipart/form-data", "application/json")
MASK_FORMATS = ("png", "rle")
MEDIA_STATUS = {"undecodable": 400, "no_audio": 422, "no_frames": 422, "too_long": 422, "bad_frames": 422}
PHRASES = {400: "Bad Request", 413: "Content Too Large", 415: "Unsupported Media Type",
           422: "Unprocessable Content", 500: "Internal Server Error"}
_FRAME_FIELD = re.compile(r"^frame_?(\d+)$")
ENV_PREFIX = "AVS_SERVE_"


class ApiError(Exception):
    """A request the API refuses: HTTP `status` (4xx), a stable `code`, a human `message`."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    @property
    def phrase(self) -> str:
        return PHRASES.get(self.status, "Error")

    def body(self) -> dict[str, Any]:
        """The JSON answer: {"error": {"status", "code", "message"}}."""
        return {"error": {"status": self.status, "code": self.code, "message": self.message}}


@dataclass(frozen=True)
class Limits:
    """What the API accepts: clip length (s), request size (MiB), default mask format.

    Read from the handler section of the model config, overridden by AVS_SERVE_MAX_SECONDS,
    AVS_SERVE_MAX_PAYLOAD_MB and AVS_SERVE_MASK_FORMAT in the server's environment.
    """

    max_seconds: float = PackageParams.max_seconds
    max_payload_mb: float = PackageParams.max_payload_mb
    mask_format: str = PackageParams.mask_format

    @property
    def max_payload_bytes(self) -> int:
        return int(self.max_payload_mb * 1024 * 1024)

    @classmethod
    def from_config(cls, config: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Limits:
        """Limits from a mapping (keys max_seconds, max_payload_mb, mask_format) plus environment overrides."""
        env = os.environ if env is None else env
        limits = cls(**{k: config[k] for k in ("max_seconds", "max_payload_mb", "mask_format") if k in config})
        overrides: dict[str, Any] = {}
        for name, cast in (("max_seconds", float), ("max_payload_mb", float), ("mask_format", str)):
            value = env.get(ENV_PREFIX + name.upper())
            if value:
                overrides[name] = cast(value)
        limits = replace(limits, **overrides)
        if limits.mask_format not in MASK_FORMATS or limits.max_seconds <= 0 or limits.max_payload_mb <= 0:
            raise ValueError(f"invalid serving limits {limits}")
        return limits


@dataclass
class ClipRequest:
    """A parsed request: frames uint8 [T, 3, H, W], waveform float32 [N] mono at `sample_rate` (16 kHz),
    the requested mask format, which request kind it was, the decoding time in milliseconds, and the
    uploaded video's frame rate and duration (None for separate frames)."""

    frames: torch.Tensor
    waveform: torch.Tensor
    sample_rate: int
    mask_format: str
    kind: str
    decode_ms: float
    fps: float | None = None
    duration: float | None = None


def _header(headers: Mapping[str, Any], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name.lower() and isinstance(value, str):
            return value
    return ""


def _text(value: Any, field: str) -> str:
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise ApiError(400, "bad_field", f"field {field!r} is not UTF-8 text") from exc
    if isinstance(value, str):
        return value.strip()
    raise ApiError(400, "bad_field", f"field {field!r} must be a string")


def _mask_format(value: str, default: str) -> str:
    fmt = (value or default).lower()
    if fmt not in MASK_FORMATS:
        raise ApiError(400, "bad_mask_format", f"mask_format {value!r} is not one of {', '.join(MASK_FORMATS)}")
    return fmt


def _payload_size(inputs: Mapping[str, Any], headers: Mapping[str, Any]) -> int:
    declared = _header(headers, "content-length")
    if declared.isdigit():
        return int(declared)
    return sum(len(v) if isinstance(v, bytes | bytearray | str) else len(json.dumps(v)) for v in inputs.values())


def _b64(value: Any, field: str) -> bytes:
    if not isinstance(value, str):
        raise ApiError(400, "bad_field", f"field {field!r} must be a base64 string")
    try:
        return base64.b64decode(value.split(",", 1)[1] if value.startswith("data:") else value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(400, "bad_base64", f"field {field!r} is not valid base64 ({exc})") from exc


def _media(call, *args, **kwargs):
    try:
        return call(*args, **kwargs)
    except MediaError as exc:
        raise ApiError(MEDIA_STATUS[exc.kind], exc.kind, str(exc)) from exc


def _frames_and_audio(frames: list[bytes], names: list[str], audio: bytes, limits: Limits
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    if not frames:
        raise ApiError(422, "no_frames", "no frames given (zero frames)")
    if len(frames) > limits.max_seconds + 1e-9:
        raise ApiError(422, "too_long", f"{len(frames)} frames (one per second) exceed the maximum of "
                                        f"{limits.max_seconds:g} s")
    images = _media(decode_images, frames, names)
    wave = _media(decode_audio, audio, limits.max_seconds, name="audio")
    return images, wave


def parse_request(inputs: Mapping[str, Any], headers: Mapping[str, Any], limits: Limits) -> ClipRequest:
    """Turn one request into a clip.

    inputs: the request's parts as the server hands them over (TorchServe: {"body": bytes or parsed JSON}
    for a plain body, {field: bytes} for multipart). headers: request headers (any case). Raises ApiError
    (415 content type, 413 size, 400 malformed JSON / base64 / undecodable media / bad field, 422 no audio,
    zero frames, too long, frames of different sizes).
    """
    start = time.perf_counter()
    content_type = _header(headers, "content-type").split(";")[0].strip().lower()
    if content_type not in ACCEPTED_TYPES:
        raise ApiError(415, "unsupported_content_type",
                       f"Content-Type {content_type or '(none)'!r} is not supported; send one of "
                       f"{', '.join(ACCEPTED_TYPES)}")
    size = _payload_size(inputs, headers)
    if size > limits.max_payload_bytes:
        raise ApiError(413, "payload_too_large", f"request of {size} bytes exceeds the maximum of "
                                                 f"{limits.max_payload_mb:g} MiB")
    header_format = _header(headers, "x-mask-format")
    media = None
    if content_type in VIDEO_TYPES:
        body = inputs.get("body", inputs.get("data"))
        if not isinstance(body, bytes | bytearray) or not body:
            raise ApiError(400, "empty_body", f"the {content_type} request has an empty body")
        media = _media(decode_video, bytes(body), limits.max_seconds, name=f"the {content_type} body")
        frames, wave, kind = media.frames, media.waveform, "video"
        fmt = _mask_format(header_format, limits.mask_format)
    elif content_type == "multipart/form-data":
        fmt = _mask_format(_text(inputs["mask_format"], "mask_format") if "mask_format" in inputs else header_format,
                           limits.mask_format)
        if "video" in inputs:
            media = _media(decode_video, bytes(inputs["video"]), limits.max_seconds, name="form field 'video'")
            frames, wave, kind = media.frames, media.waveform, "multipart-video"
        else:
            numbered = sorted((int(m.group(1)), k) for k in inputs if (m := _FRAME_FIELD.match(k)))
            if "audio" not in inputs:
                raise ApiError(400, "missing_field", "multipart request needs an 'audio' file with frame_0, "
                                                     "frame_1, ... (or a 'video' file)")
            frames, wave = _frames_and_audio([bytes(inputs[k]) for _, k in numbered], [k for _, k in numbered],
                                             bytes(inputs["audio"]), limits)
            kind = "multipart"
    else:
        body = inputs.get("body", inputs.get("data"))
        if isinstance(body, bytes | bytearray):
            try:
                body = json.loads(bytes(body).decode("utf-8"))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(400, "malformed_json", f"the JSON body cannot be parsed ({exc})") from exc
        if not isinstance(body, dict):
            raise ApiError(400, "malformed_json", "the JSON body must be an object with 'frames' and 'audio' "
                                                  "(or 'video')")
        fmt = _mask_format(str(body.get("mask_format") or header_format), limits.mask_format)
        if "video" in body:
            media = _media(decode_video, _b64(body["video"], "video"), limits.max_seconds, name="JSON field 'video'")
            frames, wave, kind = media.frames, media.waveform, "json-video"
        else:
            missing = [k for k in ("frames", "audio") if k not in body]
            if missing:
                raise ApiError(400, "missing_field", f"the JSON body lacks {', '.join(map(repr, missing))}")
            if not isinstance(body["frames"], list):
                raise ApiError(400, "bad_field", "JSON field 'frames' must be a list of base64 images")
            images = [_b64(v, f"frames[{i}]") for i, v in enumerate(body["frames"])]
            frames, wave = _frames_and_audio(images, [f"frames[{i}]" for i in range(len(images))],
                                             _b64(body["audio"], "audio"), limits)
            kind = "json"
    return ClipRequest(frames, wave, 16000, fmt, kind, round((time.perf_counter() - start) * 1000, 2),
                       media.fps if media else None, media.duration if media else None)


# -- answers -------------------------------------------------------------------------------------------------
def rle_encode(mask: np.ndarray) -> dict[str, Any]:
    """COCO uncompressed RLE of a bool [H, W] mask: {"size": [H, W], "counts": [...]}, column-major runs
    starting with a run of zeros (pycocotools' frPyObjects reads it)."""
    flat = np.asarray(mask, dtype=bool).ravel(order="F")
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [flat.size]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [int(mask.shape[0]), int(mask.shape[1])], "counts": counts}


def rle_decode(rle: Mapping[str, Any]) -> np.ndarray:
    """The bool [H, W] mask of a COCO uncompressed RLE (the inverse of rle_encode)."""
    h, w = rle["size"]
    values = np.arange(len(rle["counts"])) % 2 == 1
    return np.repeat(values, rle["counts"]).reshape((h, w), order="F")


def png_b64(image: np.ndarray, palette: np.ndarray | None = None) -> str:
    """Base64 PNG of a uint8 [H, W] image; with `palette` (uint8 [K, 3]) a palette PNG whose pixel values
    stay the indices."""
    from PIL import Image

    img = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8), mode="L")
    if palette is not None:
        img = Image.frombytes("P", img.size, img.tobytes())
        flat = np.zeros((256, 3), np.uint8)
        flat[: len(palette)] = palette[:256]
        img.putpalette(flat.ravel().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG", compress_level=1)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def png_decode(data: str) -> np.ndarray:
    """uint8 [H, W] pixel values (class indices, or 0/255) of a base64 PNG from `png_b64`."""
    from PIL import Image

    with Image.open(io.BytesIO(base64.b64decode(data))) as img:
        return np.asarray(img if img.mode in ("L", "P") else img.convert("L"))


def encode_result(result: Any, request: ClipRequest, model: Mapping[str, Any], threshold: float = 0.5,
                  first_frame: int = 0, rate: float = 1.0) -> dict[str, Any]:
    """The JSON answer for one clip (`result`: a components.infer.ClipResult).

    {"num_frames", "size": [H, W], "mask_format", "classes": clip-level classes, "frames": [{"index",
    "time", "classes", "foreground", "mask"}], "timings_ms", "model"}. png: "mask" is a palette PNG whose
    pixel values are class indices, "foreground" a 0/255 PNG. rle: "foreground" and every class entry's
    "rle" are COCO RLEs, "mask" is null. Frame t of the result gets index `first_frame` + t and time
    index / `rate` seconds (the endpoint: one frame per second from 0; `avs predict` windows: others).
    """
    from components.avsbench.classes import avss_palette

    start = time.perf_counter()
    fg = (result.foreground > threshold).numpy()
    class_map = result.class_map.numpy()
    palette = avss_palette(max(int(class_map.max()) + 1, 2)) if class_map.size else None
    frames = []
    for t in range(class_map.shape[0]):
        classes = [dict(c) for c in result.classes[t]]
        if request.mask_format == "png":
            entry = {"foreground": png_b64(fg[t].astype(np.uint8) * 255),
                     "mask": png_b64(class_map[t].astype(np.uint8), palette)}
        else:
            for c in classes:
                c["rle"] = rle_encode(class_map[t] == c["id"])
            entry = {"foreground": rle_encode(fg[t]), "mask": None}
        index = first_frame + t
        frames.append({"index": index, "time": round(index / rate, 4), "classes": classes, **entry})
    timings = {"decode": request.decode_ms, **result.timings, "encode": round((time.perf_counter() - start) * 1000, 2)}
    return {"num_frames": int(class_map.shape[0]), "size": list(class_map.shape[1:]),
            "mask_format": request.mask_format, "request_kind": request.kind, "classes": result.clip_classes,
            "frames": frames, "timings_ms": timings, "model": dict(model)}
