"""Drift reports: per-clip descriptors of what the endpoint sees, compared with the training data.

`descriptors.py` holds the one descriptor function (`describe`), `sources.py` reads clips from a video
folder, an AVSBench-layout folder or a JSONL log of live requests, `reference.py` builds and loads the
training reference, `report.py` runs the evidently report and the drift rule.
"""

from components.drift.descriptors import DESCRIPTOR_VERSION, describe

__all__ = ["DESCRIPTOR_VERSION", "describe"]
