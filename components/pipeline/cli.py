"""`avs pipeline compile | run-local | submit | fetch-data`: the Kubeflow pipeline from the command line."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

COMPILED = Path("pipelines/avs_pipeline.yaml")


def _cluster(args: argparse.Namespace):
    from components.pipeline.kfp_ops import cluster_config

    return cluster_config(image=args.image, gpu_resource=args.gpu_resource, gpus=args.gpus,
                          gpu_node_label=args.gpu_node_label, gpu_taint=args.gpu_taint, s3_secret=args.s3_secret)


def _params(args: argparse.Namespace):
    from components.params import load_params

    return load_params(args.params, args.set)


def _cmd_compile(args: argparse.Namespace) -> int:
    from components.pipeline.kfp_ops import compile_to, compiled_diff

    params, cluster = _params(args), _cluster(args)
    if args.check:
        diff = compiled_diff(params, args.out, cluster)
        if diff:
            sys.stdout.write(diff)
            print(f"pipeline compile --check: {args.out} is out of date; run `avs pipeline compile` and commit it",
                  file=sys.stderr)
            return 1
        print(f"pipeline compile --check: {args.out} is up to date")
        return 0
    print(f"pipeline compile: wrote {compile_to(params, args.out, cluster)}")
    return 0


def _cmd_run_local(args: argparse.Namespace) -> int:
    from components.pipeline.local import local_params, run_local

    params = local_params(args.params, args.set)
    summary = run_local(params, args.workdir, champion_metrics=args.champion_metrics, cache=not args.no_cache)
    print(f"\nrun-local: {summary['status']}; run folder {summary['run_dir']}")
    print(f"  executed: {', '.join(summary['executed']) or '-'}")
    print(f"  from the cache: {', '.join(summary['cached']) or '-'}")
    print(f"  skipped by the gate: {', '.join(summary['skipped']) or '-'}")
    if summary["gate"] is not None:
        gate = summary["gate"]
        print(f"  gate: {'PASS' if gate['passed'] else 'FAIL'} - " + "; ".join(gate["reasons"]))
    if summary["error"]:
        print(f"run-local: {summary['error']}", file=sys.stderr)
    print(f"  summary: {Path(args.workdir) / 'run-local.json'}")
    return 0 if summary["status"] == "SUCCEEDED" else 1


def _cmd_submit(args: argparse.Namespace) -> int:
    import os
    import time

    from components.pipeline.kfp_ops import git_defaults, submit

    origin, head = git_defaults()
    repo_url, repo_rev = args.repo_url or origin, args.repo_rev or head or "main"
    run_name = args.run_name or f"avs-{time.strftime('%Y%m%d-%H%M%S')}"
    token = os.environ.get(args.token_env) if args.token_env else None
    result = submit(_params(args), args.host, experiment=args.experiment, run_name=run_name, source=args.source,
                    repo_url=repo_url, repo_rev=repo_rev, champion_metrics=args.champion_metrics,
                    namespace=args.namespace, service_account=args.service_account, cluster=_cluster(args),
                    token=token)
    print(f"pipeline submit: run {result['run_id']} ({run_name}, data {args.source}"
          f"{f' {repo_url}@{repo_rev}' if args.source == 'dvc' else ''}) in experiment {args.experiment}")
    print(f"  {result['url']}")
    return 0


def _cmd_fetch_data(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from components.params import load_params
    from components.pipeline.data import dvc_get, fetch_dataset, s3_remote_config

    if args.source == "dvc":  # a folder or a single file (e.g. params.yaml)
        dvc_get(args.repo_url, args.path, args.out, rev=args.repo_rev or None, remote_config=s3_remote_config())
        print(f"fetch-data: {args.path} of {args.repo_url}{'@' + args.repo_rev if args.repo_rev else ''} -> {args.out}")
        return 0
    info = fetch_dataset(args.out, "synth", synth=asdict(load_params(args.params).synth))
    print(f"fetch-data: {json.dumps(info)} -> {args.out}")
    return 0


def _cluster_options(p: argparse.ArgumentParser) -> None:
    from components.pipeline.cluster import ClusterConfig

    d = ClusterConfig()
    g = p.add_argument_group("cluster (compile time)")
    g.add_argument("--image", help=f"project image every step runs in (default {d.image})")
    g.add_argument("--gpu-resource", help=f"extended resource of a GPU (default {d.gpu_resource})")
    g.add_argument("--gpus", type=int, help=f"GPUs per training step, 0 for a cluster without GPUs (default {d.gpus})")
    g.add_argument("--gpu-node-label", help=f"KEY=VALUE node selector of GPU nodes (default {d.gpu_node_label})")
    g.add_argument("--gpu-taint", help=f"taint key of GPU nodes, tolerated (default {d.gpu_taint})")
    g.add_argument("--s3-secret", help=f"Secret with the S3 credentials (default {d.s3_secret})")


def _params_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="parameters file (default params.yaml)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override a parameter (YAML value), repeatable: --set train.lr=0.0005 "
                        "--set 'gate.minimums={s4.test.miou: 0.6}'")


def register(sub: argparse._SubParsersAction) -> None:
    """Add `avs pipeline` and its subcommands to the `avs` parser's subcommands `sub`."""
    top = sub.add_parser("pipeline", help="the Kubeflow pipeline: compile, run locally, submit to a cluster")
    steps = top.add_subparsers(dest="pipeline_command", metavar="ACTION", required=True)

    p = steps.add_parser("compile", help="write the compiled pipeline YAML (committed in pipelines/)")
    p.add_argument("--out", type=Path, default=COMPILED, help=f"output file (default {COMPILED})")
    p.add_argument("--check", action="store_true", help="compile and compare with --out; exit 1 if they differ")
    _params_options(p)
    _cluster_options(p)
    p.set_defaults(func=_cmd_compile)

    p = steps.add_parser("run-local", help="run the whole pipeline here with kfp.local on the tiny synthetic data")
    p.add_argument("--workdir", type=Path, default=Path("build/pipeline-local"),
                   help="runs, cache and summary go here (default build/pipeline-local)")
    p.add_argument("--champion-metrics", default="", help="champion metrics file the gate compares with and "
                   "a passing run replaces (default: none)")
    p.add_argument("--no-cache", action="store_true", help="rerun every step")
    _params_options(p)
    p.set_defaults(func=_cmd_run_local)

    p = steps.add_parser("submit", help="compile and start a run on a Kubeflow Pipelines server")
    p.add_argument("--host", required=True, help="KFP API endpoint, e.g. http://localhost:8080 (port-forward)")
    p.add_argument("--experiment", default="avs", help="experiment name (created if missing; default avs)")
    p.add_argument("--run-name", help="run name (default avs-YYYYmmdd-HHMMSS)")
    p.add_argument("--namespace", help="Kubeflow profile namespace (multi-user installs)")
    p.add_argument("--service-account", default="avs-pipeline",
                   help="service account the run's pods use (default avs-pipeline, from k8s/)")
    p.add_argument("--source", choices=["dvc", "synth"], default="dvc",
                   help="dvc: the data version of --repo-rev from the S3 remote (default); synth: generated")
    p.add_argument("--repo-url", default="", help="git URL the cluster can clone (default: remote 'origin')")
    p.add_argument("--repo-rev", default="", help="git revision whose dvc.lock names the data (default: HEAD)")
    p.add_argument("--champion-metrics", default="", help="s3:// URL of the champion's metrics JSON (default none)")
    p.add_argument("--token-env", default="KFP_TOKEN", help="environment variable holding a bearer token, if any")
    _params_options(p)
    _cluster_options(p)
    p.set_defaults(func=_cmd_submit)

    p = steps.add_parser("fetch-data", help="get a DVC-tracked folder or a git-tracked file of a repository "
                         "revision (bytes from the DVC S3 remote), or generate the synthetic data")
    p.add_argument("--out", type=Path, required=True, help="folder (or file) to create or replace")
    p.add_argument("--source", choices=["dvc", "synth"], default="dvc")
    p.add_argument("--repo-url", default="", help="git repository (URL or path) with the DVC files")
    p.add_argument("--repo-rev", default="", help="git revision (default: the default branch)")
    p.add_argument("--path", default="data/synthetic", help="path inside the repository (default data/synthetic)")
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="synth section for --source synth")
    p.set_defaults(func=_cmd_fetch_data)

