"""`avs pipeline run-local`: the whole Kubeflow pipeline on this machine with kfp.local, no cluster.

Every component runs as a subprocess of this Python (SubprocessRunner without a virtualenv: the project
is installed here as in the image), with real artifact passing through a local pipeline root. Kubernetes
settings (GPUs, node selectors, Secrets) have no effect locally. Task outputs are cached under the work
folder, so a second run with other gate parameters only reruns the gate and what follows it.
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from components.common import StepError, write_json_atomic
from components.params import Params, load_params

# Small enough for a laptop or CI: the tiny synthetic AVSBench, 32 px inputs, a few training steps.
LOCAL_OVERRIDES: tuple[str, ...] = (
    "synth.size=tiny",
    "features.maskige_size=32",
    "train.input_size=32",
    "train.batch_clips=2",
    "train.checkpoint_every=1000",
    "train.val_every=1000",
    "train_stage1.steps=2",
    "train_stage1.audio_pretrain_steps=0",
    "train_stage2.steps=1",
)

def pipeline_tasks(pipeline: Any) -> tuple[list[str], list[str]]:
    """(tasks of the main graph, tasks inside the gate's condition) of a built pipeline, by task name."""
    spec = pipeline.pipeline_spec

    def walk(dag: Any, guarded: bool, found: tuple[list[str], list[str]]) -> tuple[list[str], list[str]]:
        for name, task in dag.tasks.items():
            component = spec.components[task.component_ref.name]
            if component.HasField("dag"):
                walk(component.dag, True, found)
            else:
                found[1 if guarded else 0].append(name)
        return found

    main, guarded = walk(spec.root.dag, False, ([], []))
    return sorted(main), sorted(guarded)


def local_params(path: Path | None, overrides: list[str] | tuple[str, ...] = ()) -> Params:
    """The parameters file `path` with the local-run defaults (LOCAL_OVERRIDES), then the user's
    `overrides`, applied (ParamsError names a bad key)."""
    return load_params(path, [*LOCAL_OVERRIDES, *overrides])


def _plain(text: str) -> str:
    """`text` without terminal colour codes."""
    return re.sub(r"\x1b\[[0-9;]*m", "", text)


def run_local(params: Params, workdir: Path, champion_metrics: str = "", cache: bool = True,
              source: str = "synth") -> dict[str, Any]:
    """Run the pipeline with kfp.local under `workdir`; returns (and writes to workdir/run-local.json) a
    summary: status, run folder, tasks executed / taken from the cache / skipped by the gate, the gate's
    decision, and every output artifact's path.

    `params` must already hold the values to run with (see `local_params`). `source` "synth" generates
    the data from the `synth` section; "dvc" would read the DVC remote as on the cluster.
    """
    from kfp import local

    from pipelines.avs_pipeline import build_pipeline, pipeline_defaults

    workdir = Path(workdir).resolve()
    runs = workdir / "runs"
    runs.mkdir(parents=True, exist_ok=True)
    (workdir / "workspace").mkdir(exist_ok=True)
    before = {p.name for p in runs.iterdir()}
    try:
        pipeline = build_pipeline(params)
    except ValueError as exc:
        raise StepError(f"run-local: {exc}") from exc
    local.init(runner=local.SubprocessRunner(use_venv=False), pipeline_root=str(runs),
               workspace_root=str(workdir / "workspace"), raise_on_error=True, enable_caching=cache,
               cache_root=str(workdir / "cache"))
    error, decision = None, None
    with warnings.catch_warnings():
        # the project image is not a "python" image and GPUs are not available here: both expected
        warnings.filterwarnings("ignore", message=".*non-Python base image.*", category=RuntimeWarning)
        warnings.filterwarnings("ignore", message=".*have no effect in the current local runner.*")
        try:
            # no cluster here: the deploy step writes the validated TorchServe objects instead of applying them
            result = pipeline(source=source, champion_metrics=champion_metrics, dry_run_deploy=True,
                              **pipeline_defaults(params))
            decision = json.loads(Path(result.output.path).read_text())
        except RuntimeError as exc:  # kfp.local: "Pipeline ... finished with status FAILURE. Inner task failed: ..."
            error = _plain(str(exc))
    new = sorted(p for p in runs.iterdir() if p.name not in before and p.is_dir())
    run_dir = new[-1] if new else None
    done = {p.name for p in run_dir.iterdir() if (p / "executor_output.json").is_file()} if run_dir else set()
    main, guarded = pipeline_tasks(pipeline)
    outputs = {task: sorted(str(p) for p in (run_dir / task).iterdir() if p.name != "executor_output.json")
               for task in sorted(done)} if run_dir else {}
    summary = {"status": "FAILED" if error else "SUCCEEDED", "error": error,
               "run_dir": str(run_dir) if run_dir else None,
               "executed": sorted(done),
               # caching is off for the guarded steps, so a guarded step that did not run was skipped by the gate
               "cached": sorted(t for t in main if t not in done) if not error else [],
               "skipped": sorted(t for t in guarded if t not in done) if not error else [],
               "gate": decision, "outputs": outputs}
    write_json_atomic(workdir / "run-local.json", summary)
    return summary
