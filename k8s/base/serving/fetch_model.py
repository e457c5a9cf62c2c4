"""Init step of the S3 model source: download the model archive into the pod's model store.

    MODEL_URI=s3://bucket/path/avs.mar python fetch_model.py /home/avs/model-store/avs.mar

Credentials come the usual boto3 way (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from a Secret, or the
pod's workload identity); S3_ENDPOINT_URL points at an S3-compatible server. The archive is written to a
temporary name and renamed, and MODEL_SHA256 (when set) must match, so the server never loads a partial
or unexpected file. Exit 0 on success, 1 with the reason on stderr.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from urllib.parse import urlparse


def fetch(uri: str, target: Path, endpoint: str | None = None, sha256: str | None = None) -> int:
    """Download s3://bucket/key to `target` (atomically); returns the number of bytes."""
    import boto3

    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise ValueError(f"MODEL_URI must look like s3://bucket/key.mar, got {uri!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f".{target.name}.partial")
    boto3.client("s3", endpoint_url=endpoint or None).download_file(parsed.netloc, parsed.path.lstrip("/"),
                                                                    str(partial))
    if sha256:
        digest = hashlib.sha256(partial.read_bytes()).hexdigest()
        if digest != sha256.lower():
            partial.unlink()
            raise ValueError(f"{uri}: sha256 {digest} differs from MODEL_SHA256 {sha256}")
    os.replace(partial, target)
    return target.stat().st_size


def main(argv: list[str] | None = None) -> int:
    """Command line: fetch_model.py TARGET, with MODEL_URI (and optionally S3_ENDPOINT_URL, MODEL_SHA256)."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not os.environ.get("MODEL_URI"):
        print("usage: MODEL_URI=s3://bucket/key.mar fetch_model.py TARGET", file=sys.stderr)
        return 1
    try:
        size = fetch(os.environ["MODEL_URI"], Path(argv[0]), os.environ.get("S3_ENDPOINT_URL"),
                     os.environ.get("MODEL_SHA256"))
    except Exception as exc:  # the init container's log is the only report: say what failed
        print(f"fetch_model: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    print(f"fetch_model: {os.environ['MODEL_URI']} -> {argv[0]} ({size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
