"""The Kubeflow pipeline: the committed YAML matches a fresh compile, its cluster settings (GPU steps, the S3
Secret, the gate's guard), parameter overrides, submission through the kfp client, fetching data from a DVC
S3 remote (a real moto S3 server on loopback), and the whole pipeline under kfp.local with both gate
outcomes: the guarded steps run when the gate passes and are skipped when it fails."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import yaml

from components.cli import main
from components.common import StepError
from components.params import Params, apply_overrides, load_params
from components.pipeline.kfp_ops import compiled_diff, run_arguments, submit
from components.pipeline.steps import flatten_metrics, from_struct
from tests.conftest import moto_s3_server

REPO = Path(__file__).resolve().parents[1]
COMPILED = REPO / "pipelines" / "avs_pipeline.yaml"
MAIN_TASKS = ["compute-features", "evaluate", "fetch-data", "gate", "predict-masks", "train-stage1", "train-stage2",
              "validate-data"]
GUARDED_TASKS = ["deploy", "package", "promote"]


@pytest.fixture(scope="module")
def params() -> Params:
    return load_params(REPO / "params.yaml")


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(COMPILED.read_text()))
    return {"spec": docs[0], "platform": docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]}


def test_committed_yaml_matches_a_fresh_compile(params: Params) -> None:
    assert compiled_diff(params, COMPILED) == "", "run `avs pipeline compile` and commit pipelines/avs_pipeline.yaml"


def test_compile_check_fails_when_the_yaml_is_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--params", str(REPO / "params.yaml")]) == 0
    assert main(["pipeline", "compile", "--check", "--out", str(out), "--params", str(REPO / "params.yaml")]) == 0
    assert main(["pipeline", "compile", "--check", "--out", str(out), "--params", str(REPO / "params.yaml"),
                 "--set", "train.lr=0.123"]) == 1
    captured = capsys.readouterr()
    assert "0.123" in captured.out and "out of date" in captured.err
    assert main(["pipeline", "compile", "--check", "--out", str(tmp_path / "missing.yaml")]) == 2


def test_parameters_mirror_params_yaml(compiled: dict[str, Any]) -> None:
    inputs = compiled["spec"]["root"]["inputDefinitions"]["parameters"]
    written = yaml.safe_load((REPO / "params.yaml").read_text())
    sections = ("data", "synth", "validate", "features", "train", "train_stage1", "train_stage2", "gate", "package",
                "deploy")
    for section in sections:
        assert inputs[section]["parameterType"] == "STRUCT"
        # the file's values, unset (null) keys left out
        assert inputs[section]["defaultValue"] == {k: v for k, v in written[section].items() if v is not None}, section
    assert inputs["source"]["defaultValue"] == "dvc"
    assert inputs["dry_run_deploy"]["defaultValue"] is False
    assert set(inputs) == {*sections, "source", "repo_url", "repo_rev", "champion_metrics", "dry_run_deploy"}


def test_gpu_steps_secret_and_typed_artifacts(compiled: dict[str, Any]) -> None:
    executors = compiled["spec"]["deploymentSpec"]["executors"]
    for name in ("exec-train-stage1", "exec-train-stage2"):
        resources = executors[name]["container"]["resources"]
        assert resources["accelerator"]["resourceType"] == "nvidia.com/gpu"
        assert resources["accelerator"]["resourceCount"] == "1"
        platform = compiled["platform"][name]
        assert platform["nodeSelector"]["labels"] == {"nvidia.com/gpu.present": "true"}
        assert platform["tolerations"] == [{"effect": "NoSchedule", "key": "nvidia.com/gpu", "operator": "Exists"}]
    for name in ("exec-fetch-data", "exec-gate", "exec-deploy", "exec-promote"):
        secret = compiled["platform"][name]["secretAsEnv"][0]
        assert secret["secretName"] == "avs-dvc-s3"
        assert {k["envVar"] for k in secret["keyToEnv"]} >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    cpu_only = [n for n in executors if n not in ("exec-train-stage1", "exec-train-stage2")]
    assert all("accelerator" not in executors[n]["container"].get("resources", {}) for n in cpu_only)
    assert all(e["container"]["image"] == "avs-gpu:0.1.0" for e in executors.values())
    outputs = {name: {k: v["artifactType"]["schemaTitle"] for k, v in
                      c.get("outputDefinitions", {}).get("artifacts", {}).items()}
               for name, c in compiled["spec"]["components"].items()}
    assert outputs["comp-fetch-data"] == {"dataset": "system.Dataset"}
    assert outputs["comp-validate-data"] == {"data_docs": "system.HTML", "report": "system.Artifact",
                                             "summary": "system.Metrics"}
    assert outputs["comp-train-stage1"] == {"model": "system.Model", "summary": "system.Metrics"}
    assert outputs["comp-evaluate"] == {"details": "system.Artifact", "evaluation": "system.Metrics",
                                        "report": "system.Markdown"}
    assert outputs["comp-package"] == {"archive": "system.Model"}
    assert outputs["comp-deploy"] == {"rollout": "system.Artifact"}


def test_deploy_steps_are_guarded_by_the_gate(compiled: dict[str, Any]) -> None:
    root = compiled["spec"]["root"]["dag"]["tasks"]
    conditions = [t for t in root.values() if "triggerPolicy" in t]
    assert len(conditions) == 1
    assert conditions[0]["triggerPolicy"]["condition"] == \
        "inputs.parameter_values['pipelinechannel--gate-Output'] == 'pass'"
    guarded = compiled["spec"]["components"][conditions[0]["componentRef"]["name"]]["dag"]["tasks"]
    assert sorted(guarded) == GUARDED_TASKS
    assert sorted(t for t in root if t not in ("condition-1",)) == MAIN_TASKS


def test_overrides_and_struct_numbers() -> None:
    params = {"train": {"lr": 0.001, "model": {"queries": "ntavs"}}, "gate": {"minimums": {"s4.test.miou": 0.5}}}
    out = apply_overrides(params, ["train.lr=0.0005", "train.model.queries=aavs", "gate.minimums={s4.test.miou: 0.9}",
                                   "synth.size=tiny"])
    assert out == {"train": {"lr": 0.0005, "model": {"queries": "aavs"}}, "gate": {"minimums": {"s4.test.miou": 0.9}},
                   "synth": {"size": "tiny"}}
    assert params["train"]["lr"] == 0.001  # the input is not modified
    for bad in ("train.lr", "=3", "train..lr=1", "train.lr.x=1", "train.lr=[1"):
        with pytest.raises(StepError):
            apply_overrides(params, [bad])
    # KFP hands dict parameters over as protobuf Structs: every number a double
    assert from_struct({"seed": 0.0, "lr": 0.5, "model": {"layers": [1.0, 2.5]}, "name": "x"}) == \
        {"seed": 0, "lr": 0.5, "model": {"layers": [1, 2.5]}, "name": "x"}
    assert flatten_metrics({"s4": {"test": {"miou": 0.5, "n": 3}}, "ok": True, "x": float("nan"), "s": "a"}) == \
        {"s4.test.miou": 0.5, "s4.test.n": 3.0, "ok": 1.0}


class _FakeClient:
    """Stands in for kfp.Client: records the run request and checks the package compiles to a pipeline."""

    calls: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs

    def create_run_from_pipeline_package(self, path: str, **kwargs: Any) -> Any:
        spec = yaml.safe_load_all(Path(path).read_text())
        _FakeClient.calls.append({"client": self.kwargs, "pipeline": next(spec)["pipelineInfo"]["name"], **kwargs})
        return type("Result", (), {"run_id": "run-123"})()


def test_submit_sends_the_compiled_pipeline_and_every_section(params: Params) -> None:
    _FakeClient.calls.clear()
    overridden = load_params(REPO / "params.yaml", ["train.lr=0.0005"])
    result = submit(overridden, "http://kfp.example:8080/", experiment="avs", run_name="nightly", source="dvc",
                    repo_url="https://git.example/avs.git", repo_rev="abc123", namespace="team",
                    service_account="avs-pipeline", token="t0k", client_factory=_FakeClient)
    assert result == {"run_id": "run-123", "url": "http://kfp.example:8080/#/runs/details/run-123"}
    call = _FakeClient.calls[0]
    assert call["pipeline"] == "avs-pipeline" and call["run_name"] == "nightly" and call["experiment_name"] == "avs"
    assert call["service_account"] == "avs-pipeline" and call["namespace"] == "team"
    assert call["client"] == {"host": "http://kfp.example:8080/", "namespace": "team", "existing_token": "t0k"}
    args = call["arguments"]
    assert args["train"]["lr"] == 0.0005 and args["repo_rev"] == "abc123"
    assert args["gate"] == {"minimums": params.gate.minimums, "margin": params.gate.margin}
    assert args["train_stage1"] == dataclasses.asdict(params.train_stage1)
    with pytest.raises(StepError, match="repo-url"):
        run_arguments(params, "dvc", "", "main", "")

    class Refusing(_FakeClient):
        def create_run_from_pipeline_package(self, path: str, **kwargs: Any) -> Any:
            raise ConnectionError("connection refused")

    with pytest.raises(StepError, match="refused the run"):
        submit(params, "http://127.0.0.1:9", experiment="avs", run_name="r", source="synth", repo_url="",
               repo_rev="", client_factory=Refusing)


def test_cluster_settings_are_checked(tmp_path: Path) -> None:
    out = tmp_path / "p.yaml"
    assert main(["pipeline", "compile", "--out", str(out), "--image", "registry.example/avs-gpu:1.2",
                 "--gpus", "2", "--gpu-node-label", "pool=a100"]) == 0
    text = out.read_text()
    assert "registry.example/avs-gpu:1.2" in text and "pool: a100" in text and "resourceCount: '2'" in text
    assert main(["pipeline", "compile", "--out", str(out), "--gpu-node-label", "nolabel"]) == 2
    assert main(["pipeline", "compile", "--out", str(out), "--gpus", "-1"]) == 2
    assert main(["pipeline", "compile", "--out", str(out), "--gpus", "0"]) == 0  # a cluster without GPUs
    docs = list(yaml.safe_load_all(out.read_text()))
    assert all("accelerator" not in e["container"].get("resources", {})
               for e in docs[0]["deploymentSpec"]["executors"].values())
    assert "exec-train-stage1" not in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


def test_gate_champion_promote_and_refusals(tmp_path: Path, tiny_copy: Path) -> None:
    from components.pipeline.steps import deploy_step, gate_step, promote_step, validate_step

    metrics = {"s4": {"test": {"miou": 0.60}}}
    challenger = tmp_path / "evaluation.json"
    challenger.write_text(json.dumps(metrics))
    gate = {"minimums": {"s4.test.miou": 0.5}, "margin": 0.02}
    champion = tmp_path / "store" / "champion.json"
    # no champion yet: the minimums decide; dict parameters arrive with float numbers (protobuf Struct)
    assert gate_step(challenger, gate, str(champion), tmp_path / "d1.json")["passed"] is True
    assert promote_step(challenger, str(champion)) and json.loads(champion.read_text()) == metrics
    assert promote_step(challenger, "") is False
    champion.write_text(json.dumps({"s4": {"test": {"miou": 0.70}}}))  # a better model is being served
    decision = gate_step(challenger, gate, str(champion), tmp_path / "d2.json")
    assert decision["passed"] is False and "champion" in decision["reasons"][0]
    assert json.loads((tmp_path / "d2.json").read_text()) == json.loads(json.dumps(decision))
    champion.write_text("not json")
    with pytest.raises(StepError, match="not JSON"):
        gate_step(challenger, gate, str(champion), tmp_path / "d3.json")
    with pytest.raises(StepError, match="unknown parameter"):
        gate_step(challenger, {**gate, "minimum": 1}, "", tmp_path / "d4.json")
    # the cluster deploy needs somewhere to put the archive; it refuses before touching any cluster
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / "package.json").write_text(json.dumps({"packaged": True, "mar": "avs.mar"}))
    with pytest.raises(StepError, match="model_uri"):
        deploy_step(archive, tmp_path / "d1.json", {"namespace": "avs-serving", "model_uri": ""}, {}, tmp_path / "out")
    # validation failures stop the pipeline with the failing clips named
    wav = next(tiny_copy.rglob("*.wav"))
    wav.write_bytes(b"RIFF")
    with pytest.raises(StepError, match="validate: FAILED") as failure:
        validate_step(tiny_copy, tmp_path / "report", tmp_path / "docs.html", {"sample_rate": 16000.0})
    assert wav.stem in str(failure.value) and (tmp_path / "docs.html").is_file()


# --- data from the DVC S3 remote ---------------------------------------------------------------------------


@pytest.fixture
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free loopback port, stopped after the test."""
    with moto_s3_server() as url:
        yield url


@pytest.mark.slow
def test_fetch_data_gets_a_git_revision_from_the_s3_remote(tmp_path: Path, tiny_data: Path, s3_server: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3

    # the credentials and endpoint arrive as environment variables, as the Kubernetes Secret provides them
    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": s3_server, "DVC_NO_ANALYTICS": "1",
                       "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t",
                       "GIT_COMMITTER_EMAIL": "t@t"}.items():
        monkeypatch.setenv(key, value)
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket="avs-data")
    repo = tmp_path / "repo"
    shutil.copytree(tiny_data, repo / "data" / "synthetic")
    env = {**os.environ, "PATH": str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")}

    def run(*args: str) -> None:
        proc = subprocess.run(args, cwd=repo, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{args}: {proc.stdout}{proc.stderr}"

    (repo / "params.yaml").write_text("train:\n  lr: 0.001\n")
    run("git", "init", "-q")
    run("dvc", "init", "-q")
    run("dvc", "remote", "add", "-d", "storage", "s3://avs-data/avsbench")  # no endpoint in the repository
    run("dvc", "add", "-q", "data/synthetic")
    run("git", "add", ".")
    run("git", "commit", "-q", "-m", "data v1")
    run("dvc", "push", "-q")
    rev = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    shutil.rmtree(repo / ".dvc" / "cache")  # only the remote has the bytes now

    out = tmp_path / "fetched"
    assert main(["pipeline", "fetch-data", "--out", str(out), "--repo-url", str(repo), "--repo-rev", rev,
                 "--path", "data/synthetic"]) == 0
    files = sorted(p.relative_to(tiny_data) for p in tiny_data.rglob("*") if p.is_file())
    assert files and sorted(p.relative_to(out) for p in out.rglob("*") if p.is_file()) == files
    assert all((out / f).read_bytes() == (tiny_data / f).read_bytes() for f in files)
    # a git-tracked file (the PyTorchJob fetches params.yaml this way), replacing an older copy
    (tmp_path / "params.yaml").write_text("old")
    assert main(["pipeline", "fetch-data", "--out", str(tmp_path / "params.yaml"), "--repo-url", str(repo),
                 "--repo-rev", rev, "--path", "params.yaml"]) == 0
    assert yaml.safe_load((tmp_path / "params.yaml").read_text()) == {"train": {"lr": 0.001}}
    assert main(["pipeline", "fetch-data", "--out", str(tmp_path / "nope"), "--repo-url", str(repo),
                 "--path", "data/missing"]) == 2
    assert not (tmp_path / "nope").exists() and [p.name for p in tmp_path.glob(".nope*")] == []


# --- the whole pipeline under kfp.local --------------------------------------------------------------------

# smaller still than run-local's defaults: one val and one test clip per part, one decoder layer
FAST = ["--set", "synth.clips={s4: [2, 1, 1], ms3: [2, 1, 1], v1s: [2, 1, 1], v1m: [1, 1, 1], v2: [1, 1, 1]}",
        "--set", "train.model={decoder_layers: 1}"]


def _run_local(workdir: Path, champion: Path, minimum: float) -> dict[str, Any]:
    code = main(["pipeline", "run-local", "--workdir", str(workdir), "--champion-metrics", str(champion), *FAST,
                 "--set", f"gate.minimums={{s4.test.miou: {minimum}}}"])
    summary = json.loads((workdir / "run-local.json").read_text())
    assert code == 0, summary["error"]
    return summary


@pytest.mark.slow
def test_run_local_gate_fail_skips_then_pass_runs_the_guarded_steps(tmp_path: Path) -> None:
    workdir, champion = tmp_path / "work", tmp_path / "champion" / "evaluation.json"

    # 1. an unreachable minimum: the gate fails, every step before it ran, package and promote did not
    failed = _run_local(workdir, champion, 1.01)
    assert failed["gate"]["passed"] is False and "below the minimum" in failed["gate"]["reasons"][0]
    assert failed["executed"] == MAIN_TASKS and failed["skipped"] == GUARDED_TASKS
    run = Path(failed["run_dir"])
    assert not any((run / task).exists() for task in GUARDED_TASKS) and not champion.exists()
    dataset = run / "fetch-data" / "dataset"
    assert (dataset / "AVSBench_object").is_dir() and (dataset / "AVSBench_semantic" / "metadata.csv").is_file()
    assert "<html" in (run / "validate-data" / "data_docs").read_text().lower()
    assert json.loads((run / "validate-data" / "summary").read_text())["failing_clips"] == 0
    assert (run / "compute-features" / "feature_set").is_dir()
    for stage in ("train-stage1", "train-stage2"):
        assert (run / stage / "model" / "best.pt").is_file() and not (run / stage / "model" / "checkpoint.pt").exists()
    assert any((run / "predict-masks" / "priors").rglob("*.pt"))
    evaluation = json.loads((run / "evaluate" / "evaluation").read_text())
    assert {"s4", "ms3", "avss"} <= set(evaluation) and "miou" in evaluation["s4"]["test"]
    assert (run / "evaluate" / "report").read_text().startswith("# Evaluation report")
    assert (run / "evaluate" / "details" / "plots").is_dir()
    assert json.loads((run / "gate" / "decision").read_text())["passed"] is False

    # 2. the same run with a reachable minimum: only the gate reruns (the rest comes from the cache) and
    #    the guarded steps run: the archive is built, the TorchServe objects rendered (no cluster here),
    #    and the metrics become the champion's
    passed = _run_local(workdir, champion, 0.0)
    assert passed["gate"]["passed"] is True and passed["skipped"] == []
    assert passed["executed"] == sorted(["gate", *GUARDED_TASKS])
    assert passed["cached"] == [t for t in MAIN_TASKS if t != "gate"]
    run = Path(passed["run_dir"])
    record = json.loads((run / "package" / "archive" / "package.json").read_text())
    assert record["packaged"] is True and (run / "package" / "archive" / record["mar"]).stat().st_size > 0
    objects = list(yaml.safe_load_all((run / "deploy" / "rollout" / "objects.yaml").read_text()))
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    assert deployment["metadata"]["name"] == "avs-serving"
    assert json.loads((run / "deploy" / "rollout" / "summary.json").read_text())["dry_run"] is True
    assert json.loads(champion.read_text()) == evaluation
