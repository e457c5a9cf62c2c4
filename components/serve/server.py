"""`avs serve start|stop|status`: TorchServe on this machine with our config.properties.

Everything of one server lives in its run folder (default `.serve/`): the rendered `config.properties`,
`logs/` (TorchServe's own logs plus `torchserve.out`, the launcher's output), `tmp/` (TorchServe's pid
file and the extracted archives, so servers in different folders never collide) and, with token auth
on, `key_file.json` holding the inference, management and API keys.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import string
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from components.common import StepError
from components.params import PackageParams, Params, ServeParams

TEMPLATE = Path(__file__).with_name("config.properties")
KEY_FILE = "key_file.json"


@dataclass
class ServerSettings:
    """One TorchServe server: where it keeps its files, what it serves, on which ports, with which auth.

    address: where the inference and metrics APIs listen (127.0.0.1 by default, 0.0.0.0 in a pod); the
    management API always listens on `management_address`. max_payload_mb: the handler's JSON-413 limit;
    the frontend's hard limit is twice that plus 1 MiB.
    """

    run_dir: Path = Path(".serve")
    model_store: Path = Path(ServeParams.model_store)
    model_name: str = PackageParams.model_name
    address: str = ServeParams.address
    management_address: str = "127.0.0.1"
    inference_port: int = ServeParams.inference_port
    management_port: int = ServeParams.management_port
    metrics_port: int = ServeParams.metrics_port
    token_auth: bool = ServeParams.token_auth
    token_expiration_min: int = ServeParams.token_expiration_min
    max_payload_mb: float = PackageParams.max_payload_mb
    max_seconds: float = PackageParams.max_seconds
    response_timeout_s: int = PackageParams.response_timeout_s
    number_of_gpu: int | None = None
    job_queue_size: int = 100
    threads: int = PackageParams.threads

    @property
    def load_models(self) -> str:
        return f"{self.model_name}={self.model_name}.mar"

    def url(self, api: str = "inference") -> str:
        """Base URL of the inference, management or metrics API (loopback when bound to all addresses)."""
        host = {"inference": self.address, "metrics": self.address, "management": self.management_address}[api]
        host = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        port = {"inference": self.inference_port, "management": self.management_port, "metrics": self.metrics_port}[api]
        return f"http://{host}:{port}"


def frontend_request_limit(max_payload_mb: float) -> int:
    """TorchServe's max_request_size in bytes: room above the handler's limit, so the handler answers first."""
    return int(2 * max_payload_mb * 1024 * 1024) + 1024 * 1024


def render_config(settings: ServerSettings, model_store: str | None = None) -> str:
    """config.properties text for `settings` (model_store: the path as the server sees it)."""
    values = {
        "address": settings.address, "management_address": settings.management_address,
        "inference_port": settings.inference_port, "management_port": settings.management_port,
        "metrics_port": settings.metrics_port,
        "model_store": model_store if model_store is not None else str(Path(settings.model_store).resolve()),
        "load_models": settings.load_models,
        "disable_token_authorization": str(not settings.token_auth).lower(),
        "token_expiration_min": settings.token_expiration_min,
        "max_request_size": frontend_request_limit(settings.max_payload_mb),
        "max_response_size": 64 * 1024 * 1024,
        "response_timeout": settings.response_timeout_s,
        "number_of_gpu": settings.number_of_gpu if settings.number_of_gpu is not None else _gpu_count(),
        "job_queue_size": settings.job_queue_size,
    }
    return string.Template(TEMPLATE.read_text()).substitute(values)


def _gpu_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def read_key(run_dir: Path, kind: str = "inference") -> str | None:
    """The current `kind` key ("inference", "management" or "API") from the run folder's key_file.json;
    None when token auth is off (no key file)."""
    path = Path(run_dir) / KEY_FILE
    try:
        keys = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return keys.get(kind, {}).get("key")


def http_get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, str]:
    """(status, body) of a GET; status 0 when nothing answers."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError):
        return 0, ""


def _state_file(run_dir: Path) -> Path:
    return Path(run_dir) / "server.json"


def _pid(run_dir: Path) -> int | None:
    pid_file = Path(run_dir) / "tmp" / ".model_server.pid"
    try:
        pid = int(pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        return pid
    return pid


def _env(run_dir: Path, settings: ServerSettings) -> dict[str, str]:
    tmp, logs = run_dir / "tmp", run_dir / "logs"
    env = {**os.environ, "TMPDIR": str(tmp), "TEMP": str(tmp), "LOG_LOCATION": str(logs),
           "METRICS_LOCATION": str(logs), "AVS_SERVE_MAX_PAYLOAD_MB": str(settings.max_payload_mb),
           "AVS_SERVE_MAX_SECONDS": str(settings.max_seconds)}
    if settings.threads:
        env["AVS_SERVE_THREADS"] = str(settings.threads)
    return env


def _torchserve() -> str:
    local = Path(sys.executable).with_name("torchserve")
    found = str(local) if local.is_file() else shutil.which("torchserve")
    if not found:
        raise StepError("torchserve not found (pip install torchserve==0.12.0; it needs Java 17)")
    if not shutil.which("java"):
        raise StepError("java not found: TorchServe needs a Java 17 runtime on PATH")
    return found


def _log_tail(run_dir: Path, lines: int = 25) -> str:
    chunks = []
    for name in ("torchserve.out", "model_log.log", "ts_log.log"):
        path = run_dir / "logs" / name
        if path.is_file():
            text = path.read_text(errors="replace").splitlines()[-lines:]
            chunks.append(f"--- {path} ---\n" + "\n".join(text))
    return "\n".join(chunks)


def start(settings: ServerSettings, timeout: float = 300.0) -> dict[str, Any]:
    """Start TorchServe in the background and wait until the model answers; returns `status()`.

    The launcher's output goes to run_dir/logs/torchserve.out (TorchServe's Java process keeps
    inherited stdout open, so it must not be a pipe). StepError when the archive is missing, a server
    already runs from this folder, or the model is not ready within `timeout` seconds (with the log tail).
    """
    run_dir = Path(settings.run_dir).resolve()
    store = Path(settings.model_store).resolve()
    mar = store / f"{settings.model_name}.mar"
    if not mar.is_file():
        why = ""
        record = store / "package.json"
        if record.is_file():
            why = " (" + "; ".join(json.loads(record.read_text()).get("reasons", [])) + ")"
        raise StepError(f"{mar} not found: run avs package{why}")
    if _pid(run_dir) is not None:
        raise StepError(f"a TorchServe from {run_dir} is already running (avs serve stop --run-dir {run_dir})")
    for sub in ("logs", "tmp"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    (run_dir / KEY_FILE).unlink(missing_ok=True)
    config = run_dir / "config.properties"
    config.write_text(render_config(settings, str(store)))
    state = {**asdict(settings), "run_dir": str(run_dir), "model_store": str(store)}
    _state_file(run_dir).write_text(json.dumps(state, indent=2) + "\n")
    cmd = [_torchserve(), "--start", "--ncs", "--ts-config", str(config), "--model-store", str(store),
           "--models", settings.load_models]
    if not settings.token_auth:
        cmd.append("--disable-token-auth")
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run(cmd, cwd=run_dir, env=_env(run_dir, settings), stdout=out, stderr=subprocess.STDOUT,
                       stdin=subprocess.DEVNULL, start_new_session=True, timeout=120)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        current = status(run_dir)
        if current["ready"]:
            return current
        if current["pid"] is None and time.monotonic() > deadline - timeout + 10:
            raise StepError(f"TorchServe exited during start-up; logs in {run_dir / 'logs'}\n{_log_tail(run_dir)}")
        time.sleep(1.0)
    raise StepError(f"model {settings.model_name} not ready after {timeout:.0f} s (server left running; "
                    f"avs serve stop --run-dir {run_dir}); logs in {run_dir / 'logs'}\n{_log_tail(run_dir)}")


def status(run_dir: Path) -> dict[str, Any]:
    """What the server of `run_dir` is doing: pid, health (/ping), the model's workers, URLs.

    {"running", "pid", "healthy", "ready" (a worker is READY), "workers", "inference_url", "metrics_url",
    "token_auth", "key_file", "logs"}.
    """
    run_dir = Path(run_dir).resolve()
    try:
        saved = json.loads(_state_file(run_dir).read_text())
    except (OSError, json.JSONDecodeError):
        return {"running": False, "pid": None, "healthy": False, "ready": False, "run_dir": str(run_dir)}
    settings = ServerSettings(**{**saved, "run_dir": Path(saved["run_dir"]), "model_store": Path(saved["model_store"])})
    pid = _pid(run_dir)
    code, body = http_get(settings.url() + "/ping", read_key(run_dir, "inference")) if pid else (0, "")
    workers: list[dict[str, Any]] = []
    if pid:
        mcode, mbody = http_get(f"{settings.url('management')}/models/{settings.model_name}",
                                read_key(run_dir, "management"))
        if mcode == 200:
            described = json.loads(mbody)
            workers = [{"id": w.get("id"), "status": w.get("status"), "pid": w.get("pid"), "gpu": w.get("gpu")}
                       for w in (described[0].get("workers", []) if described else [])]
    healthy = code == 200 and "Healthy" in body and "Unhealthy" not in body
    return {"running": pid is not None, "pid": pid, "healthy": healthy,
            "ready": healthy and any(w["status"] == "READY" for w in workers), "workers": workers,
            "model": settings.model_name, "inference_url": settings.url(), "metrics_url": settings.url("metrics"),
            "predict_url": f"{settings.url()}/predictions/{settings.model_name}",
            "token_auth": settings.token_auth, "key_file": str(run_dir / KEY_FILE) if settings.token_auth else None,
            "logs": str(run_dir / "logs"), "run_dir": str(run_dir)}


def stop(run_dir: Path, timeout: float = 60.0) -> bool:
    """Stop the server of `run_dir` (torchserve --stop, then SIGTERM/SIGKILL if it lingers); False if none ran."""
    run_dir = Path(run_dir).resolve()
    pid = _pid(run_dir)
    if pid is None:
        return False
    try:
        saved = json.loads(_state_file(run_dir).read_text())
        settings = ServerSettings(**{**saved, "run_dir": Path(saved["run_dir"]),
                                     "model_store": Path(saved["model_store"])})
    except (OSError, json.JSONDecodeError, TypeError):
        settings = ServerSettings(run_dir=run_dir)
    with open(run_dir / "logs" / "torchserve.out", "ab") as out:
        subprocess.run([_torchserve(), "--stop"], cwd=run_dir, env=_env(run_dir, settings), stdout=out,
                       stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, timeout=timeout)
    deadline = time.monotonic() + timeout
    for sig in (signal.SIGTERM, signal.SIGKILL):
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.2)
        if not _alive(pid):
            break
        os.kill(pid, sig)
        deadline = time.monotonic() + 10
    (run_dir / "tmp" / ".model_server.pid").unlink(missing_ok=True)
    return True


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie child counts as gone
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except OSError:
        return True


def settings_from(params: Params, run_dir: Path) -> ServerSettings:
    """ServerSettings from the `serve` and `package` sections of `params` (the command line's options are
    overrides of those sections), its files under `run_dir`."""
    serve, package = params.serve, params.package
    return ServerSettings(**{**asdict(serve), "model_store": Path(serve.model_store), "run_dir": Path(run_dir),
                             "model_name": package.model_name, "max_payload_mb": package.max_payload_mb,
                             "max_seconds": package.max_seconds, "response_timeout_s": package.response_timeout_s,
                             "threads": package.threads})
