"""Training end to end on the tiny synthetic set: resume after SIGKILL gives the same result, 2-process DDP,
predict-masks -> stage 2 -> evaluate, and the gate's decisions; on GPUs, bf16 training and NCCL DDP (skipped
without them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from components.cli import main
from components.common import free_ports
from components.evaluate.gate import decide

pytestmark = pytest.mark.slow

PARAMS = {
    "train": {"preset": "tiny", "input_size": 64, "batch_clips": 2, "lr": 3e-4, "clip_grad": 1.0,
              "checkpoint_every": 3, "val_every": 4, "seed": 3, "model": {"decoder_layers": 3},
              "frames": 0, "backbone_lr_mult": 0.1,
              "flip": True, "max_zoom": 1.5},  # augmented, so the resume test covers its random draws too
    "train_stage1": {"steps": 12, "audio_pretrain_steps": 10},  # resume covers audio pretraining too
    "train_stage2": {"steps": 6, "prior_truth": 1.0},
    "gate": {"minimums": {"s4.test.miou": 0.0}, "margin": 0.02},
}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory, tiny_data: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(PARAMS))
    features = root / "features"
    assert main(["features", "--data", str(tiny_data), "--out", str(features), "--maskige-size", "64"]) == 0
    return {"root": root, "params": params, "features": features, "data": tiny_data}


def _train_cmd(ws: dict[str, Path], out: Path, stage: int = 1, extra: tuple[str, ...] = (),
               params: Path | None = None) -> list[str]:
    return [sys.executable, "-m", "components.cli", "train", "--stage", str(stage), "--data", str(ws["data"]),
            "--features", str(ws["features"]), "--out", str(out), "--params", str(params or ws["params"]), *extra]


def _env(gpus: bool = False) -> dict[str, str]:
    """The environment of a training subprocess: one thread, and no GPU unless `gpus` (training takes any GPU
    it sees, and NCCL with it, so the CPU tests, the SIGKILL one's bitwise equality included, hide them)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0"}
    return env if gpus else {**env, "CUDA_VISIBLE_DEVICES": ""}


@pytest.fixture(scope="module")
def stage1(workspace: dict[str, Path]) -> Path:
    """An uninterrupted stage-1 run (the subprocess the resume test compares with): its folder."""
    straight = workspace["root"] / "straight"
    subprocess.run(_train_cmd(workspace, straight), env=_env(), check=True, capture_output=True)
    return straight


def _kill_after_first_checkpoint_then_rerun(cmd: list[str], out: Path, steps: int) -> dict:
    """Start `cmd`, SIGKILL it once `out/checkpoint.pt` exists, check the run was cut short, rerun `cmd` to the
    end; returns the killed checkpoint's progress state."""
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not (out / "checkpoint.pt").is_file():  # wait for the first checkpoint, then kill
        assert proc.poll() is None and time.monotonic() < deadline, "training ended before a checkpoint"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    state = torch.load(out / "checkpoint.pt", weights_only=False)["state"]
    assert 0 < state["step"] < steps
    subprocess.run(cmd, env=_env(), check=True, capture_output=True)
    return state


def _assert_same_run(a_dir: Path, b_dir: Path) -> None:
    a, b = (torch.load(d / "best.pt", weights_only=False) for d in (a_dir, b_dir))
    assert a["step"] == b["step"] and a["val_miou"] == b["val_miou"]
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    curve_a, curve_b = (json.loads((d / "curve.json").read_text()) for d in (a_dir, b_dir))
    assert curve_a == curve_b


def test_sigkill_then_rerun_matches_an_uninterrupted_run(workspace: dict[str, Path], stage1: Path) -> None:
    killed = workspace["root"] / "killed"
    _kill_after_first_checkpoint_then_rerun(_train_cmd(workspace, killed), killed, PARAMS["train_stage1"]["steps"])
    _assert_same_run(stage1, killed)


def test_stage_two_killed_mid_epoch_resumes_exactly(workspace: dict[str, Path], stage1: Path, tmp_path: Path) -> None:
    """Stage 2 (prior, --init) killed after a checkpoint inside an epoch ends as an uninterrupted run does."""
    priors = tmp_path / "priors"
    assert main(["predict-masks", "--data", str(workspace["data"]), "--features", str(workspace["features"]),
                 "--model", str(stage1 / "best.pt"), "--out", str(priors)]) == 0
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({**PARAMS, "train": {**PARAMS["train"], "checkpoint_every": 2}}))
    extra = ("--priors", str(priors), "--init", str(stage1 / "best.pt"))
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    subprocess.run(_train_cmd(workspace, straight, 2, extra, params), env=_env(), check=True, capture_output=True)
    state = _kill_after_first_checkpoint_then_rerun(_train_cmd(workspace, killed, 2, extra, params), killed,
                                                    PARAMS["train_stage2"]["steps"])
    assert state["position"] > 0, "the kill fell on an epoch boundary"
    _assert_same_run(straight, killed)


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return torch.load(out / "checkpoint.pt", weights_only=False)["model"]


def _train_two_processes(ws: dict[str, Path], out: Path, extra: tuple[str, ...], gpus: bool) -> None:
    """Stage 1 for 4 steps under torchrun with 2 processes (gloo, or NCCL with `gpus`); checks it ran."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
           str(free_ports(1)[0]), "-m", "components.cli", *_train_cmd(ws, out, extra=extra)[3:]]
    proc = subprocess.run(cmd, env=_env(gpus=gpus), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["world_size"] == 2 and summary["steps"] == 4 and (out / "best.pt").is_file()


def test_two_gloo_processes_train_the_weights_of_one(workspace: dict[str, Path], tmp_path: Path) -> None:
    """`train.batch_clips` is the global batch: 2 processes (torchrun, gloo), each computing its share of
    every batch, end with the weights and losses of 1 process computing whole batches. 3 clips per batch
    split 2 + 1, and a batch of one clip (batches group clips of equal length) leaves a process with none.
    The audio transformer is frozen, as in the recipe: trained, its BatchNorm would normalise by each
    process's share of the batch."""
    extra = ("--steps", "4", "--set", "train.batch_clips=3", "--set", "train.model.audio_frozen=true")
    one, two = tmp_path / "one", tmp_path / "two"
    subprocess.run(_train_cmd(workspace, one, extra=extra), env=_env(), check=True, capture_output=True)
    _train_two_processes(workspace, two, extra, gpus=False)
    a, b = _weights(one), _weights(two)
    for name, tensor in a.items():
        torch.testing.assert_close(b[name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    losses = [[row["loss"] for row in json.loads((d / "curve.json").read_text())] for d in (one, two)]
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 CUDA GPUs")
def test_two_process_nccl_ddp(workspace: dict[str, Path], tmp_path: Path) -> None:
    _train_two_processes(workspace, tmp_path / "ddp", ("--steps", "4"), gpus=True)


def test_stage_two_and_evaluation(workspace: dict[str, Path], stage1: Path, capsys) -> None:
    ws, root = workspace, workspace["root"]
    priors = root / "priors"
    assert main(["predict-masks", "--data", str(ws["data"]), "--features", str(ws["features"]),
                 "--model", str(stage1 / "best.pt"), "--out", str(priors)]) == 0
    assert len(list((priors / "avss").glob("*.pt"))) == 17
    stage2 = root / "s2"
    assert main(_train_cmd(ws, stage2, stage=2, extra=("--priors", str(priors), "--init",
                                                     str(stage1 / "best.pt")))[3:]) == 0
    from components.params import load_params
    from components.train.loop import initialise_from, make_model, train_config

    fresh = make_model(train_config(load_params(ws["params"]), 2))
    left = initialise_from(fresh, stage1 / "best.pt")
    assert left and all(k.startswith(("decoder.class_embed", "prior_inputs")) for k in left), left
    s1 = torch.load(stage1 / "best.pt", weights_only=False)["model"]
    torch.testing.assert_close(fresh.state_dict()["backbone.proj.0.0.weight"], s1["backbone.proj.0.0.weight"])
    report, metrics = root / "report", root / "metrics.json"
    assert main(["evaluate", "--data", str(ws["data"]), "--features", str(ws["features"]), "--stage1",
                 str(stage1 / "best.pt"), "--stage2", str(stage2 / "best.pt"), "--priors", str(priors),
                 "--out", str(report), "--metrics", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    assert set(values) == {"s4", "ms3", "avss"} and set(values["avss"]) == {"val", "test"}
    for subset in ("s4", "ms3"):
        assert 0 <= values[subset]["test"]["miou"] <= 1 and 0 <= values[subset]["test"]["fscore"] <= 1
    assert (report / "report.md").read_text().count("![") >= 3 and list((report / "gallery").glob("*.png"))
    from PIL import Image

    for picture in (report / "gallery").glob("*.png"):   # frames / truth / prediction rows, 256 px each
        with Image.open(picture) as img:
            assert img.height == 3 * 256 and img.width >= 5 * 256, (picture.name, img.size)
    assert (report / "plots" / "fscore_s4.csv").is_file() and (report / "plots" / "avss_class_iou.csv").is_file()
    decision = root / "gate.json"
    assert main(["gate", "--metrics", str(metrics), "--params", str(ws["params"]), "--out", str(decision)]) == 0
    assert json.loads(decision.read_text())["passed"] is True
    assert main(["summary", "--metrics", str(metrics), "--decision", str(decision)]) == 0
    assert "gate: PASS" in capsys.readouterr().out


def test_single_stage_semantic_model_needs_no_priors(workspace: dict[str, Path], capsys) -> None:
    ws, root = workspace, workspace["root"]
    evaluate_cmd = ["evaluate", "--data", str(ws["data"]), "--features", str(ws["features"])]
    # the two-stage model (prior input) refuses to train or be evaluated without the priors, naming them
    assert main(_train_cmd(ws, root / "refused", stage=2)[3:]) != 0
    assert "predict-masks" in capsys.readouterr().err and not (root / "refused").exists()
    assert main([*evaluate_cmd, "--out", str(root / "r0"), "--metrics", str(root / "m0.json")]) != 0
    assert "stage-1 model, a stage-2 model or both" in capsys.readouterr().err

    params = root / "single.yaml"
    single = {**PARAMS, "train": {**PARAMS["train"], "model": {"decoder_layers": 3, "prior": False}},
              "train_stage2": {"steps": 4}}
    params.write_text(yaml.safe_dump(single))
    out = root / "single"
    assert main(_train_cmd(ws, out, stage=2, params=params)[3:]) == 0
    saved = torch.load(out / "best.pt", weights_only=False)
    assert saved["model_config"]["prior"] is False and saved["model_config"]["num_classes"] == 71
    metrics = root / "single.json"
    assert main([*evaluate_cmd, "--stage2", str(out / "best.pt"), "--out", str(root / "single_report"),
                 "--metrics", str(metrics)]) == 0
    values = json.loads(metrics.read_text())
    assert set(values) == {"avss"} and 0 <= values["avss"]["test"]["miou_present"] <= 1

    prior_model = root / "s2" / "best.pt"  # from the two-stage test when run with it
    if prior_model.is_file():
        assert main([*evaluate_cmd, "--stage2", str(prior_model), "--out", str(root / "r1"),
                     "--metrics", str(root / "m1.json")]) != 0
        assert "takes the stage-1 prior" in capsys.readouterr().err and not (root / "m1.json").exists()


def test_gate_refuses_a_weak_challenger_and_passes_a_good_one() -> None:
    champion = {"s4": {"test": {"miou": 0.70}}, "avss": {"test": {"miou": 0.30}}}
    minimums = {"s4.test.miou": 0.5, "avss.test.miou": 0.2}
    weak = {"s4": {"test": {"miou": 0.66}}, "avss": {"test": {"miou": 0.31}}}
    decision = decide(weak, minimums, champion, margin=0.02)
    assert decision["passed"] is False
    assert any("s4.test.miou" in r and "champion" in r for r in decision["reasons"])
    too_low = decide({"s4": {"test": {"miou": 0.4}}, "avss": {"test": {"miou": 0.3}}}, minimums, None, 0.02)
    assert too_low["passed"] is False and "below the minimum" in too_low["reasons"][0]
    good = decide({"s4": {"test": {"miou": 0.69}}, "avss": {"test": {"miou": 0.35}}}, minimums, champion, 0.02)
    assert good["passed"] is True and good["champion"] is True


def test_audio_swap_fits_every_clip_length(workspace: dict[str, Path]) -> None:
    """Ablation A pairs clips of different lengths (5-frame S4/MS3/v1 with 10-frame v2): each clip must
    get exactly one second of the other clip's audio per frame of its own."""
    from components.train.data import ClipDataset

    plain = ClipDataset(workspace["data"], workspace["features"], 1, "train", 64)
    lengths = [c.num_frames for c in plain.clips]
    short, long = lengths.index(5), lengths.index(10)
    swapped = ClipDataset(workspace["data"], workspace["features"], 1, "train", 64,
                          audio_swap=[long if i == short else short if i == long else i for i in range(len(plain))])
    a_short, a_long = swapped[short].audio, swapped[long].audio
    assert a_short.shape[0] == 5 and torch.equal(a_short, plain[long].audio[:5])
    assert a_long.shape[0] == 10 and torch.equal(a_long[:5], plain[short].audio)
    assert torch.equal(a_long[5:], plain[short].audio[-1:].expand(5, -1, -1, -1))


def test_a_checkpoint_is_resumed_only_on_the_same_inputs(workspace: dict[str, Path], tmp_path: Path) -> None:
    features = tmp_path / "features"
    shutil.copytree(workspace["features"], features)
    ws = {**workspace, "features": features}
    out = tmp_path / "run"
    subprocess.run(_train_cmd(ws, out, extra=("--steps", "2")), env=_env(), check=True, capture_output=True)
    written = (out / "checkpoint.pt").stat().st_mtime_ns
    subprocess.run(_train_cmd(ws, out, extra=("--steps", "2")), env=_env(), check=True, capture_output=True)
    assert (out / "checkpoint.pt").stat().st_mtime_ns == written  # finished, same inputs: nothing to do
    for feature_file in features.rglob("*.safetensors"):  # the features were regenerated
        os.utime(feature_file, ns=(written + 10**9, written + 10**9))
    subprocess.run(_train_cmd(ws, out, extra=("--steps", "2")), env=_env(), check=True, capture_output=True)
    assert (out / "checkpoint.pt").stat().st_mtime_ns != written  # trained again on the new inputs


def test_audio_pretraining_learns_the_categories_and_keeps_frozen_weights_frozen(workspace: dict[str, Path]) -> None:
    from components.train.audio_pretrain import category_examples, pretrain_audio
    from components.train.data import ClipDataset
    from model.audio import AudioTransformer

    s4 = [ClipDataset(workspace["data"], workspace["features"], 1, split, 64, subsets=("s4",))
          for split in ("train", "val")]
    x, y, categories = category_examples(s4[0])
    assert x.shape[1:] == (96, 64) and len(x) == len(y) and len(categories) >= 2
    assert len(x) == 3 * sum(c.num_frames for c in s4[0].clips)  # every second at every scale
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        net = AudioTransformer(64, 2, 2, 16).requires_grad_(False)
        before = {k: v.clone() for k, v in net.state_dict().items()}
        report = pretrain_audio(net, *s4, steps=60, lr=1e-3, seed=5, device=torch.device("cpu"), batch=32)
        assert not any(p.requires_grad for p in net.parameters())
        assert not torch.equal(before["patch_embed.proj.weight"], net.state_dict()["patch_embed.proj.weight"])
        assert not torch.equal(before["init_bn.running_mean"], net.state_dict()["init_bn.running_mean"])
        runs.append((report, net.state_dict()))
    (report, weights), (report2, weights2) = runs
    assert report == report2 and all(torch.equal(weights[k], weights2[k]) for k in weights)  # deterministic
    assert report["categories"] == len(categories)
    assert report["train_accuracy"] >= 0.9, report
    chance = 1 / len(categories)
    assert report["val_accuracy"] is None or report["val_accuracy"] > chance, report
    assert report["val_mixture_accuracy"] is None or report["val_mixture_accuracy"] > 0.5, report


def test_a_head_on_every_token_teaches_each_token_to_name_the_sound(workspace: dict[str, Path]) -> None:
    """head_reads="tokens": the head named the sound from each token alone more often than when it read
    only their mean (the same steps and draws), and it still reads the mean for the other reports."""
    from components.common import StepError
    from components.train.audio_pretrain import pretrain_audio
    from components.train.data import ClipDataset
    from model.audio import AudioTransformer

    s4 = [ClipDataset(workspace["data"], workspace["features"], 1, split, 64, subsets=("s4",))
          for split in ("train", "val")]
    reports = {}
    for reads in ("mean", "tokens"):
        torch.manual_seed(0)
        net = AudioTransformer(64, 2, 2, 16)
        # 10 steps: long enough to name single sounds, short enough that not every token does yet
        reports[reads] = pretrain_audio(net, *s4, steps=10, lr=1e-3, seed=5, device=torch.device("cpu"), batch=32,
                                        head_reads=reads)
    if reports["mean"]["val_token_accuracy"] is None:
        pytest.skip("the tiny data hold no val clip of a train category")
    # seen: 0.95 against 0.84
    assert reports["tokens"]["val_token_accuracy"] > reports["mean"]["val_token_accuracy"] + 0.05, reports
    assert reports["tokens"]["train_accuracy"] >= 0.9, reports
    with pytest.raises(StepError, match="head_reads"):
        pretrain_audio(AudioTransformer(64, 2, 2, 16), *s4, steps=1, lr=1e-3, seed=5, device=torch.device("cpu"),
                       head_reads="first")


def test_the_avss_seconds_are_named_by_the_classes_their_labels_paint(workspace: dict[str, Path]) -> None:
    """`labelled_seconds`: each AVSS second whose label paints only S4 categories, at its 3 scales, with the
    multi-hot of what it paints; other seconds left out. Pretraining with them still learns the S4 sounds."""
    from components.avsbench.classes import AVSS_CLASSES, S4_CATEGORY_TO_AVSS
    from components.avsbench.reader import read_target
    from components.train.audio_pretrain import category_examples, labelled_seconds, pretrain_audio
    from components.train.data import ClipDataset
    from model.audio import AudioTransformer

    s4 = [ClipDataset(workspace["data"], workspace["features"], 1, split, 64, subsets=("s4",))
          for split in ("train", "val")]
    categories = category_examples(s4[0])[2]
    known = {AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[c]): i for i, c in enumerate(categories)}
    avss = ClipDataset(workspace["data"], workspace["features"], 1, "train", 64, subsets=("avss",))
    x, targets = labelled_seconds(avss, categories)
    expected, left_out = [], 0
    for files in avss.clips:
        audio = avss.read_audio(files)
        for t in range(files.num_frames):
            label = read_target(files, t)
            painted = set(label.flatten().tolist()) - {0} if label is not None else set()
            if painted and painted <= known.keys():
                hot = torch.zeros(len(categories))
                hot[[known[c] for c in painted]] = 1
                expected += [(audio[t, s], hot) for s in range(audio.shape[1])]
            else:
                left_out += 1
    assert left_out > 0 and len(expected) > 0          # the tiny v2 clips use classes beyond the S4 ones
    assert len(x) == len(targets) == len(expected) and x.shape[1:] == (96, 64)
    for (mel, hot), got_mel, got_hot in zip(expected, x, targets, strict=True):
        assert torch.equal(mel, got_mel) and torch.equal(hot, got_hot)
    assert targets.sum(1).max() >= 2                    # real mixtures among them
    torch.manual_seed(0)
    report = pretrain_audio(AudioTransformer(64, 2, 2, 16), *s4, steps=60, lr=1e-3, seed=5,
                            device=torch.device("cpu"), batch=32, heard_from=avss)
    assert report["train_accuracy"] >= 0.9, report


def test_hearing_the_avss_seconds_without_avss_clips_is_refused_naming_the_setting(
        workspace: dict[str, Path], tmp_path: Path, capsys) -> None:
    data = tmp_path / "no-avss"
    shutil.copytree(workspace["data"], data)
    shutil.rmtree(data / "AVSBench_semantic")
    ws = {**workspace, "data": data}
    out = tmp_path / "refused"
    assert main(_train_cmd(ws, out, extra=("--steps", "1", "--set", "train_stage1.audio_pretrain_avss=true",
                                           "--set", "train_stage1.audio_pretrain_steps=1"))[3:]) != 0
    assert "train_stage1.audio_pretrain_avss needs the AVSS clips" in capsys.readouterr().err
    assert not out.exists()


def test_pretraining_mixtures_name_every_source_and_keep_single_sounds_unchanged() -> None:
    from components.train.audio_pretrain import SoundMixer

    # 2 categories x 3 scales, each example one constant level: a mixture's level lies between its sources'
    levels = torch.tensor([0.0, 10.0, 20.0, 1.0, 11.0, 21.0])      # example i: scale i % 3
    x = levels[:, None, None].expand(6, 96, 64).clone()
    y = torch.tensor([0, 0, 0, 1, 1, 1])
    mixer = SoundMixer(x, y, 2)
    mixed, targets = mixer.draw(300, 3, torch.Generator().manual_seed(0))
    assert mixed.shape == (300, 96, 64) and targets.shape == (300, 2)
    assert set(targets.sum(1).tolist()) == {1.0, 2.0}  # at most the 2 categories, though 3 were allowed
    for row, target in zip(mixed, targets, strict=True):
        value = float(row[0, 0])
        assert torch.all(row == row[0, 0])
        if target.sum() == 1:  # a single sound is an example, unchanged, of its category
            assert value in levels[y == int(target.argmax())].tolist()
        else:  # one example of each category at one scale: strictly between their levels
            assert any(levels[s] < value < levels[s + 3] for s in range(3)), value
    again = mixer.draw(300, 3, torch.Generator().manual_seed(0))
    assert torch.equal(again[0], mixed) and torch.equal(again[1], targets)
    _, single_targets = mixer.draw(50, 1, torch.Generator().manual_seed(1))
    assert torch.all(single_targets.sum(1) == 1)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_gpu_training_in_bf16_writes_a_float32_checkpoint_that_cpu_can_use(workspace: dict[str, Path],
                                                                           tmp_path: Path) -> None:
    out = tmp_path / "gpu"
    proc = subprocess.run(_train_cmd(workspace, out, extra=("--steps", "4")), env=_env(gpus=True),
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["steps"] == 4 and torch.isfinite(torch.tensor(summary["final_loss"]))
    saved = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    floats = [t for t in saved["model"].values() if t.is_floating_point()]
    assert floats and all(t.dtype == torch.float32 and torch.isfinite(t).all() for t in floats)
    priors = tmp_path / "priors"
    proc = subprocess.run([sys.executable, "-m", "components.cli", "predict-masks", "--data", str(workspace["data"]),
                           "--features", str(workspace["features"]), "--model", str(out / "best.pt"), "--out",
                           str(priors)], env=_env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(list((priors / "avss").glob("*.pt"))) == 17


def test_a_model_file_that_is_not_one_is_named(tmp_path: Path) -> None:
    """A missing, corrupt or foreign model file gives CheckpointError (a StepError) naming it."""
    from components.train.checkpoint import CheckpointError, load_trained

    corrupt, foreign = tmp_path / "corrupt.pt", tmp_path / "foreign.pt"
    corrupt.write_bytes(b"\x80\x04 not a checkpoint")
    torch.save({"weights": torch.zeros(3)}, foreign)
    for path, message in ((tmp_path / "missing.pt", "not found"), (corrupt, "not a model written by avs train"),
                          (foreign, "not a model written by avs train")):
        with pytest.raises(CheckpointError, match=message) as info:
            load_trained(path)
        assert str(path) in str(info.value)
    assert main(["predict-masks", "--data", str(tmp_path), "--features", str(tmp_path), "--model", str(corrupt),
                 "--out", str(tmp_path / "priors")]) == 2
