"""The AVS networks, their losses, and the AVSBench metrics."""
