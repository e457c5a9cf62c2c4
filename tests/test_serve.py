"""Serving: media decoding, in-process inference, the TorchServe handler, packaging, and a real TorchServe
process on loopback answering every bad input with a JSON 4xx and then a good request."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch

from components.common import free_ports
from components.media import MediaError, decode_audio, decode_images, decode_video, encode_video
from components.params import parse_section

pytestmark = pytest.mark.usefixtures("one_thread")   # conftest.py


def _clip(seconds: float = 3.0, fps: int = 10, size: tuple[int, int] = (64, 96), rate: int = 22050,
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames uint8 [N, 3, H, W] whose red channel encodes the second they belong to, and a stereo tone."""
    n = round(seconds * fps)
    frames = torch.zeros(n, 3, *size, dtype=torch.uint8)
    for i in range(n):
        frames[i, 0] = (i // fps) * 40 % 240
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


def test_api_parses_each_request_kind_and_encodes_masks() -> None:
    """The request/answer layer without a server: kinds, options, limits, and lossless mask encodings."""
    import base64
    import json

    from components.serve.api import ApiError, Limits, parse_request, png_b64, png_decode, rle_decode, rle_encode

    limits = Limits(max_seconds=4, max_payload_mb=1)
    wav = _wav(2.0)
    req = parse_request({"body": _video(seconds=2.0)}, {"Content-Type": "video/mp4", "X-Mask-Format": "RLE"}, limits)
    assert (req.kind, req.mask_format, tuple(req.frames.shape)) == ("video", "rle", (2, 3, 64, 96))
    assert req.fps == pytest.approx(10) and req.sample_rate == 16000
    req = parse_request({"frame_1": _pngs(2)[1], "frame_0": _pngs(2)[0], "audio": wav, "mask_format": b"png"},
                        {"content-type": "multipart/form-data; boundary=x"}, limits)
    assert req.kind == "multipart" and req.frames.shape[0] == 2 and req.fps is None
    assert int(req.frames[1, 0, 5, 5]) == 40   # frame_1 is second 1, whatever the field order
    body = {"frames": [base64.b64encode(p).decode() for p in _pngs(2)], "audio": base64.b64encode(wav).decode()}
    as_json = {"Content-Type": "application/json"}
    assert parse_request({"body": body}, as_json, limits).kind == "json"
    assert parse_request({"body": json.dumps(body).encode()}, as_json, limits).kind == "json"
    for inputs, headers, status, code in [
        ({"body": b"x"}, {"Content-Type": "image/png"}, 415, "unsupported_content_type"),
        ({"body": b"x" * (2 << 20)}, {"Content-Type": "video/mp4"}, 413, "payload_too_large"),
        ({"body": b""}, {"Content-Type": "video/webm"}, 400, "empty_body"),
        ({"audio": wav}, {"Content-Type": "multipart/form-data"}, 422, "no_frames"),
        ({"frame_0": _pngs(1)[0]}, {"Content-Type": "multipart/form-data"}, 400, "missing_field"),
        ({"body": {"frames": body["frames"] * 3, "audio": body["audio"]}}, {"Content-Type": "application/json"}, 422,
         "too_long"),
        ({"body": {"frames": body["frames"]}}, {"Content-Type": "application/json"}, 400, "missing_field"),
    ]:
        with pytest.raises(ApiError) as info:
            parse_request(inputs, headers, limits)
        assert (info.value.status, info.value.code) == (status, code), code
        assert info.value.body()["error"]["message"]
    assert Limits.from_config({"max_seconds": 9}, env={"AVS_SERVE_MAX_PAYLOAD_MB": "2"}) == Limits(9, 2, "png")
    rng = np.random.default_rng(0)
    for mask in (rng.random((7, 5)) > 0.5, np.ones((3, 4), bool), np.zeros((2, 2), bool)):
        assert (rle_decode(rle_encode(mask)) == mask).all()
    assert rle_encode(np.array([[1, 0], [1, 1]], bool))["counts"] == [0, 2, 1, 1]   # COCO: column-major
    labels = rng.integers(0, 71, (6, 9)).astype(np.uint8)
    assert (png_decode(png_b64(labels, np.zeros((71, 3), np.uint8))) == labels).all()


# -- the tiny two-stage model of conftest.py (`models`), in process and served ------------------------------


@pytest.fixture(scope="module")
def segmenter(models: dict):
    from components.infer import Segmenter

    return Segmenter(models["stage1"], models["stage2"], maskige_size=64)


@pytest.mark.slow
def test_infer_builds_the_training_inputs_and_the_stage1_prior(models: dict, segmenter) -> None:
    """The in-process path reproduces the training data pipeline bit for bit, and stage 1's output is
    the prior predict-masks wrote."""
    from components.avsbench.reader import AVSBenchDataset
    from components.train.data import ClipDataset, prior_file

    for subset, stage in (("s4", 1), ("avss", 1)):
        dataset = ClipDataset(models["data"], models["features"], stage, "test", 64, subsets=(subset,))
        clip = AVSBenchDataset(models["data"], subset=subset, split="test")[0]
        assert dataset.clips[0].key == clip.files.key
        sample = dataset[0]
        inputs = segmenter.prepare(clip.frames, clip.waveform, clip.sample_rate)
        torch.testing.assert_close(inputs.frames, sample.frames)
        torch.testing.assert_close(inputs.maskige, sample.maskige)
        if subset == "s4":  # AVSS features are padded with zeros to 10 s, which the endpoint does not know
            torch.testing.assert_close(inputs.audio, sample.audio)
    avss = AVSBenchDataset(models["data"], subset="avss", split="test", labels=("v1s",))
    clip = avss[0]
    result = segmenter.predict(clip.frames, clip.waveform, clip.sample_rate)
    prior = torch.load(prior_file(models["priors"], clip.files), weights_only=True).float()   # [T, 64, 64]
    import torch.nn.functional as F

    expected = F.interpolate(prior[:, None], size=clip.frames.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(result.foreground, expected, atol=2e-3, rtol=0)  # float16 storage of the prior
    t, h, w = clip.frames.shape[0], *clip.frames.shape[-2:]
    assert result.class_map.shape == (t, h, w) and result.class_map.dtype == torch.int64
    assert len(result.classes) == t and {"stage1", "stage2", "audio", "maskige", "total"} <= set(result.timings)
    batch = segmenter.predict_batch([(clip.frames, clip.waveform, clip.sample_rate)] * 2)
    assert batch[0].timings["batch"] == 2
    torch.testing.assert_close(batch[1].foreground, result.foreground, atol=1e-4, rtol=0)


# -- packaging --------------------------------------------------------------------------------------------------
def test_package_records_why_when_the_gate_failed(tmp_path) -> None:
    """A failed gate: no archive, package.json with the gate's reasons (no model is even read)."""
    import json

    from components.cli import main

    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"passed": False, "reasons": ["s4.test.miou = 0.3 is below the minimum 0.5"]}))
    out = tmp_path / "serving"
    (out / "old").mkdir(parents=True)  # a previous output is replaced, not merged
    assert main(["package", "--stage1", str(tmp_path / "none.pt"), "--gate", str(gate), "--out", str(out)]) == 0
    record = json.loads((out / "package.json").read_text())
    assert record["packaged"] is False and "s4.test.miou" in record["reasons"][0]
    assert sorted(p.name for p in out.iterdir()) == ["package.json"]
    assert main(["package", "--stage1", str(tmp_path / "none.pt"), "--gate", str(tmp_path / "missing.json"),
                 "--out", str(out)]) == 2  # an unreadable decision is an error, not a pass


@pytest.fixture(scope="module")
def archive(models: dict) -> dict:
    """The .mar of the tiny models, through the gate's PASS branch."""
    import json

    from components.serve.package import package, verify_archive

    gate = models["root"] / "gate.json"
    gate.write_text(json.dumps({"passed": True, "reasons": ["every gate metric meets its threshold"]}))
    out = models["root"] / "serving"
    settings = models["settings"]
    record = package(models["stage1"], models["stage2"], out, gate, parse_section("package", settings["package"]),
                     parse_section("features", settings["features"]))
    assert record["packaged"] and (out / "avs.mar").is_file() and not verify_archive(out / "avs.mar")
    return {"dir": out, "record": record}


@pytest.fixture(scope="module")
def server(archive: dict, models: dict):
    """A real TorchServe on loopback (random free ports, token auth on) started with `avs serve start`."""
    import os

    from components.cli import main
    from components.serve.server import status

    run_dir = models["root"] / "run"
    inference, management, metrics = free_ports(3)
    os.environ["AVS_SERVE_DRIFT_LOG"] = str(models["root"] / "drift.jsonl")   # the server inherits it
    try:
        code = main(["serve", "start", "--run-dir", str(run_dir), "--model-store", str(archive["dir"]), "--params",
                     str(models["params"]), "--inference-port", str(inference), "--management-port",
                     str(management), "--metrics-port", str(metrics), "--token-auth", "--timeout", "240"])
    finally:
        del os.environ["AVS_SERVE_DRIFT_LOG"]
    try:
        assert code == 0, (run_dir / "logs" / "model_log.log").read_text()[-3000:]
        yield {"run_dir": run_dir, "ports": (inference, management, metrics), "state": status(run_dir),
               "drift_log": models["root"] / "drift.jsonl"}
    finally:
        main(["serve", "stop", "--run-dir", str(run_dir)])


def _post(server: dict, body: bytes, content_type: str | None, token: bool = True) -> tuple[int, dict | bytes]:
    import http.client
    import json

    from components.serve.server import read_key

    headers = {"Content-Type": content_type} if content_type else {}
    if token:
        headers["Authorization"] = f"Bearer {read_key(server['run_dir'])}"
    conn = http.client.HTTPConnection("127.0.0.1", server["ports"][0], timeout=120)
    try:
        conn.request("POST", "/predictions/avs", body=body, headers=headers)
        response = conn.getresponse()
        raw = response.read()
    finally:
        conn.close()
    try:
        return response.status, json.loads(raw)
    except ValueError:
        return response.status, raw


def _worker_pids(server: dict) -> list[int]:
    from components.serve.server import status

    state = status(server["run_dir"])
    assert state["ready"], state
    return [w["pid"] for w in state["workers"]]


def _wav(seconds: float = 2.0, rate: int = 16000) -> bytes:
    import soundfile as sf

    buf = io.BytesIO()
    sf.write(buf, _clip(seconds=seconds, rate=rate)[1].T.numpy(), rate, format="WAV")
    return buf.getvalue()


def _pngs(seconds: int = 2) -> list[bytes]:
    from PIL import Image

    frames = _clip(seconds=seconds, fps=1)[0]
    out = []
    for f in frames:
        buf = io.BytesIO()
        Image.fromarray(f.permute(1, 2, 0).numpy()).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


@pytest.mark.slow
def test_every_bad_input_gets_a_json_4xx_and_the_worker_stays_up(server: dict) -> None:
    import base64
    import json

    audio_only = io.BytesIO()
    encode_aac = _video(seconds=2.0)
    import av

    with av.open(io.BytesIO(encode_aac)) as src, av.open(audio_only, "w", format="mp4") as dst:
        stream = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    wav = base64.b64encode(_wav()).decode()
    cases = [
        ("unsupported content type", b"hello", "text/plain", 415, "unsupported_content_type"),
        ("no content type", b"hello", None, 415, "unsupported_content_type"),
        ("undecodable media", b"\x00not a video" * 100, "video/mp4", 400, "undecodable"),
        ("truncated media", _video(seconds=2.0)[:3000], "video/webm", 400, "undecodable"),
        ("no audio track", _video(seconds=2.0, audio=False), "video/mp4", 422, "no_audio"),
        ("zero frames (audio-only file)", audio_only.getvalue(), "video/mp4", 422, "no_frames"),
        ("zero frames (JSON)", json.dumps({"frames": [], "audio": wav}).encode(), "application/json", 422,
         "no_frames"),
        ("longer than the maximum", _video(seconds=8.0, size=(32, 32)), "video/mp4", 422, "too_long"),
        ("oversized payload", b"\x00" * (600 * 1024), "video/mp4", 413, "payload_too_large"),
        ("malformed JSON", b'{"frames": ["aGk=", ', "application/json", 400, "malformed_json"),
        ("JSON that is not an object", b"[1, 2]", "application/json", 400, "malformed_json"),
        ("bad base64", json.dumps({"frames": ["@@@"], "audio": wav}).encode(), "application/json", 400,
         "bad_base64"),
        ("unknown mask format", json.dumps({"frames": [], "audio": wav, "mask_format": "gif"}).encode(),
         "application/json", 400, "bad_mask_format"),
    ]
    pids = _worker_pids(server)
    for name, body, content_type, status, code in cases:
        got, answer = _post(server, body, content_type)
        assert got == status, (name, got, answer)
        assert isinstance(answer, dict) and answer["error"]["code"] == code and answer["error"]["message"], name
        assert _worker_pids(server) == pids, f"the worker restarted after: {name}"
    # above the frontend's hard limit (2 x max_payload_mb + 1 MiB) TorchServe itself answers a bare 413
    got, _ = _post(server, b"\x00" * (3 * 1024 * 1024), "video/mp4")
    assert got == 413 and _worker_pids(server) == pids
    got, answer = _post(server, _video(seconds=2.0), "video/mp4", token=False)   # token auth is on
    assert 400 <= got < 500 and "Token" in json.dumps(answer)


@pytest.mark.slow
def test_good_requests_of_all_three_kinds_match_in_process_inference(server: dict, segmenter) -> None:
    import threading

    from components.serve.client import Client, masks_of

    client = Client(f"http://127.0.0.1:{server['ports'][0]}", key_file=server["run_dir"] / "key_file.json")
    video = _video(seconds=3.0)
    answers = {"video": client.predict_video(video),
               "multipart": client.predict_frames(_pngs(2), _wav(2.0), mask_format="rle"),
               "json": client.predict_json(_pngs(2), _wav(2.0))}
    expected = {"video": (3, (64, 96), "png"), "multipart": (2, (64, 96), "rle"), "json": (2, (64, 96), "png")}
    for kind, answer in answers.items():
        t, size, fmt = expected[kind]
        assert answer["num_frames"] == t and tuple(answer["size"]) == size and answer["mask_format"] == fmt, kind
        assert answer["model"]["deform_attn"] in ("cpu-kernel", "cuda-kernel") and answer["model"]["stage2"]
        assert {"decode", "stage1", "stage2", "handler"} <= set(answer["timings_ms"])
        masks = masks_of(answer)
        assert len(masks) == t and masks[0]["class_map"].shape == size
    # the served answer is the in-process answer
    media = decode_video(video)
    local = segmenter.predict(media.frames, media.waveform, media.sample_rate)
    served = masks_of(answers["video"])
    for frame, got in enumerate(served):
        agree = (torch.from_numpy(got["class_map"].astype("int64")) == local.class_map[frame]).float().mean()
        assert agree > 0.99
        agree = (torch.from_numpy(got["foreground"]) == (local.foreground[frame] > 0.5)).float().mean()
        assert agree > 0.99
    # concurrent requests are batched (batchSize 4, maxBatchDelay 300 ms)
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(client.predict_video(video))) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(results) == 4 and max(r["timings_ms"]["batch"] for r in results) >= 2
    # every answered clip's drift descriptors went to the drift log (AVS_SERVE_DRIFT_LOG), none of the refused
    import json

    records = [json.loads(line) for line in server["drift_log"].read_text().splitlines()]
    assert len(records) == 7 and all(r["source"] == "endpoint" for r in records)
    assert records[0]["video_fps"] == pytest.approx(10) and records[0]["pred_sounding_area"] is not None


@pytest.mark.slow
def test_probes_metrics_and_status_with_token_auth(server: dict) -> None:
    import json
    import subprocess
    import sys
    import urllib.request
    from pathlib import Path

    from components.cli import main
    from components.serve.server import read_key

    probe = Path(__file__).resolve().parents[1] / "k8s" / "base" / "serving" / "probe.py"
    inference, management, metrics = server["ports"]
    key_file = server["run_dir"] / "key_file.json"
    args = ["--port", str(inference), "--management-port", str(management), "--key-file", str(key_file)]
    for mode in ("live", "ready"):
        proc = subprocess.run([sys.executable, str(probe), mode, *args], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    proc = subprocess.run([sys.executable, str(probe), "ready", *args, "--model", "other"], capture_output=True,
                          text=True)
    assert proc.returncode == 1 and "other" in proc.stderr
    # an expired inference key: the probe renews it with the API key (TorchServe rewrites the key file)
    keys = json.loads(key_file.read_text())
    old = keys["inference"]["key"]
    keys["inference"]["expiration time"] = "2000-01-01T00:00:00.000000000Z"
    copy = server["run_dir"] / "expired_keys.json"
    copy.write_text(json.dumps(keys))
    proc = subprocess.run([sys.executable, str(probe), "live", "--port", str(inference), "--management-port",
                           str(management), "--key-file", str(copy)], capture_output=True, text=True)
    assert read_key(server["run_dir"]) != old  # renewed in the server's own key file
    assert proc.returncode == 1  # the copy was not rewritten, so its stale key still fails: no false positive
    proc = subprocess.run([sys.executable, str(probe), "ready", *args], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    with urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    assert "ts_inference_requests_total" in text or "Requests2XX" in text
    assert main(["serve", "status", "--run-dir", str(server["run_dir"])]) == 0


@pytest.mark.slow
def test_the_served_archive_scores_what_avs_evaluate_scores(server: dict, models: dict, tmp_path) -> None:
    """The packaged archive in a real TorchServe, sent every S4 and MS3 test clip as frames + WAV, reaches the
    foreground mIoU against the ground truth that `avs evaluate` reports for those clips (within 0.01): the
    archive is the evaluated model, with the evaluated preprocessing."""
    from components.avsbench.layout import list_clips
    from components.avsbench.reader import read_target
    from components.evaluate.run import evaluate
    from components.serve.client import Client, masks_of
    from model.metrics import s4_miou

    metrics = evaluate(models["data"], models["features"], stage1=models["stage1"], stage2=models["stage2"],
                       priors=models["priors"], out=tmp_path / "report", metrics_path=tmp_path / "evaluation.json")
    client = Client(f"http://127.0.0.1:{server['ports'][0]}", key_file=server["run_dir"] / "key_file.json")
    for subset in ("s4", "ms3"):
        served, truth = [], []
        for files in list_clips(models["data"], subset, "test"):
            answer = client.predict_frames([p.read_bytes() for p in files.frames], files.audio.read_bytes())
            masks = masks_of(answer)
            assert len(masks) == files.num_frames
            for t, mask in enumerate(masks):
                target = read_target(files, t)
                if target is not None:
                    served.append(mask["foreground"])
                    truth.append(target == 1)
        served_fg, truth_fg = np.stack(served), np.stack(truth)
        # a model that marks nothing (or everything) would agree with any evaluation: this one does neither
        assert 0.01 < served_fg.mean() < 0.99, (subset, served_fg.mean())
        assert s4_miou(served_fg.astype(np.float32), truth_fg) == pytest.approx(metrics[subset]["test"]["miou"],
                                                                                abs=0.01), subset


@pytest.mark.slow
def test_client_overlay_equals_avs_predicts(server: dict, models: dict, tmp_path) -> None:
    """The client draws the endpoint's answer as `avs predict` draws its own, for the same clip and model;
    on a synthetic test clip, where the model's answer is not constant, the served masks are the local ones."""
    import json

    from components.cli import main
    from components.export_video import find_clip
    from components.serve.client import Client, masks_of, write_overlay

    video = tmp_path / "clip.mp4"
    clip = find_clip(models["data"], subset="ms3", split="test")
    assert main(["export-video", "--data", str(models["data"]), "--clip", clip.key, "--out", str(video),
                 "--fps", "1", "--height", "160"]) == 0
    client = Client(f"http://127.0.0.1:{server['ports'][0]}", key_file=server["run_dir"] / "key_file.json")
    answer = client.predict_video(video)
    served = write_overlay(answer, video, tmp_path / "served.mp4")
    assert main(["predict", str(video), "--model", str(models["folder"]), "--out", str(tmp_path / "local"),
                 "--params", str(models["params"])]) == 0
    local = json.loads((tmp_path / "local" / "clip.json").read_text())
    assert local["num_frames"] == 5 and any(c["id"] > 0 for f in local["frames"] for c in f["classes"])
    mine = np.stack([m["foreground"] for m in masks_of(local)])
    theirs = np.stack([m["foreground"] for m in masks_of(answer)])
    assert 0.01 < mine.mean() < 0.99, f"the model's answer is constant here ({mine.mean():.3f} foreground)"
    assert (mine == theirs).mean() > 0.99
    for got, want in zip(masks_of(answer), masks_of(local), strict=True):
        assert (got["class_map"] == want["class_map"]).mean() > 0.99
    a = decode_video(served).frames.float()
    b = decode_video(tmp_path / "local" / "clip.overlay.mp4").frames.float()
    assert a.shape == b.shape == (5, 3, 160, 160)
    close = ((a - b).abs() <= 8).float().mean()
    assert close > 0.99, f"only {close:.3f} of the overlay pixels agree"
    assert (a - b).abs().mean() < 1.0


@pytest.mark.slow
def test_a_batch_of_different_requests_gives_each_its_own_answer(server: dict) -> None:
    """Clips of different lengths and sizes and one bad request, sent at once (TorchServe batches them into
    one handler call): each answer is its own request's (status, frame count, size) and its masks are those
    of the same request sent alone."""
    import threading

    from components.serve.client import masks_of

    bodies = [_video(seconds=3.0), _video(seconds=2.0), _video(seconds=2.0, size=(80, 80)),
              _video(seconds=2.0, audio=False), _video(seconds=4.0, size=(48, 64))]
    expected = [(200, 3, [64, 96]), (200, 2, [64, 96]), (200, 2, [80, 80]), (422, None, None), (200, 4, [48, 64])]
    alone = [_post(server, body, "video/mp4") for body in bodies]
    for (status, answer), (want, frames, size) in zip(alone, expected, strict=True):
        assert status == want and (frames is None or (answer["num_frames"], answer["size"]) == (frames, size))
    together: list = [None] * len(bodies)

    def send(i: int) -> None:
        together[i] = _post(server, bodies[i], "video/mp4")

    # the batch forms within max_batch_delay_ms (300 ms): retry a round that raced past it. "requests" counts
    # the requests of the handler call (clips of different lengths then run in different model batches)
    for _ in range(5):
        threads = [threading.Thread(target=send, args=(i,)) for i in range(len(bodies))]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        if max(a["timings_ms"]["requests"] for s, a in together if s == 200) >= 3:
            break
    else:
        pytest.fail("the requests were never batched together: nothing was compared")
    for (status, answer), (_, answer_alone), (want, frames, size) in zip(together, alone, expected,
                                                                           strict=True):
        assert status == want, answer
        if want != 200:
            assert answer["error"]["code"] == answer_alone["error"]["code"] == "no_audio"
            continue
        assert (answer["num_frames"], answer["size"]) == (frames, size)
        for got, solo in zip(masks_of(answer), masks_of(answer_alone), strict=True):
            assert (got["class_map"] == solo["class_map"]).mean() > 0.99
            assert (got["foreground"] == solo["foreground"]).mean() > 0.99


def test_a_failed_prediction_answers_json_500_and_leaves_the_bad_request_its_own_status() -> None:
    """The handler's 500 path: when inference raises, every parsed request of the batch gets a JSON 500
    naming the failure; a request refused while parsing keeps its own 4xx."""
    import json

    from components.serve.handler import AVSHandler

    class Failing:
        class_names = ("background", "sounding-object")

        def predict_batch(self, clips):
            raise RuntimeError("out of memory (simulated)")

    class Context:
        def __init__(self) -> None:
            self.status: dict[int, int] = {}

        def get_all_request_header(self, idx: int) -> dict[str, str]:
            return {"Content-Type": "video/mp4"}

        def set_response_status(self, code: int, phrase: str, idx: int = 0) -> None:
            self.status[idx] = code

        def set_response_content_type(self, idx: int, value: str) -> None:
            assert value == "application/json"

    handler = AVSHandler()
    handler.initialized, handler.segmenter, handler.model_info, handler.drift_log = True, Failing(), {}, None
    context = Context()
    out = handler.handle([{"body": _video(seconds=2.0)}, {"body": _video(seconds=2.0, audio=False)}], context)
    answers = [json.loads(o) for o in out]
    assert context.status == {0: 500, 1: 422}
    assert answers[0]["error"]["code"] == "prediction_failed" and "simulated" in answers[0]["error"]["message"]
    assert answers[1]["error"]["code"] == "no_audio"


def test_client_overlay_of_an_answer_about_another_video_is_refused(tmp_path, capsys) -> None:
    """`--overlay` with an answer that does not fit the video: a message naming both, exit 1, no file."""
    from unittest import mock

    import components.serve.client as client

    video = tmp_path / "v.mp4"
    video.write_bytes(_video(seconds=2.0))
    answer = {"size": [80, 80], "frames": [], "mask_format": "png", "model": {"num_classes": 2}, "num_frames": 0}
    with mock.patch.object(client.Client, "predict_video", return_value=answer):
        assert client.main([str(video), "--overlay", str(tmp_path / "o.mp4")]) == 1
    err = capsys.readouterr().err
    assert "cannot draw" in err and "is not about" in err and str(video) in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]
