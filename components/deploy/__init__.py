"""Deploying TorchServe to Kubernetes GPU nodes (`avs deploy`).

`manifests` reads k8s/base/serving, adjusts it to the deploy settings and validates every object;
`apply` applies them server-side with the kubernetes client and waits for the rollout; `run` is the
step the CLI and the pipelines call.
"""
