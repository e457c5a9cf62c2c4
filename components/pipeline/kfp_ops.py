"""Compiling the pipeline to YAML, checking the committed YAML, and submitting runs to a KFP server."""

from __future__ import annotations

import difflib
import subprocess
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from components.common import StepError
from components.params import Params


def cluster_config(**settings: Any):
    """A checked `ClusterConfig` from the non-None `settings`; StepError for a bad value."""
    from components.pipeline.cluster import ClusterConfig

    try:
        cluster = ClusterConfig(**{k: v for k, v in settings.items() if v is not None})
        cluster.check()
    except (TypeError, ValueError) as exc:
        raise StepError(f"pipeline: {exc}") from exc
    return cluster


def compile_to(params: Params, out: Path, cluster: Any = None) -> Path:
    """Compile the pipeline with `params` as parameter defaults to `out`."""
    from pipelines.avs_pipeline import compile_pipeline

    return compile_pipeline(params, Path(out), cluster)


def compiled_diff(params: Params, committed: Path, cluster: Any = None) -> str:
    """A unified diff between the committed YAML and a fresh compile ("" when identical)."""
    committed = Path(committed)
    if not committed.is_file():
        raise StepError(f"pipeline compile --check: {committed} does not exist (run `avs pipeline compile`)")
    with tempfile.TemporaryDirectory(prefix="avs-compile-") as tmp:
        fresh = compile_to(params, Path(tmp) / committed.name, cluster).read_text()
    old = committed.read_text()
    if fresh == old:
        return ""
    return "".join(difflib.unified_diff(old.splitlines(True), fresh.splitlines(True), str(committed),
                                        f"{committed} (compiled now)"))


def _git(*args: str) -> str:
    try:
        proc = subprocess.run(["git", *args], capture_output=True, text=True, check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip()


def git_defaults() -> tuple[str, str]:
    """(URL of the `origin` remote, commit of HEAD) of the repository here; "" where unknown."""
    return _git("remote", "get-url", "origin"), _git("rev-parse", "HEAD")


def run_arguments(params: Params, source: str, repo_url: str, repo_rev: str,
                  champion_metrics: str) -> dict[str, Any]:
    """The run's parameter values: every params.yaml section the pipeline takes, plus the run settings."""
    from pipelines.avs_pipeline import pipeline_defaults

    sections = pipeline_defaults(params)
    if source == "dvc" and not repo_url:
        raise StepError("pipeline submit: --repo-url is required with --source dvc (no git remote 'origin' here)")
    return {"source": source, "repo_url": repo_url, "repo_rev": repo_rev, "champion_metrics": champion_metrics,
            "dry_run_deploy": False, **sections}


def submit(params: Params, host: str, *, experiment: str, run_name: str, source: str, repo_url: str,
           repo_rev: str, champion_metrics: str = "", namespace: str | None = None, service_account: str | None = None,
           cluster: Any = None, token: str | None = None, client_factory: Callable[..., Any] | None = None
           ) -> dict[str, str]:
    """Compile the pipeline and start one run on the KFP server at `host`.

    The run gets every params.yaml section as arguments (so the run page shows exactly what it ran with),
    lands in `experiment` (created if missing) under `run_name`, and runs as `service_account` (the
    least-privilege account from k8s/, needed by the deploy step). `token`: a bearer token for servers
    behind authentication. Returns {"run_id", "url"}. `client_factory` replaces `kfp.Client` (tests).
    """
    import kfp

    arguments = run_arguments(params, source, repo_url, repo_rev, champion_metrics)
    factory = client_factory or kfp.Client
    with tempfile.TemporaryDirectory(prefix="avs-submit-") as tmp:
        package = compile_to(params, Path(tmp) / "avs_pipeline.yaml", cluster)
        try:
            client = factory(host=host, namespace=namespace or "kubeflow", existing_token=token)
            result = client.create_run_from_pipeline_package(
                str(package), arguments=arguments, run_name=run_name, experiment_name=experiment,
                namespace=namespace, service_account=service_account)
        except StepError:
            raise
        except Exception as exc:  # the kfp client raises ApiException, urllib3 and connection errors
            raise StepError(f"pipeline submit: the KFP server at {host} refused the run ({exc})") from exc
    run_id = str(result.run_id)
    return {"run_id": run_id, "url": f"{host.rstrip('/')}/#/runs/details/{run_id}"}
