"""`avs evaluate`: AVSBench metrics for every subset and split, plots, a gallery and a report."""
