"""Kubeflow Pipelines around the steps: the glue each KFP component calls (`steps`), data fetching
(`data`), compiling and submitting (`kfp_ops`), the local runner (`local`) and `avs pipeline` (`cli`)."""
