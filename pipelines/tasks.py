"""The pipeline's Kubeflow components: one lightweight Python component per step.

Each body is a thin wrapper: it imports the step's glue from `components.pipeline.steps` (which calls the
same function as `avs <step>` and `dvc.yaml`) and maps artifact paths and params.yaml sections onto it.
KFP copies each function's source into the compiled YAML and runs it in the project image, where the
project is installed, so the bodies import everything they use. (No `from __future__ import annotations`
here: KFP reads the artifact types from the live annotations.)
"""

from kfp.dsl import HTML, Artifact, Dataset, Input, Markdown, Metrics, Model, Output


def fetch_data(source: str, repo_url: str, repo_rev: str, data: dict, synth: dict, dataset: Output[Dataset]):
    """The AVSBench folder: `dvc get` of params `data.root` from git `repo_url` at `repo_rev` (bytes from
    the DVC S3 remote, credentials from the environment), or the synthetic generator (source "synth")."""
    from components.pipeline.data import fetch_dataset

    info = fetch_dataset(dataset.path, source, repo=repo_url, rev=repo_rev, path=str(data.get("root", "")),
                         synth=synth)
    dataset.metadata.update(info)


def validate_data(dataset: Input[Dataset], validate: dict, report: Output[Artifact], data_docs: Output[HTML],
                  summary: Output[Metrics]):
    """great-expectations validation of every clip; fails (stopping the run) when any check fails."""
    from components.pipeline.steps import record_metrics, validate_step

    record_metrics(summary, validate_step(dataset.path, report.path, data_docs.path, validate))


def compute_features(dataset: Input[Dataset], features: dict, feature_set: Output[Dataset],
                     summary: Output[Metrics]):
    """Hierarchical log-mel scales and maskiges for every clip."""
    from components.pipeline.steps import features_step, record_metrics

    record_metrics(summary, features_step(dataset.path, feature_set.path, features))


def train_stage1(dataset: Input[Dataset], feature_set: Input[Dataset], train: dict, train_stage1: dict,
                 model: Output[Model], summary: Output[Metrics]):
    """Stage 1: class-agnostic localisation on every subset (run folder with best.pt and curves)."""
    from components.pipeline.steps import record_metrics, train_step

    result = train_step(1, dataset.path, feature_set.path, model.path, train, train_stage1)
    model.metadata.update({"framework": "pytorch", "stage": 1, "preset": result["preset"],
                           "input_size": result["input_size"], "best_val_miou": result["best_val_miou"]})
    record_metrics(summary, result, payload=result)


def predict_masks(dataset: Input[Dataset], feature_set: Input[Dataset], stage1: Input[Model],
                  priors: Output[Dataset]):
    """Stage-1 foreground probabilities for every AVSS clip: the stage-2 prior."""
    from components.pipeline.steps import predict_masks_step

    priors.metadata.update(predict_masks_step(dataset.path, feature_set.path, stage1.path, priors.path))


def train_stage2(dataset: Input[Dataset], feature_set: Input[Dataset], priors: Input[Dataset],
                 stage1: Input[Model], train: dict, train_stage2: dict, model: Output[Model],
                 summary: Output[Metrics]):
    """Stage 2: the 71 AVSS classes with the stage-1 prior, starting from the stage-1 weights."""
    import os

    from components.pipeline.steps import record_metrics, train_step

    result = train_step(2, dataset.path, feature_set.path, model.path, train, train_stage2, priors=priors.path,
                        init=os.path.join(stage1.path, "best.pt"))
    model.metadata.update({"framework": "pytorch", "stage": 2, "preset": result["preset"],
                           "input_size": result["input_size"], "best_val_miou": result["best_val_miou"]})
    record_metrics(summary, result, payload=result)


def evaluate(dataset: Input[Dataset], feature_set: Input[Dataset], stage1: Input[Model], stage2: Input[Model],
             priors: Input[Dataset], evaluation: Output[Metrics], report: Output[Markdown],
             details: Output[Artifact]):
    """AVSBench metrics of both stages on val and test, plots, gallery and report."""
    from components.pipeline.steps import evaluate_step, record_metrics

    metrics = evaluate_step(dataset.path, feature_set.path, stage1.path, stage2.path, priors.path, details.path,
                            evaluation.path, report.path)
    record_metrics(evaluation, metrics, payload=metrics)


def gate(evaluation: Input[Metrics], gate: dict, champion_metrics: str, decision: Output[Artifact]) -> str:
    """Pass or fail the challenger (params `gate`, and the champion's metrics at `champion_metrics` if
    any). Returns "pass" or "fail": the one value the deploy steps branch on."""
    from components.pipeline.steps import gate_step

    result = gate_step(evaluation.path, gate, champion_metrics, decision.path)
    decision.metadata.update({"passed": result["passed"], "reasons": result["reasons"]})
    return "pass" if result["passed"] else "fail"


def package(stage1: Input[Model], stage2: Input[Model], decision: Input[Artifact], package: dict, features: dict,
            archive: Output[Model]):
    """The TorchServe model archive (.mar) of both stages plus package.json (`avs package`)."""
    from components.pipeline.steps import package_step

    archive.metadata.update(package_step(stage1.path, stage2.path, decision.path, archive.path, package, features))


def deploy(archive: Input[Model], decision: Input[Artifact], deploy: dict, package: dict, dry_run: bool,
           rollout: Output[Artifact]):
    """TorchServe on the GPU nodes (`avs deploy`): upload the archive, server-side apply, wait for the
    rollout. With `dry_run` (local runs) the validated objects are written instead of applied."""
    from components.pipeline.steps import deploy_step

    summary = deploy_step(archive.path, decision.path, deploy, package, rollout.path, dry_run)
    rollout.metadata.update({"namespace": summary["settings"]["namespace"], "dry_run": dry_run,
                             "objects": summary["objects"]})


def promote(evaluation: Input[Metrics], champion_metrics: str) -> bool:
    """After a deploy: the served model's metrics become the champion's that the next gate compares to."""
    from components.pipeline.steps import promote_step

    return promote_step(evaluation.path, champion_metrics)
