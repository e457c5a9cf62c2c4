"""The TorchServe handler: parse each request (components.serve.api), run components.infer, answer JSON.

TorchServe calls `handle(data, context)` with a batch of requests (up to the model's batchSize, waiting
at most maxBatchDelay ms). A bad request gets its own 4xx JSON answer; the other requests of the batch
still run, and the worker stays up. The model loads and warms up once, at worker start.
Settings: `avs-serve.json` inside the archive, then the `handler` section of the archive's model config,
then AVS_SERVE_* environment variables (see components.serve.api.Limits, AVS_SERVE_THREADS for the
CPU threads of a worker, AVS_SERVE_DRIFT_LOG for a JSONL file that receives every answered clip's drift
descriptors, read by `avs drift`).
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch

from components.serve.api import ApiError, ClipRequest, Limits, encode_result, parse_request

log = logging.getLogger(__name__)
CONFIG_NAME = "avs-serve.json"


def load_settings(model_dir: Path, handler_section: dict[str, Any] | None = None) -> dict[str, Any]:
    """The handler's settings: the archive's avs-serve.json updated by the model config's handler section."""
    path = Path(model_dir) / CONFIG_NAME
    settings = json.loads(path.read_text()) if path.is_file() else {}
    settings.update(handler_section or {})
    return settings


class AVSHandler:
    """Holds the Segmenter of one TorchServe worker."""

    def __init__(self) -> None:
        self.initialized = False
        self.segmenter = None
        self.limits = Limits()
        self.model_info: dict[str, Any] = {}
        self.drift_log: Path | None = None

    def initialize(self, context: Any) -> None:
        """Load both stages from the extracted archive onto the worker's device, then warm up."""
        from components.infer import Segmenter

        props = context.system_properties
        model_dir = Path(props["model_dir"])
        settings = load_settings(model_dir, (getattr(context, "model_yaml_config", None) or {}).get("handler"))
        self.limits = Limits.from_config(settings)
        drift_log = os.environ.get("AVS_SERVE_DRIFT_LOG") or settings.get("drift_log")
        self.drift_log = Path(drift_log) if drift_log else None
        threads = int(os.environ.get("AVS_SERVE_THREADS") or settings.get("threads") or 0)
        if threads > 0:
            torch.set_num_threads(threads)
        gpu = props.get("gpu_id")
        device = torch.device(f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu")
        stage2, sam = settings.get("stage2"), settings.get("sam_checkpoint")
        self.segmenter = Segmenter(model_dir / settings.get("stage1", "stage1.pt"),
                                   model_dir / stage2 if stage2 else None, device=device,
                                   mask_source=settings.get("mask_source", "regions"),
                                   maskige_size=int(settings.get("maskige_size", 224)),
                                   sam_checkpoint=model_dir / sam if sam else None,
                                   sam_model_type=settings.get("sam_model_type", "vit_b"))
        self.model_info = {**self.segmenter.info(), "name": context.model_name,
                           "version": settings.get("version", "")}
        warm = settings.get("warmup", {"seconds": 5, "size": 224})
        if warm:
            ms = self.segmenter.warmup(int(warm.get("seconds", 5)), (int(warm.get("size", 224)),) * 2,
                                       batch=int(props.get("batch_size") or 1))
            log.info("avs handler: warm-up took %.0f ms", ms)
        log.info("avs handler ready: %s, limits %s", self.model_info, self.limits)
        self.initialized = True

    def handle(self, data: list[dict[str, Any]] | None, context: Any) -> list[str] | None:
        """Answer a batch: one JSON string per request, with a per-request HTTP status."""
        if data is None:
            return None
        start = time.perf_counter()
        answers: list[dict[str, Any] | None] = [None] * len(data)
        status = [200] * len(data)
        parsed: list[tuple[int, ClipRequest]] = []
        for i, inputs in enumerate(data):
            try:
                parsed.append((i, parse_request(inputs, context.get_all_request_header(i), self.limits)))
            except ApiError as err:
                answers[i], status[i] = err.body(), err.status
            except Exception as exc:  # a malformed request must never take the worker down
                log.exception("avs handler: cannot parse request %d", i)
                err = ApiError(400, "bad_request", f"the request cannot be read ({type(exc).__name__}: {exc})")
                answers[i], status[i] = err.body(), err.status
        if parsed:
            try:
                results = self.segmenter.predict_batch([(r.frames, r.waveform, r.sample_rate) for _, r in parsed])
                for (i, request), result in zip(parsed, results, strict=True):
                    answers[i] = encode_result(result, request, self.model_info)
                    answers[i]["timings_ms"]["handler"] = round((time.perf_counter() - start) * 1000, 2)
                    answers[i]["timings_ms"]["requests"] = len(data)  # TorchServe's batch: this call's requests
                    self._log_drift(request, result, context, i)
            except Exception as exc:
                log.exception("avs handler: prediction failed")
                for i, _ in parsed:
                    answers[i] = {"error": {"status": 500, "code": "prediction_failed",
                                            "message": f"{type(exc).__name__}: {exc}"}}
                    status[i] = 500
        out = []
        for i, answer in enumerate(answers):
            if status[i] != 200:
                context.set_response_status(status[i], ApiError(status[i], "", "").phrase, idx=i)
            context.set_response_content_type(i, "application/json")
            out.append(json.dumps(answer, separators=(",", ":")))
        return out


    def _log_drift(self, request: ClipRequest, result: Any, context: Any, index: int) -> None:
        """Append the clip's drift descriptors to the drift log (when configured); never fails a request."""
        if self.drift_log is None:
            return
        try:
            from components.drift.live import log_request

            request_id = (getattr(context, "request_ids", None) or {}).get(index)
            log_request(self.drift_log, request.frames, request.waveform, request.sample_rate, result=result,
                        class_names=self.segmenter.class_names, fps=request.fps, duration=request.duration,
                        request_id=request_id, source="endpoint")
        except Exception:
            log.exception("avs handler: cannot append to the drift log %s", self.drift_log)


_service = AVSHandler()


def handle(data: list[dict[str, Any]] | None, context: Any) -> list[str] | None:
    """TorchServe entry point: initialise on the first call (data is None at load), then answer batches."""
    if not _service.initialized:
        _service.initialize(context)
    return _service.handle(data, context)
