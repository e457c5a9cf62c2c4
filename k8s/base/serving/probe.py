"""Kubernetes exec probe for TorchServe with token authorisation (standard library only).

TorchServe checks its token before answering /ping, and writes fresh random keys to key_file.json in its
working folder at every start, so an httpGet probe cannot carry the right header. This probe reads the
current keys, and when the inference or management key has expired it asks the management API for a new
one with the (non-expiring) API key, which rewrites the key file.

    python3 probe.py live    # the frontend answers /ping (liveness)
    python3 probe.py ready   # /ping says Healthy and the model has a READY worker (startup, readiness)

Exit 0 when the check holds, 1 otherwise (the reason on stderr). Without a key file the requests carry
no token (token auth disabled).
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path


def read_keys(path: Path) -> dict:
    """The key file's content, {} when there is none (token auth off)."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def expired(entry: dict) -> bool:
    """Whether a key entry's "expiration time" (ISO 8601, nanoseconds allowed) has passed."""
    stamp = str(entry.get("expiration time", ""))
    if not stamp:
        return False
    stamp = stamp.rstrip("Z")
    if "." in stamp:
        head, frac = stamp.split(".", 1)
        stamp = f"{head}.{frac[:6]}"
    try:
        when = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
    except ValueError:
        return False
    return when <= datetime.now(UTC)


def get(url: str, key: str | None, timeout: float) -> tuple[int, str]:
    """(status, body) of a GET with an optional bearer token; status 0 when nothing answers."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as err:
        return 0, str(err)


def key_for(kind: str, args: argparse.Namespace) -> str | None:
    """The current `kind` key, renewed through the management API first if it has expired."""
    keys = read_keys(args.key_file)
    if not keys:
        return None
    entry = keys.get(kind, {})
    if expired(entry) and keys.get("API", {}).get("key"):
        get(f"http://{args.host}:{args.management_port}/token?type={kind}", keys["API"]["key"], args.timeout)
        entry = read_keys(args.key_file).get(kind, {})
    return entry.get("key")


def main(argv: list[str] | None = None) -> int:
    """Run one probe; the exit code is the verdict."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["live", "ready"])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080, help="inference API port")
    parser.add_argument("--management-port", type=int, default=8081)
    parser.add_argument("--model", default="avs")
    parser.add_argument("--key-file", type=Path, default=Path("/home/avs/run/key_file.json"))
    parser.add_argument("--timeout", type=float, default=4.0)
    args = parser.parse_args(argv)

    status, body = get(f"http://{args.host}:{args.port}/ping", key_for("inference", args), args.timeout)
    if status != 200:
        print(f"probe: /ping answered {status or 'nothing'}: {body[:200]}", file=sys.stderr)
        return 1
    if args.mode == "live":
        return 0
    if '"Healthy"' not in body:
        print(f"probe: /ping says {body.strip()[:200]}", file=sys.stderr)
        return 1
    status, body = get(f"http://{args.host}:{args.management_port}/models/{args.model}", key_for("management", args),
                       args.timeout)
    if status != 200:
        print(f"probe: model {args.model} not described ({status}): {body[:200]}", file=sys.stderr)
        return 1
    workers = [w for model in json.loads(body) for w in model.get("workers", [])]
    if not any(w.get("status") == "READY" for w in workers):
        print(f"probe: model {args.model} has no READY worker ({[w.get('status') for w in workers]})", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
