"""Serving the trained model with TorchServe.

`api` parses the three request kinds and encodes answers (no TorchServe import, so it is testable and
reusable by another server), `handler` is the thin TorchServe handler over `components.infer`,
`package` builds the `.mar` (`avs package`), `server` runs TorchServe locally (`avs serve`), `client` is a
small Python client.
"""
