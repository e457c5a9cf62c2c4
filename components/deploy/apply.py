"""Applying the serving objects to a cluster: server-side apply, then wait for the rollout, then report.

`KubeApi` is the little the deploy needs from a cluster (apply, read, list); `DynamicKubeApi` implements
it with the kubernetes client's DynamicClient (server-side apply: PATCH application/apply-patch+yaml with
a field manager, conflicts forced so the deploy owns the fields it sets). `deploy` applies the objects in
order, waits until the Deployment's new pods are all available, and turns what went wrong into one clear
message: API refusals, image pull errors, crash loops, unschedulable pods (no GPU node), failed probes,
the progress deadline, or the timeout, with the pods' states and recent warning events.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from components.common import StepError

FIELD_MANAGER = "avs-deploy"
# waiting reasons that will not fix themselves: stop waiting and report
FATAL_WAITING = {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError",
                 "CreateContainerError", "CrashLoopBackOff", "RunContainerError"}


class DeployError(StepError):
    """The rollout failed (the cluster answered, but the new pods did not become available)."""

    exit_code = 1


class KubeApi(Protocol):
    """What deploy needs from a cluster; objects are plain dicts as in YAML."""

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply `obj`; returns the object as stored."""
        ...

    def read(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        """The stored object, or None when it does not exist."""
        ...

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        """Objects of a kind in a namespace, optionally filtered by selectors."""
        ...


class KubeApiError(Exception):
    """An API call the cluster refused: HTTP status, reason and message."""

    def __init__(self, status: int, reason: str, message: str):
        super().__init__(f"{status} {reason}: {message}")
        self.status, self.reason, self.message = status, reason, message


class DynamicKubeApi:
    """KubeApi over kubernetes.dynamic.DynamicClient."""

    def __init__(self, client: Any, field_manager: str = FIELD_MANAGER):
        self.client, self.field_manager = client, field_manager

    @staticmethod
    def _error(exc: Exception) -> KubeApiError:
        import json

        status = int(getattr(exc, "status", 0) or 0)
        reason, message = str(getattr(exc, "reason", "") or type(exc).__name__), str(exc)
        body = getattr(exc, "body", None)
        if body:
            try:
                parsed = json.loads(body)
                reason, message = parsed.get("reason", reason), parsed.get("message", message)
            except (TypeError, ValueError):
                message = str(body)
        return KubeApiError(status, reason, message)

    def _resource(self, api_version: str, kind: str) -> Any:
        try:
            return self.client.resources.get(api_version=api_version, kind=kind)
        except Exception as exc:  # ResourceNotFoundError and friends: the cluster lacks this API
            raise KubeApiError(404, "NotFound", f"the cluster serves no {kind} in {api_version} ({exc})") from exc

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        from kubernetes.client.exceptions import ApiException

        resource = self._resource(obj["apiVersion"], obj["kind"])
        try:
            result = resource.server_side_apply(body=obj, name=obj["metadata"]["name"],
                                                namespace=obj["metadata"].get("namespace"),
                                                field_manager=self.field_manager, force_conflicts=True)
        except ApiException as exc:
            raise self._error(exc) from exc
        return result.to_dict()

    def read(self, api_version: str, kind: str, name: str, namespace: str | None) -> dict[str, Any] | None:
        from kubernetes.client.exceptions import ApiException

        resource = self._resource(api_version, kind)
        try:
            return resource.get(name=name, namespace=namespace).to_dict()
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise self._error(exc) from exc

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str | None = None,
             field_selector: str | None = None) -> list[dict[str, Any]]:
        from kubernetes.client.exceptions import ApiException

        resource = self._resource(api_version, kind)
        try:
            result = resource.get(namespace=namespace, label_selector=label_selector, field_selector=field_selector)
        except ApiException as exc:
            raise self._error(exc) from exc
        return result.to_dict().get("items", [])


def connect(kubeconfig: str | None = None, context: str | None = None) -> DynamicKubeApi:
    """A DynamicKubeApi from a kubeconfig (file/context given, or the default), else the in-cluster account."""
    from kubernetes import client, config, dynamic
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig or context:
            config.load_kube_config(config_file=kubeconfig, context=context)
        else:
            try:
                config.load_kube_config()
            except (ConfigException, OSError):
                config.load_incluster_config()
    except (ConfigException, OSError) as exc:
        raise StepError(f"no Kubernetes cluster configured ({exc}); pass --kubeconfig/--context, or run in-cluster"
                        ) from exc
    try:
        return DynamicKubeApi(dynamic.DynamicClient(client.ApiClient()))
    except Exception as exc:  # discovery: connection refused, TLS, unauthorised
        raise StepError(f"cannot reach the Kubernetes API ({exc})") from exc


@dataclass
class Rollout:
    """The outcome: applied objects, ready replicas, seconds waited, and problems seen on the way."""

    applied: list[str] = field(default_factory=list)
    ready: int = 0
    wanted: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


def _pod_problems(pod: dict[str, Any]) -> tuple[list[str], bool]:
    """Human-readable problems of one pod, and whether any is fatal (will not resolve by waiting)."""
    name, status = pod["metadata"]["name"], pod.get("status") or {}
    problems, fatal = [], False
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            problems.append(f"pod {name} cannot be scheduled: {cond.get('message') or cond.get('reason')}")
    for key in ("initContainerStatuses", "containerStatuses"):
        for cs in status.get(key) or []:
            state = cs.get("state") or {}
            waiting, terminated = state.get("waiting"), state.get("terminated")
            last = (cs.get("lastState") or cs.get("last_state") or {}).get("terminated")
            if waiting and waiting.get("reason") not in (None, "ContainerCreating", "PodInitializing"):
                detail = waiting.get("message") or ""
                if last:
                    detail += f" (last exit {last.get('exitCode')}: {last.get('reason')})"
                problems.append(f"pod {name} container {cs['name']}: {waiting['reason']} {detail}".rstrip())
                fatal = fatal or (waiting["reason"] in FATAL_WAITING and
                                  (waiting["reason"] != "CrashLoopBackOff" or cs.get("restartCount", 0) >= 3))
            elif terminated and terminated.get("exitCode", 0) != 0:
                problems.append(f"pod {name} container {cs['name']} exited {terminated.get('exitCode')}: "
                                f"{terminated.get('reason')} {terminated.get('message') or ''}".rstrip())
                fatal = fatal or (key == "initContainerStatuses" and cs.get("restartCount", 0) >= 3)
            elif key == "containerStatuses" and not cs.get("ready") and state.get("running"):
                problems.append(f"pod {name} container {cs['name']} running but not ready (probes failing?)")
    return problems, fatal


def _events(api: KubeApi, namespace: str, names: list[str], limit: int = 8) -> list[str]:
    lines = []
    for name in names:
        try:
            events = api.list("v1", "Event", namespace, field_selector=f"involvedObject.name={name}")
        except KubeApiError:
            continue
        for ev in events:
            if ev.get("type") == "Warning":
                lines.append(f"{ev.get('reason')}: {ev.get('message')} ({name}, x{ev.get('count') or 1})")
    return lines[-limit:]


def _selector(deployment: dict[str, Any]) -> str:
    labels = deployment["spec"]["selector"]["matchLabels"]
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _rollout_done(stored: dict[str, Any], generation: int, wanted: int) -> tuple[bool, int, str | None]:
    """(done, ready replicas, fatal reason from the Deployment's conditions)."""
    status = stored.get("status") or {}
    observed = status.get("observedGeneration") or status.get("observed_generation") or 0
    updated = status.get("updatedReplicas") or status.get("updated_replicas") or 0
    available = status.get("availableReplicas") or status.get("available_replicas") or 0
    total = status.get("replicas") or 0
    ready = status.get("readyReplicas") or status.get("ready_replicas") or 0
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return False, ready, f"progress deadline exceeded: {cond.get('message')}"
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return False, ready, f"replica failure: {cond.get('message')}"
    done = observed >= generation and updated == wanted and available == wanted and total == wanted
    return done, ready, None


def deploy(objects: list[dict[str, Any]], api: KubeApi, timeout: float = 1200.0, poll: float = 5.0,
           clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] = time.sleep) -> Rollout:
    """Apply `objects` in order (server-side), then wait up to `timeout` seconds for the Deployment's rollout.

    Returns a Rollout on success. Raises StepError when the API refuses an object (naming it and the
    API's reason) and DeployError (exit code 1) when the rollout fails: a fatal pod state (image pull,
    crash loop, init step failure), the progress deadline, or the timeout, with the pods' problems and
    recent warning events in the message.
    """
    result = Rollout()
    start = clock()
    deployments = []
    for obj in objects:
        label = f"{obj['kind']}/{obj['metadata']['name']}"
        try:
            stored = api.apply(obj)
        except KubeApiError as exc:
            raise StepError(f"applying {label} in namespace {obj['metadata'].get('namespace', '-')} was refused: "
                            f"{exc}") from exc
        result.applied.append(label)
        if obj["kind"] == "Deployment":
            deployments.append((obj, int((stored.get("metadata") or {}).get("generation") or 1)))
    for obj, generation in deployments:
        name, namespace = obj["metadata"]["name"], obj["metadata"].get("namespace")
        wanted = int(obj["spec"].get("replicas", 1))
        result.wanted += wanted
        problems: list[str] = []
        while True:
            stored = api.read(obj["apiVersion"], "Deployment", name, namespace)
            if stored is None:
                raise DeployError(f"Deployment {name} disappeared from namespace {namespace} during the rollout")
            done, ready, fatal = _rollout_done(stored, generation, wanted)
            if done:
                result.ready += ready
                break
            pods = api.list("v1", "Pod", namespace, label_selector=_selector(obj))
            problems, pod_fatal = [], False
            for pod in pods:
                found, is_fatal = _pod_problems(pod)
                problems += found
                pod_fatal = pod_fatal or is_fatal
            waited = clock() - start
            if fatal or pod_fatal or waited >= timeout:
                why = fatal or ("a pod failed" if pod_fatal else f"not available after {timeout:.0f} s")
                events = _events(api, namespace, [name] + [p["metadata"]["name"] for p in pods])
                lines = [f"Deployment {namespace}/{name}: rollout failed, {why} "
                         f"({ready}/{wanted} ready, {len(pods)} pod(s))"]
                lines += [f"  {p}" for p in problems] or ["  no pod reported a problem"]
                lines += [f"  event {e}" for e in events]
                raise DeployError("\n".join(lines))
            sleep(poll)
        result.notes += problems
    result.seconds = round(clock() - start, 1)
    return result
