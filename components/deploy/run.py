"""`avs deploy`: check the gate, optionally upload the archive to S3, render, validate, apply, wait."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from components.common import StepError
from components.deploy.apply import DeployError, KubeApi, connect, deploy
from components.deploy.manifests import BASE, DeploySettings, render, to_yaml, validate
from components.params import DeployParams, PackageParams


def settings_from_params(deploy: DeployParams, package: PackageParams, **overrides: Any) -> DeploySettings:
    """DeploySettings from the `deploy` and `package` parameter sections ("" means unset: the base's value)
    plus the `overrides` that are not None."""
    values: dict[str, Any] = {k: v for k, v in asdict(deploy).items() if k != "timeout_s" and v != ""}
    values.update(model_name=package.model_name, max_seconds=package.max_seconds,
                  max_payload_mb=package.max_payload_mb)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return DeploySettings(**values)


def check_gate(gate: Path | None, force: bool) -> list[str]:
    """Reasons to refuse (the gate failed); empty when it passed, was not given, or `force`."""
    if gate is None:
        return []
    from components.serve.package import read_gate

    decision = read_gate(gate)
    if decision["passed"] or force:
        return []
    return [f"the gate failed ({gate}): " + "; ".join(decision.get("reasons", []))]


def upload_archive(mar: Path, uri: str, endpoint: str | None = None) -> str:
    """Upload a .mar to s3://bucket/key (boto3's usual credentials); returns its sha256. Refuses an
    archive whose package.json says it was not built from a passing gate."""
    from components.serve.package import sha256

    mar = Path(mar)
    if not mar.is_file():
        raise StepError(f"{mar}: archive not found (run avs package)")
    record_file = mar.with_name("package.json")
    if record_file.is_file():
        record = json.loads(record_file.read_text())
        if not record.get("packaged", False) or any(r.startswith("forced") for r in record.get("reasons", [])):
            raise DeployError(f"{mar}: package.json says the gate did not pass: " + "; ".join(record["reasons"]))
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc or not parsed.path.strip("/"):
        raise StepError(f"--model-uri must look like s3://bucket/key.mar, got {uri!r}")
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    digest = sha256(mar)
    try:
        boto3.client("s3", endpoint_url=endpoint or None).upload_file(str(mar), parsed.netloc, parsed.path.lstrip("/"),
                                                                      ExtraArgs={"Metadata": {"sha256": digest}})
    except (BotoCoreError, ClientError) as exc:
        raise StepError(f"uploading {mar} to {uri} failed ({exc})") from exc
    return digest


def run_deploy(settings: DeploySettings, *, manifests: Path = BASE, gate: Path | None = None,
               upload: Path | None = None, render_to: str | None = None, kubeconfig: str | None = None,
               context: str | None = None, timeout: float = 1200.0, force: bool = False,
               api: KubeApi | None = None) -> dict[str, Any]:
    """The deploy step. gate: refuse (DeployError, exit 1) when this decision failed, unless `force`.
    upload: a .mar to put at settings.model_uri first (its sha256 is then checked by the init step).
    render_to: write the validated objects as YAML there ("-" = stdout) instead of applying them.
    api: the cluster (default: connect(kubeconfig, context)). Returns a summary dict."""
    refused = check_gate(gate, force)
    if refused:
        raise DeployError("not deploying: " + "; ".join(refused))
    if upload is not None:
        if not settings.model_uri:
            raise StepError("--upload needs --model-uri s3://bucket/key.mar")
        settings = replace(settings, model_sha256=upload_archive(upload, settings.model_uri, settings.s3_endpoint))
    objects = render(settings, manifests)
    validate(objects)
    summary: dict[str, Any] = {"settings": asdict(settings), "objects": [f"{o['kind']}/{o['metadata']['name']}"
                                                                         for o in objects]}
    if render_to is not None:
        text = to_yaml(objects)
        if render_to == "-":
            sys.stdout.write(text)
        else:
            Path(render_to).parent.mkdir(parents=True, exist_ok=True)
            Path(render_to).write_text(text)
        summary["rendered"] = render_to
        return summary
    rollout = deploy(objects, api or connect(kubeconfig, context), timeout=timeout)
    summary.update({"applied": rollout.applied, "ready": rollout.ready, "wanted": rollout.wanted,
                    "seconds": rollout.seconds, "notes": rollout.notes})
    return summary
