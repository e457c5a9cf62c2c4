"""Getting the dataset into a pipeline step: from the DVC S3 remote (`dvc get` of a git revision) or,
for smoke tests, from the built-in synthetic generator.

Credentials never appear in code or parameters: DVC's S3 client reads the usual AWS variables
(`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_DEFAULT_REGION`, ...), which the cluster injects from a
Kubernetes Secret. `AWS_ENDPOINT_URL`, when set, points the remote at an S3-compatible server.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from components.common import StepError

SOURCES = ("dvc", "synth")


def s3_remote_config(environ: dict[str, str] | None = None) -> dict[str, str]:
    """DVC remote settings taken from the environment: `endpointurl` from AWS_ENDPOINT_URL (if set)."""
    env = os.environ if environ is None else environ
    endpoint = env.get("AWS_ENDPOINT_URL", "").strip()
    return {"endpointurl": endpoint} if endpoint else {}


def dvc_get(repo: str, path: str, out: Path, rev: str | None = None,
            remote_config: dict[str, str] | None = None) -> Path:
    """Download `path` (a DVC-tracked folder or file, or a git-tracked file such as params.yaml) of git
    repository `repo` at `rev` to `out`, replacing it in one rename at the end.

    `repo` is anything `dvc get` accepts (an https/ssh git URL or a local repository path); DVC-tracked
    data comes from the repository's default DVC remote, whose settings `remote_config` may extend (e.g.
    an endpoint URL). Returns `out`. Raises StepError naming the repository, revision and path when the
    repository cannot be read, the path is not tracked, or the remote refuses the download.
    """
    from dvc.exceptions import DvcException
    from dvc.repo.get import get
    from scmrepo.exceptions import SCMError

    if not repo or not path:
        raise StepError("fetch-data: a repository URL and a path inside it are required for the dvc source")
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    where = f"{path} of {repo}" + (f" at {rev}" if rev else "")
    with tempfile.TemporaryDirectory(prefix=f".{out.name}.partial-", dir=out.parent) as tmp:
        pulled = Path(tmp) / "pulled"
        try:
            get(repo, path, out=str(pulled), rev=rev or None, remote_config=remote_config or None)
        except (DvcException, SCMError, OSError) as exc:
            raise StepError(f"fetch-data: cannot get {where}: {exc}") from exc
        if out.is_dir() and not out.is_symlink():
            shutil.rmtree(out)
        elif out.exists():
            out.unlink()
        os.replace(pulled, out)
    return out


def synthesize(out: Path, synth: dict[str, Any]) -> dict[str, int]:
    """Write the synthetic AVSBench described by a `synth` section of params.yaml to `out`.

    Keys: size (tiny|demo|large), seed, and the difficulty knobs (components.params.SynthParams). Returns
    clip counts per part.
    """
    from components.pipeline.steps import section
    from components.synth.generate import generate, resolve_config

    settings = section("synth", synth)
    cfg = resolve_config(settings.size, **settings.knobs())
    return generate(Path(out), cfg, seed=settings.seed, overwrite=True, quirks=settings.quirks)


def fetch_dataset(out: Path, source: str, *, repo: str = "", rev: str = "", path: str = "",
                  synth: dict[str, Any] | None = None) -> dict[str, Any]:
    """Put the dataset folder (AVSBench layout) at `out` and describe where it came from.

    source "dvc": `dvc get` of `path` (params.yaml `data.root`) from git repository `repo` at `rev`, the
    bytes coming from the DVC S3 remote with credentials from the environment. source "synth": the
    synthetic generator with the `synth` section. Returns {"source", ...provenance} for the artifact
    metadata.
    """
    if source == "dvc":
        dvc_get(repo, path, Path(out), rev=rev or None, remote_config=s3_remote_config())
        if not Path(out).is_dir():
            raise StepError(f"fetch-data: {path} of {repo} is a file; the dataset must be a folder")
        return {"source": "dvc", "repo": repo, "rev": rev, "path": path}
    if source == "synth":
        counts = synthesize(Path(out), synth or {})
        return {"source": "synth", **{k: v for k, v in (synth or {}).items()}, "clips": sum(counts.values())}
    raise StepError(f"fetch-data: unknown source {source!r}; choose one of {', '.join(SOURCES)}")
