"""The AVS pipeline for Kubeflow Pipelines v2: the same steps as `dvc.yaml`, on a GPU cluster.

fetch-data -> validate-data -> compute-features -> train-stage1 -> predict-masks -> train-stage2 ->
evaluate -> gate, then, only when the gate returns "pass": package -> deploy -> promote. Pipeline
parameters mirror params.yaml: one dict per section in SECTIONS, whose defaults are the file's values when
the pipeline is compiled, plus the run-level `source`, `repo_url`, `repo_rev`, `champion_metrics` and
`dry_run_deploy`.

Cluster settings that are not run parameters (image, GPU scheduling, the Secret with the S3 credentials)
come from `ClusterConfig` at compile time. (No `from __future__ import annotations`: KFP reads the pipeline
function's live annotations.)
"""

import ast
import dataclasses
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kfp import dsl, kubernetes

from components.params import Params
from components.pipeline.cluster import ClusterConfig
from pipelines import tasks

PIPELINE_NAME = "avs-pipeline"
_DICT_DEFAULT = re.compile(r"^(#\s+\w+: dict \[Default: )(\{.*\})\]$")
SECTIONS = ("data", "synth", "validate", "features", "train", "train_stage1", "train_stage2", "gate", "package",
            "deploy")
# Secret keys -> environment variables of the steps that read the DVC S3 remote (or the champion's metrics).
S3_SECRET_KEYS = {"AWS_ACCESS_KEY_ID": "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY": "AWS_SECRET_ACCESS_KEY",
                  "AWS_DEFAULT_REGION": "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL": "AWS_ENDPOINT_URL"}


def _component(func: Callable, cluster: ClusterConfig):
    """A lightweight component of `func` running in the project image (kfp is already installed there)."""
    return dsl.component(func, base_image=cluster.image, install_kfp_package=False)


def _on_gpu(task: dsl.PipelineTask, cluster: ClusterConfig) -> dsl.PipelineTask:
    task.set_cpu_request(cluster.gpu_cpu).set_memory_request(cluster.gpu_memory).set_memory_limit(cluster.gpu_memory)
    if cluster.gpus == 0:  # a cluster without GPUs (e.g. kind): the training steps run on CPU nodes
        return task
    key, value = cluster.gpu_node_label.split("=", 1)
    task.set_accelerator_type(cluster.gpu_resource).set_accelerator_limit(cluster.gpus)
    kubernetes.add_node_selector(task, label_key=key, label_value=value)
    kubernetes.add_toleration(task, key=cluster.gpu_taint, operator="Exists", effect="NoSchedule")
    return task


def _on_cpu(task: dsl.PipelineTask, cluster: ClusterConfig) -> dsl.PipelineTask:
    return task.set_cpu_request(cluster.cpu).set_memory_request(cluster.memory).set_memory_limit(cluster.memory)


def _with_s3(task: dsl.PipelineTask, cluster: ClusterConfig) -> dsl.PipelineTask:
    # optional: a synthetic-data run needs no credentials, and AWS_ENDPOINT_URL / AWS_DEFAULT_REGION may be absent
    kubernetes.use_secret_as_env(task, secret_name=cluster.s3_secret, secret_key_to_env=S3_SECRET_KEYS, optional=True)
    return task


def _plain(value: Any) -> Any:
    """A section's values as protobuf Struct types: tuples as lists, unset (None) keys left out (parsing
    the section gives them back as None)."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if v is not None}
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def pipeline_defaults(params: Params) -> dict[str, dict[str, Any]]:
    """The params.yaml sections the pipeline takes as parameters, as plain dicts."""
    return {s: _plain(dataclasses.asdict(getattr(params, s))) for s in SECTIONS}


def build_pipeline(params: Params, cluster: ClusterConfig | None = None):
    """The KFP pipeline with parameter defaults taken from `params` (the typed params.yaml).

    Returns the `@dsl.pipeline` function; compile it with kfp's Compiler or call it under kfp.local.
    Its single output is the gate's decision (JSON artifact).
    """
    cluster = cluster or ClusterConfig()
    cluster.check()
    defaults = pipeline_defaults(params)
    fetch_op, validate_op, features_op = (_component(f, cluster) for f in
                                          (tasks.fetch_data, tasks.validate_data, tasks.compute_features))
    train1_op, masks_op, train2_op = (_component(f, cluster) for f in
                                      (tasks.train_stage1, tasks.predict_masks, tasks.train_stage2))
    evaluate_op, gate_op = _component(tasks.evaluate, cluster), _component(tasks.gate, cluster)
    package_op, deploy_op, promote_op = (_component(f, cluster) for f in (tasks.package, tasks.deploy, tasks.promote))

    @dsl.pipeline(name=PIPELINE_NAME, description="Audio-visual segmentation: DVC data -> validation -> "
                  "features -> two-stage training -> evaluation -> gate -> (on pass) package, deploy, promote")
    def avs_pipeline(source: str = "dvc", repo_url: str = "", repo_rev: str = "main", champion_metrics: str = "",
                     dry_run_deploy: bool = False,
                     data: dict = defaults["data"], synth: dict = defaults["synth"],
                     validate: dict = defaults["validate"], features: dict = defaults["features"],
                     train: dict = defaults["train"], train_stage1: dict = defaults["train_stage1"],
                     train_stage2: dict = defaults["train_stage2"], gate: dict = defaults["gate"],
                     package: dict = defaults["package"], deploy: dict = defaults["deploy"]) -> dsl.Artifact:
        fetched = _with_s3(_on_cpu(fetch_op(source=source, repo_url=repo_url, repo_rev=repo_rev, data=data,
                                            synth=synth), cluster), cluster).set_display_name("fetch data")
        dataset = fetched.outputs["dataset"]
        checked = _on_cpu(validate_op(dataset=dataset, validate=validate), cluster).set_display_name("validate")
        feats = _on_cpu(features_op(dataset=dataset, features=features), cluster).set_display_name("features")
        feats.after(checked)  # only data that passed validation goes on
        feature_set = feats.outputs["feature_set"]
        stage1 = _on_gpu(train1_op(dataset=dataset, feature_set=feature_set, train=train,
                                   train_stage1=train_stage1), cluster)
        stage1.set_display_name("train stage 1")
        masks = _on_cpu(masks_op(dataset=dataset, feature_set=feature_set, stage1=stage1.outputs["model"]), cluster)
        masks.set_display_name("stage-1 masks")
        stage2 = _on_gpu(train2_op(dataset=dataset, feature_set=feature_set, priors=masks.outputs["priors"],
                                   stage1=stage1.outputs["model"], train=train, train_stage2=train_stage2), cluster)
        stage2.set_display_name("train stage 2")
        evaluated = _on_cpu(evaluate_op(dataset=dataset, feature_set=feature_set, stage1=stage1.outputs["model"],
                                        stage2=stage2.outputs["model"], priors=masks.outputs["priors"]), cluster)
        evaluated.set_display_name("evaluate")
        decided = _with_s3(_on_cpu(gate_op(evaluation=evaluated.outputs["evaluation"], gate=gate,
                                           champion_metrics=champion_metrics), cluster), cluster)
        decided.set_display_name("gate").set_caching_options(False)  # the champion may have changed since
        # A single-valued output: dsl.If on one field of a NamedTuple output is silently skipped by kfp.local.
        with dsl.If(decided.outputs["Output"] == "pass", name="gate-passed"):
            packaged = _on_cpu(package_op(stage1=stage1.outputs["model"], stage2=stage2.outputs["model"],
                                          decision=decided.outputs["decision"], package=package, features=features),
                               cluster)
            packaged.set_display_name("package").set_caching_options(False)
            deployed = deploy_op(archive=packaged.outputs["archive"], decision=decided.outputs["decision"],
                                 deploy=deploy, package=package, dry_run=dry_run_deploy)
            _with_s3(_on_cpu(deployed, cluster), cluster)  # the archive goes to S3 before the rollout
            deployed.set_display_name("deploy").set_caching_options(False)
            promoted = _with_s3(_on_cpu(promote_op(evaluation=evaluated.outputs["evaluation"],
                                                   champion_metrics=champion_metrics), cluster), cluster)
            promoted.set_display_name("promote champion").set_caching_options(False)
            promoted.after(deployed)  # the champion is the model that is being served
        return decided.outputs["decision"]

    return avs_pipeline


def _sorted(value: Any) -> Any:
    return {k: _sorted(value[k]) for k in sorted(value)} if isinstance(value, dict) else value


def _stable_header(text: str) -> str:
    """kfp's header comment prints dict defaults in protobuf map order, which changes from one process to
    the next; print them with sorted keys so that compiling twice gives the same bytes."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if not line.startswith("#"):
            break
        match = _DICT_DEFAULT.match(line)
        if match:
            lines[i] = f"{match.group(1)}{_sorted(ast.literal_eval(match.group(2)))!r}]"
    return "\n".join(lines)


def compile_pipeline(params: Params, out: Path, cluster: ClusterConfig | None = None) -> Path:
    """Compile the pipeline for `params` and `cluster` to the YAML file `out` (the same bytes for the same
    inputs); returns `out`."""
    from kfp import compiler

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(params, cluster), package_path=str(out))
    out.write_text(_stable_header(out.read_text()))
    return out
