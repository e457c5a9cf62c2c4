"""Serving latency and throughput: a 5-second 224x224 clip through TorchServe vs components.infer in-process.

Builds the two stages of the `tiny` preset at input size 224 (random weights unless --stage1/--stage2 give
trained ones: latency does not depend on the weights), packages them with `avs package`'s code, starts a
real TorchServe on loopback (token auth on, as deployed) and sends the same mp4 from 1 and 8 concurrent
clients. The in-process baseline does what the handler does minus HTTP and the frontend, batched the way
TorchServe batches: the clients' requests go to one worker thread (one TorchServe worker) that takes up
to --batch-size of them, waiting at most --max-batch-delay-ms for more, decodes them with
components.media and runs Segmenter.predict_batch once. So both sides have the same workers, batches and
CPU threads (--threads, default 1 per worker: on a shared machine two spinning OpenMP threads per process
slow everything down), and the ratio is the cost of serving: HTTP, the frontend, the JSON answer.
Prints p50/p95 latency (ms), throughput (clips/s), errors, and the p50 ratio served / in-process.
Usage: python benchmarks/serve.py [--requests 20] [--threads 1] [--batch-size 4] [--max-batch-delay-ms 10]
"""

from __future__ import annotations

import argparse
import io
import json
import math
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from components.common import free_ports
from components.media import decode_video, encode_video
from components.params import FeaturesParams, PackageParams


def make_clip(seconds: int = 5, size: int = 224, fps: int = 25, rate: int = 44100, width: int | None = None) -> bytes:
    """An mp4 (H.264 + AAC) of coloured discs moving over a textured background, with two tones; frames
    `size` high and `width` (default `size`) wide."""
    rng = np.random.default_rng(0)
    width = width or size
    yy, xx = np.mgrid[:size, :width]
    background = (rng.random((size, width, 3)) * 60 + 40).astype(np.uint8)
    frames = np.empty((seconds * fps, 3, size, width), np.uint8)
    for i in range(len(frames)):
        img = background.copy()
        t = i / fps
        for k, colour in enumerate(((220, 40, 40), (40, 200, 60), (50, 80, 230))):
            cx = width * (0.25 + 0.5 * (0.5 + 0.5 * math.sin(t * (0.7 + k * 0.4) + k)))
            cy = size * (0.3 + 0.15 * k + 0.1 * math.cos(t * 0.9 + k))
            img[(xx - cx) ** 2 + (yy - cy) ** 2 < (size * (0.08 + 0.03 * k)) ** 2] = colour
        frames[i] = img.transpose(2, 0, 1)
    t = np.arange(seconds * rate) / rate
    wave = 0.3 * np.sin(2 * np.pi * 440 * t) * (t % 1 < 0.6) + 0.2 * np.sin(2 * np.pi * 660 * t) * (t % 1 >= 0.4)
    buf = io.BytesIO()
    encode_video(buf, torch.from_numpy(frames), fps, torch.from_numpy(wave.astype(np.float32)), rate, "mp4")
    return buf.getvalue()


def tiny_checkpoints(folder: Path, size: int) -> tuple[Path, Path]:
    """best.pt files (the `avs train` format) of a tiny stage 1 and stage 2 at input size `size`."""
    from model import create_model

    paths = []
    for stage, classes in ((1, 2), (2, 71)):
        torch.manual_seed(stage)
        net = create_model("tiny", num_classes=classes, prior=stage == 2)
        path = folder / f"stage{stage}.pt"
        torch.save({"model": net.state_dict(), "model_config": net.cfg.to_dict(), "step": 0, "val_miou": 0.0,
                    "train_config": {"stage": stage, "preset": "tiny", "input_size": size}}, path)
        paths.append(path)
    return paths[0], paths[1]


class Batcher:
    """One in-process worker that batches like TorchServe: `__call__(clip)` queues the mp4 bytes and waits;
    the worker thread takes up to `batch_size` queued clips (waiting at most `delay_s` after the first for
    more), decodes them and runs `predict(list of (frames, waveform, sample_rate))` once."""

    def __init__(self, predict: Callable[[list], list], batch_size: int, delay_s: float):
        import queue

        self.predict, self.batch_size, self.delay_s = predict, batch_size, delay_s
        self.queue: queue.Queue = queue.Queue()
        self.batch_sizes: list[int] = []
        threading.Thread(target=self._work, daemon=True).start()

    def __call__(self, clip: bytes) -> object:
        from concurrent.futures import Future

        future: Future = Future()
        self.queue.put((clip, future))
        return future.result()

    def _work(self) -> None:
        import queue

        while True:
            batch = [self.queue.get()]
            deadline = time.perf_counter() + self.delay_s
            while len(batch) < self.batch_size:
                try:
                    batch.append(self.queue.get(timeout=max(0.0, deadline - time.perf_counter())))
                except queue.Empty:
                    break
            self.batch_sizes.append(len(batch))
            try:
                media = [decode_video(clip, max_seconds=20) for clip, _ in batch]
                answers = self.predict([(m.frames, m.waveform, m.sample_rate) for m in media])
                for (_, future), answer in zip(batch, answers, strict=True):
                    future.set_result(answer)
            except Exception as exc:  # handed to every waiting client, as a 500 would be
                for _, future in batch:
                    future.set_exception(exc)


def measure(call: Callable[[], object], clients: int, requests: int) -> dict[str, float]:
    """Run `requests` calls from `clients` threads; latency percentiles (ms), throughput, errors, and the
    median time the handler itself reported (served answers only)."""
    latencies: list[float] = []
    handler: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def one(_: int) -> None:
        start = time.perf_counter()
        try:
            answer = call()
        except Exception as exc:  # counted and reported, never hidden
            with lock:
                errors.append(f"{type(exc).__name__}: {exc}"[:200])
            return
        with lock:
            latencies.append((time.perf_counter() - start) * 1000)
            if isinstance(answer, dict):
                handler.append(answer["timings_ms"]["handler"])

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=clients) as pool:
        list(pool.map(one, range(requests)))
    wall = time.perf_counter() - start
    ordered = sorted(latencies) or [float("nan")]
    return {"clients": clients, "requests": requests, "errors": len(errors), "first_error": errors[0] if errors else "",
            "p50_ms": statistics.median(ordered), "p95_ms": ordered[min(len(ordered) - 1,
                                                                        math.ceil(0.95 * len(ordered)) - 1)],
            "throughput": len(latencies) / wall, "handler_p50_ms": statistics.median(handler) if handler else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=20, help="requests per measurement (8 clients: twice)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads per worker and in-process")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-batch-delay-ms", type=int, default=10)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--stage1", type=Path, help="a trained stage-1 best.pt instead of random tiny weights")
    parser.add_argument("--stage2", type=Path)
    parser.add_argument("--out", type=Path, help="also write the figures as JSON here")
    args = parser.parse_args()

    from components.infer import Segmenter
    from components.serve.client import Client
    from components.serve.package import package
    from components.serve.server import ServerSettings, start, stop

    torch.set_num_threads(args.threads)
    clip = make_clip(size=args.size)
    with tempfile.TemporaryDirectory(prefix="avs-serve-bench-") as tmp_dir:
        tmp = Path(tmp_dir)
        stage1, stage2 = (args.stage1, args.stage2) if args.stage1 else tiny_checkpoints(tmp, args.size)
        settings = PackageParams(batch_size=args.batch_size, max_batch_delay_ms=args.max_batch_delay_ms, workers=1,
                                 threads=args.threads, warmup_size=args.size, max_payload_mb=50)
        package(stage1, stage2, tmp / "store", None, settings, FeaturesParams(mask_source="regions", maskige_size=224))
        ports = free_ports(3)
        server = ServerSettings(run_dir=tmp / "run", model_store=tmp / "store", inference_port=ports[0],
                                management_port=ports[1], metrics_port=ports[2], token_auth=True, threads=args.threads)
        segmenter = Segmenter(stage1, stage2, maskige_size=224)
        segmenter.warmup(5, (args.size, args.size))
        info = segmenter.info()

        batcher = Batcher(segmenter.predict_batch, args.batch_size, args.max_batch_delay_ms / 1000)

        print(f"clip: 5 s, {args.size}x{args.size}, {len(clip) / 1e3:.0f} kB mp4; model: tiny x 2 stages at input "
              f"{args.size}; {info['device']}, deformable attention {info['deform_attn']}, {args.threads} thread(s) "
              f"per worker, 1 worker, batch {args.batch_size} / {args.max_batch_delay_ms} ms on both sides",
              flush=True)
        rows = {("in-process", 1): measure(lambda: batcher(clip), 1, args.requests),
                ("in-process", 8): measure(lambda: batcher(clip), 8, 2 * args.requests)}
        sizes = batcher.batch_sizes[args.requests:]
        print(f"in-process batches at 8 clients: mean size {statistics.mean(sizes):.1f}", flush=True)
        state = start(server, timeout=600)
        try:
            client = Client(state["inference_url"], key_file=state["key_file"])
            client.predict_video(clip)  # first request after load
            rows[("TorchServe", 1)] = measure(lambda: client.predict_video(clip), 1, args.requests)
            rows[("TorchServe", 8)] = measure(lambda: client.predict_video(clip), 8, 2 * args.requests)
        finally:
            stop(server.run_dir)
    print(f"{'path':12s} {'clients':>7s} {'requests':>8s} {'errors':>6s} {'p50 ms':>8s} {'p95 ms':>8s} {'clips/s':>8s} "
          f"{'handler p50 ms':>15s}")
    for (path, clients), r in rows.items():
        handler = f"{r['handler_p50_ms']:15.0f}" if r["handler_p50_ms"] is not None else f"{'-':>15s}"
        print(f"{path:12s} {clients:7d} {r['requests']:8d} {r['errors']:6d} {r['p50_ms']:8.0f} {r['p95_ms']:8.0f} "
              f"{r['throughput']:8.2f} {handler}")
    for clients in (1, 8):
        ratio = rows[("TorchServe", clients)]["p50_ms"] / rows[("in-process", clients)]["p50_ms"]
        print(f"p50 TorchServe / in-process, {clients} client(s): {ratio:.2f}x")
    errors = [r["first_error"] for r in rows.values() if r["errors"]]
    if errors:
        print("errors:", *errors, sep="\n  ")
    if args.out:
        args.out.write_text(json.dumps({f"{p}/{c}": r for (p, c), r in rows.items()}, indent=2) + "\n")


if __name__ == "__main__":
    main()
