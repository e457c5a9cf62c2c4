"""The DVC data stages: a second `dvc repro` does nothing, and data round-trips through an S3 remote
(a real moto S3 server on loopback): push, wipe the local copy and cache, pull, compare byte for byte."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import moto_s3_server

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow
STAGES = ("synth", "validate", "features", "train_stage1", "predict_masks", "train_stage2", "evaluate", "gate")


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout + proc.stderr


def _tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def env() -> dict[str, str]:
    bin_dir = str(Path(sys.executable).parent)  # where `avs` and `dvc` are installed
    return {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""),
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
            "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
            "GIT_COMMITTER_EMAIL": "t@t"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, env: dict[str, str]) -> Path:
    """A fresh git + DVC project with this repo's pipeline, set to the tiny synthetic size, reproduced once."""
    root = tmp_path_factory.mktemp("project")
    for name in ("dvc.yaml", ".dvcignore"):
        shutil.copy(REPO / name, root / name)
    for code in ("components", "model", "cuda_ext"):  # stage dependencies
        shutil.copytree(REPO / code, root / code, ignore=shutil.ignore_patterns("__pycache__"))
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["synth"]["size"] = "tiny"
    params["features"]["maskige_size"] = 64
    params["train"].update(input_size=64, checkpoint_every=2, val_every=2)
    params["train_stage1"].update(steps=4, audio_pretrain_steps=0)
    params["train_stage2"].update(steps=2)
    params["gate"]["minimums"] = {"s4.test.miou": 0.0}
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    _run(["git", "init", "-q"], root, env)
    _run(["dvc", "init", "-q"], root, env)
    out = _run(["dvc", "repro"], root, env)
    for stage in STAGES:
        assert f"Running stage '{stage}'" in out
    return root


def test_second_repro_does_nothing(project: Path, env: dict[str, str]) -> None:
    before = {p: p.stat().st_mtime_ns for p in (project / "data" / "synthetic").rglob("*")}
    out = _run(["dvc", "repro"], project, env)
    assert "Running stage" not in out
    for stage in STAGES:
        assert f"Stage '{stage}' didn't change, skipping" in out
    assert {p: p.stat().st_mtime_ns for p in (project / "data" / "synthetic").rglob("*")} == before
    status = _run(["dvc", "status"], project, env)
    assert "up to date" in status


def test_each_training_stage_depends_on_its_own_train_sections() -> None:
    """Each training stage tracks the shared `train` section and its own `train_stageN`, not the other stage's
    (so a stage-2 sweep leaves stage 1 alone)."""
    stages = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"]
    for stage in (1, 2):
        listed = {p for p in stages[f"train_stage{stage}"]["params"] if isinstance(p, str)}
        assert listed == {"train", f"train_stage{stage}"}, f"train_stage{stage}"


def test_a_queued_parameter_sweep_runs_each_value(project: Path, env: dict[str, str]) -> None:
    """`dvc exp run --queue -S 'train_stage2.steps=2,3'` then `--run-all`: two experiments, each with its own
    value and metrics; the workspace is untouched and stage 1 is not retrained for a stage-2 setting."""
    _run(["git", "add", "-A"], project, env)
    _run(["git", "commit", "-q", "-m", "reproduced"], project, env)
    workspace = (project / "params.yaml").read_text()
    _run(["dvc", "exp", "run", "--queue", "-S", "train_stage2.steps=2,3"], project, env)
    out = _run(["dvc", "exp", "run", "--run-all", "--jobs", "1"], project, env)
    assert "Running stage 'train_stage2'" in out and "Running stage 'train_stage1'" not in out
    shown = subprocess.run(["dvc", "exp", "show", "--json"], cwd=project, env=env, capture_output=True, text=True)
    experiments = json.loads(shown.stdout)[1]["experiments"]
    assert [e["executor"]["state"] for e in experiments] == ["success", "success"]
    runs = [e["revs"][0] for e in experiments]
    steps = {r["data"]["params"]["params.yaml"]["data"]["train_stage2"]["steps"]:
             r["data"]["metrics"]["models/stage2/summary.json"]["data"]["steps"] for r in runs}
    assert steps == {2: 2, 3: 3}
    assert (project / "params.yaml").read_text() == workspace
    assert "Running stage" not in _run(["dvc", "repro"], project, env)


def test_features_rerun_only_when_their_inputs_change(project: Path, env: dict[str, str]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["features"]["maskige_size"] = 96
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "repro"], project, env)
    assert "Running stage 'features'" in out and "Running stage 'train_stage1'" in out  # and what follows
    assert "Running stage 'synth'" not in out and "Running stage 'validate'" not in out
    assert "Running stage" not in _run(["dvc", "repro"], project, env)
    # a change to the data itself reruns validation and features, not generation
    params["synth"]["seed"] = 1
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    out = _run(["dvc", "repro"], project, env)
    for stage in ("synth", "validate", "features"):
        assert f"Running stage '{stage}'" in out


@pytest.fixture
def s3_endpoint(env: dict[str, str]) -> Iterator[str]:
    """A moto S3 server on a free loopback port, stopped after the test."""
    with moto_s3_server(env) as url:
        yield url


def test_push_wipe_pull_round_trip(project: Path, env: dict[str, str], s3_endpoint: str) -> None:
    import boto3

    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1",
                      aws_access_key_id="testing", aws_secret_access_key="testing")
    s3.create_bucket(Bucket="avs-data")
    _run(["dvc", "remote", "add", "-f", "-d", "storage", "s3://avs-data/avsbench"], project, env)
    _run(["dvc", "remote", "modify", "storage", "endpointurl", s3_endpoint], project, env)

    outputs = [project / "data" / "synthetic", project / "data" / "features", project / "reports" / "validation",
               project / "data" / "priors", project / "reports" / "evaluation"]
    original = {str(o): _tree_bytes(o) for o in outputs}
    assert all(original.values())
    _run(["dvc", "push"], project, env)
    stored = s3.list_objects_v2(Bucket="avs-data", Prefix="avsbench/")
    assert stored.get("KeyCount", 0) > 0

    for o in outputs:
        shutil.rmtree(o)
    shutil.rmtree(project / ".dvc" / "cache")
    _run(["dvc", "pull"], project, env)
    assert {str(o): _tree_bytes(o) for o in outputs} == original
    assert "up to date" in _run(["dvc", "status"], project, env)
