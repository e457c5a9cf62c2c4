"""Kubernetes deployment of TorchServe: the manifests (kustomize-compatible, strictly valid, GPU/probes/security
as required), the apply logic against a fake cluster, the kubernetes-client adapter, the gate and S3 steps."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
import yaml

from components.cli import main
from components.common import StepError
from components.deploy.apply import DeployError, DynamicKubeApi, KubeApiError, deploy
from components.deploy.manifests import (
    BASE,
    DeploySettings,
    find,
    load_base,
    pod_config_properties,
    render,
    to_yaml,
    validate,
)
from components.deploy.run import run_deploy, settings_from_params
from components.params import load_params

VARIANTS = {
    "base": DeploySettings(),
    "s3": DeploySettings(model_uri="s3://models/avs/avs.mar", model_sha256="ab" * 32, s3_endpoint="http://s3:9000",
                         image="registry.example.org/avs-gpu:0.2.0", replicas=3, gpus=2, create_namespace=True),
    "cpu": DeploySettings(gpus=0, token_auth=False, claim="shared-models", namespace="avs-dev"),
}


def _validate_with_cli(objects: list[dict[str, Any]], path: Path, version: str) -> None:
    path.write_text(to_yaml(objects))
    exe = Path(sys.executable).with_name("kubernetes-validate")
    proc = subprocess.run([str(exe), "--strict", "-k", version, str(path)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("passed") == len(objects)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_every_generated_object_validates_strictly(variant: str, tmp_path: Path) -> None:
    import kubernetes_validate

    objects = render(VARIANTS[variant])
    for version in ("1.30.0", kubernetes_validate.latest_version()):
        validate(objects, version)
        _validate_with_cli(objects, tmp_path / f"{variant}.yaml", version)


def test_the_deployment_asks_for_what_a_gpu_server_needs() -> None:
    objects = render(DeploySettings(replicas=2))
    kinds = [o["kind"] for o in objects]
    assert kinds == ["ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Service", "NetworkPolicy", "Deployment"]
    assert all(o["metadata"]["namespace"] == "avs-serving" for o in objects)
    dep = find(objects, "Deployment", "avs-serving")
    pod = dep["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    assert dep["spec"]["replicas"] == 2
    assert c["resources"]["limits"]["nvidia.com/gpu"] == 1 and c["resources"]["requests"]["cpu"]
    assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["securityContext"]["runAsNonRoot"]
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    assert c["securityContext"]["readOnlyRootFilesystem"] and not c["securityContext"]["allowPrivilegeEscalation"]
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"] and pod["automountServiceAccountToken"] is False
    # probes work with token auth: exec probes reading the key file (TorchServe checks tokens before /ping)
    for probe, mode in (("startupProbe", "ready"), ("readinessProbe", "ready"), ("livenessProbe", "live")):
        assert c[probe]["exec"]["command"] == ["python", "/etc/avs/probe.py", mode]
    assert c["workingDir"] == "/home/avs/run"   # where TorchServe writes key_file.json (probe.py's default)
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    assert mounts["/home/avs/model-store"]["readOnly"] and "/tmp" in mounts and "/home/avs/run" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-store"]["persistentVolumeClaim"]["claimName"] == "avs-model-store"
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports == {"http": 8080, "metrics": 8082}
    assert dep["spec"]["template"]["metadata"]["annotations"]["prometheus.io/port"] == "8082"
    service = find(objects, "Service", "avs-serving")
    assert {p["name"] for p in service["spec"]["ports"]} == {"http", "metrics"}
    config = find(objects, "ConfigMap", "avs-serving-config")["data"]
    assert set(config) == {"config.properties", "probe.py", "fetch_model.py"}
    props = dict(line.split("=", 1) for line in config["config.properties"].splitlines() if "=" in line
                 and not line.startswith("#"))
    assert props["management_address"] == "http://127.0.0.1:8081" and props["metrics_mode"] == "prometheus"
    assert props["disable_token_authorization"] == "false" and props["inference_address"] == "http://0.0.0.0:8080"


def test_variants_change_what_they_should() -> None:
    s3 = render(VARIANTS["s3"])
    assert s3[0]["kind"] == "Namespace" and not [o for o in s3 if o["kind"] == "PersistentVolumeClaim"]
    pod = find(s3, "Deployment", "avs-serving")["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["MODEL_URI"] == "s3://models/avs/avs.mar" and env["MODEL_SHA256"] == "ab" * 32
    assert init["envFrom"] == [{"secretRef": {"name": "avs-s3-credentials", "optional": True}}]
    assert init["image"] == pod["containers"][0]["image"] == "registry.example.org/avs-gpu:0.2.0"
    assert {v["name"]: v for v in pod["volumes"]}["model-store"] == {"name": "model-store",
                                                                      "emptyDir": {"sizeLimit": "4Gi"}}
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    cpu = render(VARIANTS["cpu"])
    pod = find(cpu, "Deployment", "avs-serving")["spec"]["template"]["spec"]
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"] and "nodeSelector" not in pod
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model-store"]["persistentVolumeClaim"]["claimName"] == "shared-models"
    props = find(cpu, "ConfigMap", "avs-serving-config")["data"]["config.properties"]
    assert "disable_token_authorization=true" in props
    # a config change changes the pod template, so the pods restart with it
    hashes = {find(render(s), "Deployment", "avs-serving")["spec"]["template"]["metadata"]["annotations"]
              ["avs-pipeline/config-hash"] for s in (DeploySettings(), DeploySettings(token_auth=False))}
    assert len(hashes) == 2


def test_the_base_folder_is_what_kustomize_and_avs_deploy_both_read(tmp_path: Path) -> None:
    assert (BASE / "config.properties").read_text() == pod_config_properties(DeploySettings()), \
        "k8s/base/serving/config.properties is out of date: write pod_config_properties(DeploySettings()) to it"
    kubectl = shutil.which("kubectl") or str(Path(sys.executable).with_name("kubectl"))
    if Path(kubectl).is_file():
        proc = subprocess.run([kubectl, "kustomize", str(BASE)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr

        def key(o: dict) -> tuple:
            return o["kind"], o["metadata"]["name"]

        assert sorted(yaml.safe_load_all(proc.stdout), key=key) == sorted(load_base(), key=key)
    bad = tmp_path / "bad"
    shutil.copytree(BASE, bad)
    spec = yaml.safe_load((bad / "kustomization.yaml").read_text())
    spec["patches"] = [{"path": "x.yaml"}]
    (bad / "kustomization.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(StepError, match="patches"):
        load_base(bad)


def test_validation_rejects_unknown_and_wrong_fields() -> None:
    objects = render(DeploySettings())
    typo = copy.deepcopy(objects)
    find(typo, "Deployment", "avs-serving")["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {}
    with pytest.raises(StepError, match="Deployment avs-serving"):
        validate(typo)
    wrong = copy.deepcopy(objects)
    find(wrong, "Service", "avs-serving")["spec"]["ports"][0]["port"] = "eighty"
    with pytest.raises(StepError, match="Service avs-serving"):
        validate(wrong)


# -- the apply logic against a fake cluster ---------------------------------------------------------------------
class FakeCluster:
    """Records server-side applies; answers reads with scripted Deployment statuses, lists with pods/events."""

    def __init__(self, statuses: list[dict], pods: list[dict] | None = None, events: list[dict] | None = None,
                 refuse: str | None = None):
        self.statuses, self.pods, self.events, self.refuse = statuses, pods or [], events or [], refuse
        self.applied: list[dict] = []
        self.reads = 0

    def apply(self, obj: dict) -> dict:
        if obj["kind"] == self.refuse:
            raise KubeApiError(403, "Forbidden", f'{obj["kind"].lower()}s is forbidden: User "ci" cannot patch')
        self.applied.append(copy.deepcopy(obj))
        return {**obj, "metadata": {**obj["metadata"], "generation": 4}}

    def read(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict | None:
        status = self.statuses[min(self.reads, len(self.statuses) - 1)]
        self.reads += 1
        return {"metadata": {"name": name, "generation": 4}, "status": status}

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict]:
        if kind == "Pod":
            assert label_selector == "app.kubernetes.io/name=avs-serving"
            return self.pods
        return [e for e in self.events if field_selector.endswith("=" + e["involvedObject"]["name"])]


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _pod(name: str = "avs-serving-7d9-x1", waiting: str | None = None, message: str = "", restarts: int = 0,
         unschedulable: str | None = None, init_exit: int | None = None) -> dict:
    status: dict[str, Any] = {"phase": "Pending", "conditions": [], "containerStatuses": []}
    if unschedulable:
        status["conditions"].append({"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                     "message": unschedulable})
    if waiting:
        status["containerStatuses"].append({
            "name": "torchserve", "ready": False, "restartCount": restarts,
            "state": {"waiting": {"reason": waiting, "message": message}},
            "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}} if restarts else {}})
    if init_exit is not None:
        status["initContainerStatuses"] = [{"name": "fetch-model", "restartCount": 3, "ready": False,
                                            "state": {"terminated": {"exitCode": init_exit, "reason": "Error",
                                                                     "message": "NoSuchKey"}}}]
    return {"metadata": {"name": name}, "status": status}


ROLLING = {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}
DONE = {"observedGeneration": 4, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1, "readyReplicas": 1}


def test_deploy_applies_in_order_then_waits_for_the_rollout() -> None:
    cluster, clock = FakeCluster([{"observedGeneration": 3, "replicas": 1}, ROLLING, ROLLING, DONE]), Clock()
    objects = render(DeploySettings())
    rollout = deploy(objects, cluster, timeout=600, poll=5, clock=clock, sleep=clock.sleep)
    assert [o["kind"] for o in cluster.applied] == [o["kind"] for o in objects]
    assert cluster.applied == objects    # applied as rendered: whole objects, server-side
    assert rollout.ready == rollout.wanted == 1 and cluster.reads == 4 and rollout.seconds == 15
    assert rollout.applied[-1] == "Deployment/avs-serving"


@pytest.mark.parametrize(("pods", "events", "expected"), [
    ([_pod(waiting="ImagePullBackOff", message='Back-off pulling image "avs-gpu:0.1.0"')],
     [{"type": "Warning", "reason": "Failed", "message": "manifest unknown", "count": 3,
       "involvedObject": {"name": "avs-serving-7d9-x1"}}],
     ["ImagePullBackOff", "avs-gpu:0.1.0", "a pod failed", "event Failed: manifest unknown"]),
    ([_pod(waiting="CrashLoopBackOff", restarts=3)], [], ["CrashLoopBackOff", "last exit 1: Error"]),
    ([_pod(init_exit=1)], [], ["fetch-model exited 1", "NoSuchKey"]),
])
def test_deploy_stops_at_a_pod_that_will_not_recover(pods: list, events: list, expected: list[str]) -> None:
    cluster, clock = FakeCluster([ROLLING], pods=pods, events=events), Clock()
    with pytest.raises(DeployError) as info:
        deploy(render(DeploySettings()), cluster, timeout=600, clock=clock, sleep=clock.sleep)
    message = str(info.value)
    assert message.startswith("Deployment avs-serving/avs-serving: rollout failed") and clock.now == 0
    for text in expected:
        assert text in message, message
    assert info.value.exit_code == 1


def test_deploy_reports_a_timeout_with_the_reason_pods_wait() -> None:
    gpu = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    cluster, clock = FakeCluster([ROLLING], pods=[_pod(unschedulable=gpu)]), Clock()
    with pytest.raises(DeployError, match="not available after 60 s") as info:
        deploy(render(DeploySettings()), cluster, timeout=60, poll=10, clock=clock, sleep=clock.sleep)
    assert gpu in str(info.value) and clock.now == 60


def test_deploy_reports_the_progress_deadline_and_api_refusals() -> None:
    stuck = {**ROLLING, "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                        "message": 'ReplicaSet "avs-serving-7d9" has timed out progressing.'}]}
    cluster, clock = FakeCluster([stuck], pods=[_pod(waiting="ContainerCreating")]), Clock()
    with pytest.raises(DeployError, match="progress deadline exceeded: ReplicaSet"):
        deploy(render(DeploySettings()), cluster, clock=clock, sleep=clock.sleep)
    refused = FakeCluster([DONE], refuse="NetworkPolicy")
    with pytest.raises(StepError, match="NetworkPolicy/avs-serving in namespace avs-serving was refused: 403"):
        deploy(render(DeploySettings()), refused)
    assert [o["kind"] for o in refused.applied] == ["ServiceAccount", "ConfigMap", "PersistentVolumeClaim", "Service"]


def test_the_kubernetes_client_adapter_does_server_side_apply() -> None:
    from kubernetes.client.exceptions import ApiException

    client = mock.MagicMock()
    resource = client.resources.get.return_value
    resource.server_side_apply.return_value.to_dict.return_value = {"metadata": {"generation": 2}}
    api = DynamicKubeApi(client)
    obj = find(render(DeploySettings()), "Deployment", "avs-serving")
    assert api.apply(obj) == {"metadata": {"generation": 2}}
    client.resources.get.assert_called_with(api_version="apps/v1", kind="Deployment")
    resource.server_side_apply.assert_called_once_with(body=obj, name="avs-serving", namespace="avs-serving",
                                                       field_manager="avs-deploy", force_conflicts=True)
    resource.get.side_effect = ApiException(status=404, reason="Not Found")
    assert api.read("apps/v1", "Deployment", "avs-serving", "avs-serving") is None
    refused = ApiException(status=422, reason="Unprocessable Entity")
    refused.body = json.dumps({"reason": "Invalid", "message": 'spec.replicas: Invalid value: -1'})
    resource.server_side_apply.side_effect = refused
    with pytest.raises(KubeApiError, match=r"422 Invalid: spec\.replicas"):
        api.apply(obj)
    resource.get.side_effect = None
    resource.get.return_value.to_dict.return_value = {"items": [{"metadata": {"name": "p"}}]}
    assert api.list("v1", "Pod", "avs-serving", label_selector="a=b") == [{"metadata": {"name": "p"}}]


# -- the step: gate, params, S3, CLI ------------------------------------------------------------------------------
def test_deploy_refuses_a_failed_gate_and_renders_valid_yaml(tmp_path: Path, capsys) -> None:
    gate = tmp_path / "gate.json"
    gate.write_text(json.dumps({"passed": False, "reasons": ["ms3.test.miou = 0.36 is below the minimum 0.60"]}))
    cluster = FakeCluster([DONE])
    with pytest.raises(DeployError, match="the gate failed"):
        run_deploy(DeploySettings(), gate=gate, api=cluster)
    assert not cluster.applied
    out = tmp_path / "rendered.yaml"
    assert main(["deploy", "--gate", str(gate), "--render", str(out)]) == 1   # refused before rendering
    assert "ms3.test.miou" in capsys.readouterr().err and not out.exists()
    assert main(["deploy", "--gate", str(gate), "--force", "--render", str(out), "--replicas", "2",
                 "--model-uri", "s3://bucket/avs.mar"]) == 0
    objects = list(yaml.safe_load_all(out.read_text()))
    validate(objects)
    assert find(objects, "Deployment", "avs-serving")["spec"]["replicas"] == 2
    summary = run_deploy(DeploySettings(), api=FakeCluster([DONE]))
    assert summary["ready"] == 1 and "Deployment/avs-serving" in summary["applied"]
    params = load_params(Path(__file__).resolve().parents[1] / "params.yaml")
    settings = settings_from_params(params.deploy, params.package, replicas=3)
    assert settings.replicas == 3 and settings.model_uri is None and settings.max_payload_mb == 50
    assert settings.claim is None  # "" in params.yaml: the base's claim
    with pytest.raises(StepError, match=r"deploy\.replica: unknown parameter"):
        load_params(None, ["deploy.replica=2"])


def test_upload_to_s3_and_the_init_step_download(tmp_path: Path, monkeypatch) -> None:
    import boto3
    from moto import mock_aws

    from components.deploy.run import upload_archive

    sys.path.insert(0, str(BASE))
    try:
        import fetch_model
    finally:
        sys.path.remove(str(BASE))
    mar = tmp_path / "serving" / "avs.mar"
    mar.parent.mkdir()
    mar.write_bytes(b"PK archive bytes" * 1000)
    (mar.parent / "package.json").write_text(json.dumps({"packaged": True, "reasons": ["passed"]}))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        boto3.client("s3").create_bucket(Bucket="models")
        digest = upload_archive(mar, "s3://models/avs/avs.mar")
        target = tmp_path / "store" / "avs.mar"
        assert fetch_model.fetch("s3://models/avs/avs.mar", target, sha256=digest) == mar.stat().st_size
        assert target.read_bytes() == mar.read_bytes()
        with pytest.raises(ValueError, match="differs"):
            fetch_model.fetch("s3://models/avs/avs.mar", tmp_path / "other.mar", sha256="0" * 64)
        assert not (tmp_path / ".other.mar.partial").exists() and not (tmp_path / "other.mar").exists()
        monkeypatch.setenv("MODEL_URI", "s3://models/avs/missing.mar")
        assert fetch_model.main([str(tmp_path / "x.mar")]) == 1
    (mar.parent / "package.json").write_text(json.dumps({"packaged": True, "reasons": ["forced: built although the "
                                                                                       "gate failed"]}))
    with pytest.raises(DeployError, match="gate did not pass"):
        upload_archive(mar, "s3://models/avs/avs.mar")
