"""The training loop: resumable, deterministic on CPU, DDP under torchrun, best-on-val selection."""

from __future__ import annotations

import hashlib
import json
import os
import random
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from components.avsbench.classes import NUM_AVSS_CLASSES
from components.avsbench.layout import logmel_file
from components.common import StepError, write_json_atomic
from components.params import Params
from components.train import checkpoint as ckpt
from components.train.audio_pretrain import pretrain_audio
from components.train.augment import augment
from components.train.data import (
    ClipDataset,
    batches,
    clip_draws,
    collate,
    frame_window,
    prior_file,
    training_prior,
)
from components.train.optim import param_groups, poly_schedule
from components.train.predict import require_priors, run_model, score
from model import create_model
from model.criterion import SetCriterion


@dataclass(frozen=True)
class TrainConfig:
    """Everything that decides one stage's training run, resolved from the `train` and `train_stage{N}`
    sections of params.yaml by `train_config` (the defaults live in components/params.py only).

    preset / model: the network (model: ModelConfig overrides); input_size: square frame side;
    batch_clips clips per step, each cut to `frames` frames around an annotated one (0: all);
    accumulate: gradient accumulation; lr, weight_decay, backbone_lr_mult, poly_power, clip_grad: AdamW
    with poly decay; checkpoint_every / val_every: steps between checkpoints / val passes; audio_swap:
    ablation, every clip hears another's audio; flip, max_zoom: augmentation; audio_pretrain_steps /
    audio_pretrain_sources: stage 1's audio pretraining (0 steps: off; always 0 in stage 2, which starts
    from stage 1); prior_truth: stage 2's share of clips whose prior is the ground truth; repeat:
    subset -> times each of its clips comes per epoch (e.g. {"ms3": 2}; default once).
    """

    stage: int
    preset: str
    input_size: int
    batch_clips: int
    accumulate: int
    steps: int
    lr: float
    weight_decay: float
    backbone_lr_mult: float
    poly_power: float
    clip_grad: float
    checkpoint_every: int
    val_every: int
    seed: int
    audio_swap: bool
    frames: int
    flip: bool
    max_zoom: float
    audio_pretrain_steps: int
    audio_pretrain_sources: int
    prior_truth: float
    model: dict[str, Any] = field(default_factory=dict)
    repeat: dict[str, int] = field(default_factory=dict)
    audio_pretrain_head: str = "mean"
    audio_pretrain_avss: bool = False

    def fingerprint(self, *inputs: Any) -> str:
        """Key of a run: these settings plus `inputs` (JSON-able: the resolved network config, the
        training inputs' digest). A checkpoint is resumed only under the same key."""
        settings = asdict(self)
        if self.stage == 1:  # stage 1 has no prior: a stage-2 prior setting must not retrain it
            settings.pop("prior_truth")
        for name, default in (("repeat", {}), ("audio_pretrain_head", "mean"), ("audio_pretrain_avss", False)):
            if settings[name] == default:  # runs keyed before the setting existed keep their key
                settings.pop(name)
        return hashlib.sha256(json.dumps([settings, *inputs], sort_keys=True).encode()).hexdigest()[:16]


def inputs_digest(dataset: ClipDataset) -> str:
    """Identity of what a run trains on: every training clip's key with the size and modification time of
    its audio, log-mel features, first frame and (stage 2) prior. Regenerated data gives a new digest, so
    a checkpoint of the old data is not resumed; a crashed run on untouched data is."""
    h = hashlib.sha256()
    for files in dataset.clips:
        paths = [files.audio, logmel_file(dataset.features, files), files.frames[0]]
        if dataset.priors is not None:
            paths.append(prior_file(dataset.priors, files))
        h.update(files.key.encode())
        for path in map(Path, paths):
            stat = path.stat() if path.exists() else None
            h.update(f"|{stat.st_size}:{stat.st_mtime_ns}".encode() if stat else b"|missing")
    return h.hexdigest()[:16]


def weights_digest(model_config: dict[str, Any]) -> str:
    """Identity of the initial weight files a network config names (backbone_weights, audio_weights): their
    size and modification time, so a run is not resumed after the file it started from was rewritten."""
    h = hashlib.sha256()
    for name in ("backbone_weights", "audio_weights"):
        path = model_config.get(name)
        stat = Path(path).stat() if path and Path(path).is_file() else None
        h.update(f"{name}={path}|{stat.st_size}:{stat.st_mtime_ns}|".encode() if stat else f"{name}={path}|".encode())
    return h.hexdigest()[:16]


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _distributed() -> tuple[int, int]:
    """(rank, world size); initialises the process group when launched by torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return (dist.get_rank(), world) if world > 1 else (0, 1)


def _swap_permutation(n: int, seed: int) -> list[int]:
    """A derangement-ish shuffle: every clip hears another clip's audio (when n > 1)."""
    if n < 2:
        return list(range(n))
    return [(i + 1 + seed % (n - 1)) % n for i in range(n)]


def train_config(params: Params, stage: int, **changes: Any) -> TrainConfig:
    """TrainConfig of `stage` (1 or 2) from the typed parameters, with `changes` (TrainConfig fields whose
    value is not None, e.g. a command line's --steps) on top."""
    if stage not in (1, 2):
        raise StepError(f"stage must be 1 or 2, got {stage}")
    common = asdict(params.train)
    one, two = params.train_stage1, params.train_stage2
    per_stage = {"steps": one.steps if stage == 1 else two.steps,
                 "audio_pretrain_steps": one.audio_pretrain_steps if stage == 1 else 0,
                 "audio_pretrain_sources": one.audio_pretrain_sources, "prior_truth": two.prior_truth,
                 "audio_pretrain_head": one.audio_pretrain_head, "audio_pretrain_avss": one.audio_pretrain_avss}
    cfg = TrainConfig(stage=stage, **common, **per_stage)
    return replace(cfg, **{k: v for k, v in changes.items() if v is not None})


def build_datasets(cfg: TrainConfig, data: Path, features: Path, priors: Path | None,
                   audio_classes: dict[str, torch.Tensor] | None = None) -> tuple[ClipDataset, ClipDataset]:
    """The stage's train and val datasets (audio swapped when cfg.audio_swap; see ClipDataset for the rest)."""
    train_set = ClipDataset(data, features, cfg.stage, "train", cfg.input_size, priors, audio_classes=audio_classes)
    val_set = ClipDataset(data, features, cfg.stage, "val", cfg.input_size, priors, audio_classes=audio_classes)
    if cfg.audio_swap:
        train_set.audio_swap = _swap_permutation(len(train_set), cfg.seed)
        val_set.audio_swap = _swap_permutation(len(val_set), cfg.seed)
    return train_set, val_set


def _pretrain_audio(cfg: TrainConfig, net: torch.nn.Module, data: Path, features: Path,
                    device: torch.device) -> dict[str, float | None]:
    """Run audio_pretrain on the network's audio transformer with the S4 clips of train and val."""
    try:
        s4 = [ClipDataset(data, features, 1, split, cfg.input_size, subsets=("s4",)) for split in ("train", "val")]
    except StepError as exc:
        raise StepError(f"train.audio_pretrain_steps={cfg.audio_pretrain_steps} needs the S4 clips, whose "
                        f"categories it learns ({exc}); set it to 0") from exc
    try:
        avss = ClipDataset(data, features, 1, "train", cfg.input_size, subsets=("avss",)) \
            if cfg.audio_pretrain_avss else None
    except StepError as exc:
        raise StepError(f"train_stage1.audio_pretrain_avss needs the AVSS clips, whose labelled seconds it hears "
                        f"({exc}); set it to false") from exc
    return pretrain_audio(net.audio.transformer, *s4, cfg.audio_pretrain_steps, cfg.lr, cfg.seed, device,
                          max_sources=cfg.audio_pretrain_sources, head_reads=cfg.audio_pretrain_head,
                          heard_from=avss)


def make_model(cfg: TrainConfig, initial_weights: bool = True) -> torch.nn.Module:
    """The stage's network: cfg.preset with cfg.model on top (2 classes for stage 1, 71 and the prior input
    for stage 2, unless cfg.model says otherwise). The local weight files cfg.model names
    (backbone_weights, audio_weights) are read unless `initial_weights` is False (a run that starts from
    another trained network's tensors). StepError names a weight file that is missing or does not fit."""
    defaults = {"num_classes": 2 if cfg.stage == 1 else NUM_AVSS_CLASSES, "prior": cfg.stage == 2}
    settings = defaults | cfg.model  # cfg.model may override, e.g. prior: false
    if not initial_weights:
        settings |= {"backbone_weights": None, "audio_weights": None}
    try:
        return create_model(cfg.preset, **settings)
    except (FileNotFoundError, RuntimeError) as exc:  # a missing file; timm: tensors that do not fit
        named = {k: settings.get(k) for k in ("backbone_weights", "audio_weights") if settings.get(k)}
        if not named:
            raise
        raise StepError(f"train.model {named}: cannot build the network from these weights ({exc})") from exc


def initialise_from(net: torch.nn.Module, path: Path) -> list[str]:
    """Copy every tensor of a trained network (`best.pt`) whose name and shape match into `net`.

    Stage 2 starts from stage 1 this way; the class head (2 -> 71 classes) and the prior inputs start
    fresh. Returns the names of the tensors left at their initial values.
    """
    saved = ckpt.load(Path(path))["model"]
    own = net.state_dict()
    matching = {k: v for k, v in saved.items() if k in own and own[k].shape == v.shape}
    net.load_state_dict(matching, strict=False)
    return sorted(set(own) - set(matching))


def training_batch(cfg: TrainConfig, dataset: ClipDataset, index: list[int], step: int) -> dict:
    """The collated batch training step `step` sees for the clips `index` of `dataset`: each clip with its
    training prior, cut to a window of cfg.frames, augmented; every draw depends on (cfg.seed, step, clip)."""
    samples = [training_prior(dataset[i], cfg.prior_truth, cfg.seed, step, i) for i in index]
    if cfg.frames > 0:  # stream 2: apart from the augmentation's and the prior's draws
        samples = [frame_window(x, cfg.frames, clip_draws(cfg.seed, step, i, 2))
                   for x, i in zip(samples, index, strict=True)]
    if cfg.flip or cfg.max_zoom > 1:
        samples = [augment(x, clip_draws(cfg.seed, step, i), cfg.flip, cfg.max_zoom)
                   for x, i in zip(samples, index, strict=True)]
    batch = collate(samples)
    # stream 3: each frame's seed for the points the criterion samples on it
    batch["seeds"] = torch.tensor([frame_seed(cfg.seed, step, i, t) for x, i in zip(samples, index, strict=True)
                                   for t in range(len(x.has_gt))], dtype=torch.int64)
    return batch


def frame_seed(seed: int, step: int, clip: int, frame: int) -> int:
    """The seed of the criterion's random points on one frame (its place in the clip's training window) of
    one clip at one step: a function of these only, so one process and several draw the same points."""
    return int(np.random.SeedSequence([seed, step, clip, 3, frame]).generate_state(1)[0])


def shard(index: list[int], rank: int, world: int) -> tuple[list[int], bool]:
    """This process's clips of a step's batch `index` (clips rank, rank + world, ...) and whether it holds
    any. A process left without one (a batch smaller than the world) computes the batch's first clip with
    no frame annotated: a zero loss that still takes part in DDP's gradient exchange."""
    mine = index[rank::world]
    return (mine, True) if mine else (index[:1], False)


@dataclass
class Progress:
    """Where a run stands; saved in every checkpoint (as a dict) and restored on resume."""

    step: int = 0
    epoch: int = 0
    position: int = 0                  # batches of the current epoch already used
    best: float = -1.0                 # best val mIoU so far
    curve: list[dict[str, Any]] = field(default_factory=list)
    audio_pretrain: dict[str, Any] | None = None


@dataclass
class Run:
    """Everything one training run holds between its phases. `model` is `net` wrapped in DDP when the
    run has several processes (the bare `net` for saving and validation)."""

    cfg: TrainConfig
    out: Path
    rank: int
    world: int
    device: torch.device
    train_set: ClipDataset
    val_set: ClipDataset
    net: torch.nn.Module
    model: torch.nn.Module
    criterion: SetCriterion
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    run_id: str
    progress: Progress


def prepare_run(cfg: TrainConfig, data: Path, features: Path, out: Path, priors: Path | None = None,
                init: Path | None = None, audio_classes: dict[str, torch.Tensor] | None = None) -> Run:
    """Phase 1: datasets, network (from `init`, resumed from `out/checkpoint.pt` when that holds an
    unfinished run of the same settings and inputs, else fresh with the audio pretraining first),
    criterion, DDP wrapper, optimiser and schedule."""
    rank, world = _distributed()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available() else "cpu")
    out = Path(out)
    _seed_everything(cfg.seed)
    train_set, val_set = build_datasets(cfg, data, features, priors, audio_classes)
    if len(train_set) == 0:
        raise StepError(f"stage {cfg.stage}: no training clips under {data}")
    model = make_model(cfg, initial_weights=init is None)  # `init` replaces every matching tensor
    require_priors(model, priors, f"stage {cfg.stage} (train.model.prior)")
    if init is not None:
        if not Path(init).is_file():
            raise StepError(f"--init {init}: file not found")
        initialise_from(model, init)
    net = model.to(device)  # the bare module; under DDP `model` wraps it
    latest = out / "checkpoint.pt"
    # the resolved network config counts too: a preset can change under the same settings
    run_id = cfg.fingerprint(net.cfg.to_dict(), inputs_digest(train_set), weights_digest(net.cfg.to_dict()))
    saved = ckpt.load(latest) if latest.is_file() else None
    if saved is not None and saved["fingerprint"] != run_id:
        saved = None
    audio_report = None
    if saved is None and init is None and cfg.audio_pretrain_steps > 0:
        audio_report = _pretrain_audio(cfg, net, data, features, device)
    criterion = SetCriterion(net.cfg).to(device)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda"
                                                          else None)
    # the fused kernel: one pass over all parameters instead of one per tensor (3-5x faster on CPU)
    optimizer = torch.optim.AdamW(param_groups(model, cfg.lr, cfg.weight_decay, cfg.backbone_lr_mult), fused=True)
    scheduler = poly_schedule(optimizer, cfg.steps, cfg.poly_power)
    progress = Progress(audio_pretrain=audio_report)
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(saved["rng"])
        progress = Progress(**saved["state"])
    return Run(cfg, out, rank, world, device, train_set, val_set, net, model, criterion, optimizer, scheduler,
               run_id, progress)


def save_checkpoint(run: Run) -> None:
    """The full training state to `out/checkpoint.pt` (rank 0 writes, atomically)."""
    if run.rank == 0:
        ckpt.save_atomic({"fingerprint": run.run_id, "model": run.net.state_dict(),
                          "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
                          "rng": ckpt.rng_state(), "state": asdict(run.progress), "config": asdict(run.cfg)},
                         run.out / "checkpoint.pt")


def validate(run: Run) -> None:
    """Score val (rank 0, the bare module: DDP would wait for the other ranks); a better score writes
    `out/best.pt`. Every rank waits for it, then returns to training mode."""
    progress = run.progress
    if run.rank == 0:
        value = score(run.net, run.val_set, run.device)
        progress.curve[-1]["val_miou"] = value
        if value > progress.best:
            progress.best = value
            ckpt.save_atomic({"model": run.net.state_dict(), "model_config": run.net.cfg.to_dict(),
                              "train_config": asdict(run.cfg), "step": progress.step, "val_miou": value},
                             run.out / "best.pt")
    if run.world > 1:
        dist.barrier()
    run.model.train()


def train_step(run: Run, order: list[list[int]], autocast: torch.autocast) -> float:
    """One optimiser step over `cfg.accumulate` batches from `order` at the current position; returns its
    loss and advances the progress (step, position, curve). Under DDP every process takes its share of each
    batch (`shard`); with the criterion's shared normalisers the averaged gradient, and so the step, is
    that of one process computing the whole batch."""
    cfg, progress = run.cfg, run.progress
    run.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for micro in range(cfg.accumulate):
        index, holds = shard(order[(progress.position + micro) % len(order)], run.rank, run.world)
        batch = training_batch(cfg, run.train_set, index, progress.step)
        has_gt = batch["has_gt"] if holds else torch.zeros_like(batch["has_gt"])
        with autocast:
            preds = run_model(run.model, batch, run.device)
            loss = run.criterion(preds, batch["labels"].to(run.device), has_gt.to(run.device),
                                 batch["regions"].to(run.device), batch["seeds"], batch["looks"].to(run.device))["loss"]
        (loss / cfg.accumulate).backward()
        total += loss.item() / cfg.accumulate
    if run.world > 1:  # the step's loss: the mean of the processes' (see model.criterion.shared_means)
        summed = torch.tensor([total], dtype=torch.float64, device=run.device)
        dist.all_reduce(summed)
        total = summed.item() / run.world
    if cfg.clip_grad > 0:
        torch.nn.utils.clip_grad_norm_(run.model.parameters(), cfg.clip_grad, foreach=True)
    run.optimizer.step()
    run.scheduler.step()
    progress.position += cfg.accumulate
    progress.step += 1
    progress.curve.append({"step": progress.step, "loss": total, "lr": max(run.scheduler.get_last_lr())})
    return total


def run_steps(run: Run, show_progress: bool = True) -> None:
    """Phase 2: train until `cfg.steps`, epoch by epoch (every process steps through the same batches, each
    computing its share of every batch; see `train_step`), validating every `val_every` and checkpointing
    every `checkpoint_every` steps and at the end."""
    from tqdm import tqdm

    cfg, progress = run.cfg, run.progress
    bar = tqdm(total=cfg.steps, initial=progress.step, desc=f"train stage {cfg.stage}", unit="step",
               disable=None if show_progress and run.rank == 0 else True, dynamic_ncols=True)
    autocast = torch.autocast(run.device.type, dtype=torch.bfloat16, enabled=run.device.type == "cuda")
    run.model.train()
    while progress.step < cfg.steps:
        order = batches(run.train_set, cfg.batch_clips,
                        torch.Generator().manual_seed(cfg.seed * 1000 + progress.epoch), cfg.frames,
                        cfg.repeat)
        while progress.position < len(order) and progress.step < cfg.steps:
            total = train_step(run, order, autocast)
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}")
            if progress.step % cfg.val_every == 0 or progress.step == cfg.steps:
                validate(run)
            if progress.step % cfg.checkpoint_every == 0 or progress.step == cfg.steps:
                save_checkpoint(run)
        if progress.position >= len(order):
            progress.epoch += 1
            progress.position = 0
    bar.close()


def finish_run(run: Run, seconds: float) -> dict[str, Any]:
    """Phase 3: the summary; rank 0 writes `out/curve.json` and `out/summary.json`."""
    progress = run.progress
    summary = {"stage": run.cfg.stage, "steps": progress.step, "best_val_miou": progress.best,
               "final_loss": progress.curve[-1]["loss"] if progress.curve else None,
               "seconds_this_run": round(seconds, 1), "world_size": run.world}
    if progress.audio_pretrain:
        summary["audio_pretrain"] = progress.audio_pretrain
    if run.rank == 0:
        write_json_atomic(run.out / "curve.json", progress.curve)
        write_json_atomic(run.out / "summary.json", summary)
    if run.world > 1:
        dist.barrier()
    return summary


def train(cfg: TrainConfig, data: Path, features: Path, out: Path, priors: Path | None = None,
          progress: bool = True, init: Path | None = None,
          audio_classes: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train one stage; resume from `out/checkpoint.pt` if an unfinished run of the same config is there.

    Writes (atomically) `out/checkpoint.pt` every `checkpoint_every` steps, `out/best.pt` (weights of the
    best validation score, selected on val only), `out/curve.json` (per-step loss, lr, val score) and
    returns the summary also written to `out/summary.json`. `init`: a `best.pt` whose matching tensors
    start the network (stage 2 from stage 1); ignored when resuming. A fresh run without `init` and with
    `audio_pretrain_steps` first pretrains the audio transformer (audio_pretrain.py). `audio_classes`: the
    label oracle's audio (see ClipDataset), for a network with `audio_input: classes`. `progress`: show a
    progress bar. The phases: `prepare_run`, `run_steps`, `finish_run`.
    """
    run = prepare_run(cfg, data, features, out, priors, init, audio_classes)
    started = time.perf_counter()
    run_steps(run, progress)
    return finish_run(run, time.perf_counter() - started)
