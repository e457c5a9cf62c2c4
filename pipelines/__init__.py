"""Kubeflow Pipelines definitions of the AVS pipeline and the compiled YAML (`avs pipeline compile`)."""
