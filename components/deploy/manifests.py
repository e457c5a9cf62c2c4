"""The Kubernetes objects of the serving deployment: read from k8s/base/serving, adjusted, validated.

`load_base` reads the folder the way kustomize would (its `resources` files, and the ConfigMap its
`configMapGenerator` builds from files, names unhashed); `render` adjusts the objects to DeploySettings
(namespace, image, replicas, GPUs, node selector, token auth, limits, model source: the volume of the
base or an S3 init step); `validate` checks each object against the official Kubernetes schemas with
kubernetes-validate in strict mode (unknown fields are errors).
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from components.common import StepError
from components.params import DeployParams, PackageParams
from components.serve.server import ServerSettings, render_config

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "k8s" / "base" / "serving"
DEPLOYMENT, CONFIG_MAP, CLAIM = "avs-serving", "avs-serving-config", "avs-model-store"
CONTAINER = "torchserve"
MODEL_STORE = "/home/avs/model-store"
KUBERNETES_VERSION = "1.31.0"
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "PersistentVolume", "StorageClass"}
# kinds in the order they are applied: what a pod needs exists before the Deployment that starts it
APPLY_ORDER = ("Namespace", "ServiceAccount", "Secret", "ConfigMap", "PersistentVolumeClaim", "Service",
               "NetworkPolicy", "PodDisruptionBudget", "Deployment")
SUPPORTED_KUSTOMIZE = {"apiVersion", "kind", "resources", "configMapGenerator", "generatorOptions", "namespace"}


@dataclass
class DeploySettings:
    """What `avs deploy` changes in the base (None keeps the base's value).

    model_uri: s3://bucket/key.mar switches the model store from the base's volume to an init step that
    downloads the archive (credentials from the optional Secret `s3_secret`, or workload identity);
    model_sha256 makes the init step check the download. claim: another PersistentVolumeClaim name for
    the volume source.
    """

    namespace: str = DeployParams.namespace
    image: str | None = None
    replicas: int | None = None
    gpus: int = DeployParams.gpus
    node_selector: dict[str, str] | None = None
    model_name: str = PackageParams.model_name
    model_uri: str | None = None
    model_sha256: str | None = None
    s3_secret: str | None = DeployParams.s3_secret
    s3_endpoint: str | None = None
    claim: str | None = None
    token_auth: bool = DeployParams.token_auth
    token_expiration_min: int = DeployParams.token_expiration_min
    max_seconds: float = PackageParams.max_seconds
    max_payload_mb: float = PackageParams.max_payload_mb
    create_namespace: bool = DeployParams.create_namespace
    labels: dict[str, str] = field(default_factory=dict)


def server_settings(settings: DeploySettings) -> ServerSettings:
    """The TorchServe settings of a pod: inference/metrics on all addresses, management on loopback."""
    return ServerSettings(model_name=settings.model_name, address="0.0.0.0", management_address="127.0.0.1",
                          token_auth=settings.token_auth, token_expiration_min=settings.token_expiration_min,
                          max_payload_mb=settings.max_payload_mb, max_seconds=settings.max_seconds,
                          number_of_gpu=settings.gpus)


def pod_config_properties(settings: DeploySettings) -> str:
    """config.properties of a pod (the base's config.properties is this for DeploySettings())."""
    return render_config(server_settings(settings), model_store=MODEL_STORE)


def _read_yaml_docs(path: Path) -> list[dict[str, Any]]:
    try:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise StepError(f"{path}: cannot read ({exc})") from exc
    for doc in docs:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            raise StepError(f"{path}: every document must be a Kubernetes object with apiVersion and kind")
    return docs


def load_base(folder: Path = BASE) -> list[dict[str, Any]]:
    """The objects of a kustomization folder: its resources plus the ConfigMaps of configMapGenerator.

    Supports the subset this project uses (resources, configMapGenerator with files/literals,
    generatorOptions.disableNameSuffixHash, namespace); anything else is a StepError, never ignored.
    """
    folder = Path(folder)
    kustomization = folder / "kustomization.yaml"
    try:
        spec = yaml.safe_load(kustomization.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise StepError(f"{kustomization}: cannot read ({exc})") from exc
    unsupported = sorted(set(spec) - SUPPORTED_KUSTOMIZE)
    if unsupported:
        raise StepError(f"{kustomization}: avs deploy does not apply kustomize fields {', '.join(unsupported)}")
    if not (spec.get("generatorOptions") or {}).get("disableNameSuffixHash", False) and spec.get("configMapGenerator"):
        raise StepError(f"{kustomization}: set generatorOptions.disableNameSuffixHash (the Deployment names the "
                        "ConfigMap)")
    objects = [doc for name in spec.get("resources", []) for doc in _read_yaml_docs(folder / name)]
    for gen in spec.get("configMapGenerator", []):
        data = {}
        for entry in gen.get("files", []):
            key, _, name = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
            try:
                data[key] = (folder / name).read_text()
            except OSError as exc:
                raise StepError(f"{kustomization}: configMapGenerator file {name} ({exc})") from exc
        for literal in gen.get("literals", []):
            key, _, value = literal.partition("=")
            data[key] = value
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": gen["name"]}, "data": data})
    if spec.get("namespace"):
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj.setdefault("metadata", {})["namespace"] = spec["namespace"]
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    """The object of `kind` named `name`; StepError when the manifests lack it."""
    for obj in objects:
        if obj["kind"] == kind and obj["metadata"]["name"] == name:
            return obj
    raise StepError(f"the serving manifests have no {kind} {name}")


def _container(deployment: dict[str, Any]) -> dict[str, Any]:
    for container in deployment["spec"]["template"]["spec"]["containers"]:
        if container["name"] == CONTAINER:
            return container
    raise StepError(f"Deployment {deployment['metadata']['name']} has no container {CONTAINER}")


def _set_env(container: dict[str, Any], name: str, value: str) -> None:
    env = container.setdefault("env", [])
    for entry in env:
        if entry["name"] == name:
            entry.clear()
            entry.update({"name": name, "value": value})
            return
    env.append({"name": name, "value": value})


def _use_s3(objects: list[dict[str, Any]], deployment: dict[str, Any], settings: DeploySettings) -> list[dict]:
    """Replace the model-store claim with an emptyDir filled by an init container running fetch_model.py."""
    container = _container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    for volume in pod["volumes"]:
        if volume["name"] == "model-store":
            volume.clear()
            volume.update({"name": "model-store", "emptyDir": {"sizeLimit": "4Gi"}})
    env = [{"name": "MODEL_URI", "value": settings.model_uri}, {"name": "HOME", "value": "/tmp"}]
    if settings.s3_endpoint:
        env.append({"name": "S3_ENDPOINT_URL", "value": settings.s3_endpoint})
    if settings.model_sha256:
        env.append({"name": "MODEL_SHA256", "value": settings.model_sha256})
    init = {
        "name": "fetch-model",
        "image": container["image"],
        "imagePullPolicy": container.get("imagePullPolicy", "IfNotPresent"),
        "command": ["python", "/etc/avs/fetch_model.py", f"{MODEL_STORE}/{settings.model_name}.mar"],
        "env": env,
        "resources": {"requests": {"cpu": "250m", "memory": "512Mi", "ephemeral-storage": "1Gi"},
                      "limits": {"cpu": "1", "memory": "1Gi", "ephemeral-storage": "4Gi"}},
        "securityContext": copy.deepcopy(container["securityContext"]),
        "volumeMounts": [{"name": "config", "mountPath": "/etc/avs", "readOnly": True},
                         {"name": "model-store", "mountPath": MODEL_STORE},
                         {"name": "tmp", "mountPath": "/tmp"}],
    }
    if settings.s3_secret:
        init["envFrom"] = [{"secretRef": {"name": settings.s3_secret, "optional": True}}]
    pod["initContainers"] = [init]
    for mount in container["volumeMounts"]:
        if mount["name"] == "model-store":
            mount["readOnly"] = True
    return [o for o in objects if not (o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == CLAIM)]


def render(settings: DeploySettings, folder: Path = BASE) -> list[dict[str, Any]]:
    """The objects to apply for `settings`, in apply order (see APPLY_ORDER)."""
    objects = copy.deepcopy(load_base(folder))
    deployment = find(objects, "Deployment", DEPLOYMENT)
    container = _container(deployment)
    pod = deployment["spec"]["template"]["spec"]
    if settings.image:
        container["image"] = settings.image
    if settings.replicas is not None:
        deployment["spec"]["replicas"] = int(settings.replicas)
    if settings.gpus < 0:
        raise StepError(f"gpus must be >= 0, got {settings.gpus}")
    for section in ("requests", "limits"):
        resources = container.setdefault("resources", {}).setdefault(section, {})
        if settings.gpus:
            resources["nvidia.com/gpu"] = settings.gpus
        else:
            resources.pop("nvidia.com/gpu", None)
    if not settings.gpus:  # a CPU-only deployment: no GPU node selection either
        pod.pop("nodeSelector", None)
        pod.pop("tolerations", None)
    if settings.node_selector is not None:
        pod["nodeSelector"] = dict(settings.node_selector)
    _set_env(container, "AVS_SERVE_MAX_SECONDS", f"{settings.max_seconds:g}")
    _set_env(container, "AVS_SERVE_MAX_PAYLOAD_MB", f"{settings.max_payload_mb:g}")
    args = container.get("args", [])
    if "--models" in args:
        args[args.index("--models") + 1] = f"{settings.model_name}={settings.model_name}.mar"
    config = find(objects, "ConfigMap", CONFIG_MAP)
    config["data"]["config.properties"] = pod_config_properties(settings)
    if settings.model_uri:
        objects = _use_s3(objects, deployment, settings)
    elif settings.claim:
        for volume in pod["volumes"]:
            if volume["name"] == "model-store":
                volume["persistentVolumeClaim"]["claimName"] = settings.claim
        objects = [o for o in objects if not (o["kind"] == "PersistentVolumeClaim" and o["metadata"]["name"] == CLAIM)]
    # a config change must restart the pods: the ConfigMap's hash goes into the pod template
    digest = hashlib.sha256(json.dumps(config["data"], sort_keys=True).encode()).hexdigest()[:16]
    deployment["spec"]["template"]["metadata"].setdefault("annotations", {})["avs-pipeline/config-hash"] = digest
    if settings.create_namespace:
        objects.insert(0, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": settings.namespace}})
    for obj in objects:
        meta = obj.setdefault("metadata", {})
        if obj["kind"] not in CLUSTER_SCOPED:
            meta["namespace"] = settings.namespace
        if settings.labels:
            meta.setdefault("labels", {}).update(settings.labels)
    rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}
    return sorted(objects, key=lambda o: rank.get(o["kind"], len(APPLY_ORDER)))


def validate(objects: list[dict[str, Any]], kubernetes_version: str = KUBERNETES_VERSION) -> None:
    """Check every object against the Kubernetes `kubernetes_version` schemas, strictly; StepError listing
    each invalid object and what is wrong."""
    import kubernetes_validate

    problems = []
    for obj in objects:
        try:
            kubernetes_validate.validate(obj, kubernetes_version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            where = "/".join(str(p) for p in exc.path)
            problems.append(f"{obj['kind']} {obj['metadata'].get('name')}: {exc.message} (at {where or 'top'})")
        except (kubernetes_validate.SchemaNotFoundError, kubernetes_validate.InvalidSchemaError) as exc:
            problems.append(f"{obj['kind']} {obj['metadata'].get('name')}: no schema ({exc})")
    if problems:
        raise StepError("invalid Kubernetes objects:\n  " + "\n  ".join(problems))


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings (the ConfigMap's files) as literal blocks."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value and not any(line != line.rstrip() for line in value.splitlines()) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_BlockDumper.add_representer(str, _str)


def to_yaml(objects: list[dict[str, Any]]) -> str:
    """The objects as one multi-document YAML stream (files in ConfigMaps as literal blocks)."""
    return yaml.dump_all(objects, Dumper=_BlockDumper, sort_keys=False, default_flow_style=False)
