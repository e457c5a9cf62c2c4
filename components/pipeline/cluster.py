"""Compile-time cluster settings of the Kubeflow pipeline (kept free of kfp imports: the CLI reads them)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ClusterConfig:
    """Compile-time settings of the cluster the pipeline runs on.

    image: the project image (Dockerfile.gpu) every step runs in. gpu_resource / gpus: the extended
    resource and count each training step asks for (0: a cluster without GPUs; the training steps then
    run on CPU nodes). gpu_node_label: "key=value" node selector of the GPU nodes. gpu_taint: the taint key
    GPU nodes carry (tolerated with operator Exists, effect NoSchedule). s3_secret: the Secret holding the
    S3 credentials (keys as in pipelines.avs_pipeline.S3_SECRET_KEYS; any may be absent). cpu / memory:
    requests of the CPU steps; gpu_cpu / gpu_memory: of the training steps.
    """

    image: str = "avs-gpu:0.1.0"
    gpu_resource: str = "nvidia.com/gpu"
    gpus: int = 1
    gpu_node_label: str = "nvidia.com/gpu.present=true"
    gpu_taint: str = "nvidia.com/gpu"
    s3_secret: str = "avs-dvc-s3"
    cpu: str = "2"
    memory: str = "8Gi"
    gpu_cpu: str = "8"
    gpu_memory: str = "32Gi"

    def check(self) -> None:
        """Raise ValueError naming the first bad field."""
        if not self.image:
            raise ValueError("image must not be empty")
        if "=" not in self.gpu_node_label or self.gpu_node_label.startswith("="):
            raise ValueError(f"gpu_node_label {self.gpu_node_label!r} must read KEY=VALUE")
        if self.gpus < 0:
            raise ValueError(f"gpus must be 0 (CPU-only cluster) or more, got {self.gpus}")
        if not self.s3_secret:
            raise ValueError("s3_secret must name a Secret")
