"""The training loop: resumable, deterministic on CPU, DDP under torchrun, best-on-val selection."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist

from components.avsbench.classes import NUM_AVSS_CLASSES
from components.avsbench.layout import logmel_file
from components.common import StepError, read_params, write_json_atomic
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
    """Everything that decides a training run (all of it comes from params.yaml)."""

    stage: int
    preset: str = "tiny"
    input_size: int = 128
    batch_clips: int = 2
    accumulate: int = 1
    steps: int = 300
    lr: float = 3e-4
    weight_decay: float = 0.05
    backbone_lr_mult: float = 0.1
    poly_power: float = 0.9
    clip_grad: float = 1.0
    checkpoint_every: int = 50
    val_every: int = 100
    seed: int = 0
    audio_swap: bool = False
    frames: int = 0           # frames per training clip and step: a window holding an annotated frame (0: all)
    flip: bool = False        # augmentation: mirror a training clip with probability 1/2
    max_zoom: float = 1.0     # augmentation: zoom into a random crop by up to this factor (1: off)
    audio_pretrain_steps: int = 0  # audio transformer taught the S4 categories first (audio_pretrain.py; 0: off)
    audio_pretrain_sources: int = 3  # most S4 sounds mixed into one pretraining example (1: single sounds)
    prior_truth: float = 1.0  # stage 2: share of training clips whose prior is the ground truth (else stage 1's)
    model: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self, *inputs: Any) -> str:
        """Key of a run: these settings plus `inputs` (JSON-able: the resolved network config, the
        training inputs' digest). A checkpoint is resumed only under the same key."""
        settings = asdict(self)
        if self.stage == 1:  # stage 1 has no prior: a stage-2 prior setting must not retrain it
            settings.pop("prior_truth")
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


def load_train_config(params: Path, stage: int, **overrides: Any) -> TrainConfig:
    """TrainConfig for `stage` from params.yaml: section `train`, with `train.stage{N}` on top."""
    section = read_params(params, "train")
    per_stage = {k: section.pop(k) for k in [k for k in section if k.startswith("stage")]}
    section.update(per_stage.get(f"stage{stage}") or {})
    section.update({k: v for k, v in overrides.items() if v is not None})
    known = set(TrainConfig.__dataclass_fields__) - {"stage"}
    unknown = sorted(set(section) - known)
    if unknown:
        raise StepError(f"{params}: unknown train parameter(s) {', '.join(unknown)}")
    for name, low, high, rule in (("max_zoom", 1.0, math.inf, "must be >= 1 (1: no zoom)"),
                                  ("prior_truth", 0.0, 1.0, "must lie in [0, 1]"),
                                  ("audio_pretrain_sources", 1, math.inf, "must be >= 1 (1: single sounds)"),
                                  ("frames", 0, math.inf, "must be >= 0 (0: every frame)")):
        if name not in section:
            continue
        try:
            value = float(section[name])
        except (TypeError, ValueError):
            raise StepError(f"{params}: train.{name}={section[name]!r} is not a number") from None
        if not low <= value <= high:
            raise StepError(f"{params}: train.{name}={section[name]} {rule}")
        if TrainConfig.__dataclass_fields__[name].type == "int":
            if value != int(value):
                raise StepError(f"{params}: train.{name}={section[name]} must be a whole number")
            section[name] = int(value)  # 2.0 as 2
    return TrainConfig(stage=stage, **section)


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
    return pretrain_audio(net.audio.transformer, *s4, cfg.audio_pretrain_steps, cfg.lr, cfg.seed, device,
                          max_sources=cfg.audio_pretrain_sources)


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
    return collate(samples)


def train(cfg: TrainConfig, data: Path, features: Path, out: Path, priors: Path | None = None,
          progress: bool = True, init: Path | None = None,
          audio_classes: dict[str, torch.Tensor] | None = None) -> dict[str, Any]:
    """Train one stage; resume from `out/checkpoint.pt` if an unfinished run of the same config is there.

    Writes (atomically) `out/checkpoint.pt` every `checkpoint_every` steps, `out/best.pt` (weights of the
    best validation score, selected on val only), `out/curve.json` (per-step loss, lr, val score) and
    returns the summary also written to `out/summary.json`. `init`: a `best.pt` whose matching tensors
    start the network (stage 2 from stage 1); ignored when resuming. A fresh run without `init` and with
    `audio_pretrain_steps` first pretrains the audio transformer (audio_pretrain.py). `audio_classes`: the
    label oracle's audio (see ClipDataset), for a network with `audio_input: classes`.
    """
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
    state = {"step": 0, "epoch": 0, "position": 0, "best": -1.0, "curve": [], "audio_pretrain": audio_report}
    if saved is not None:
        net.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        ckpt.set_rng_state(saved["rng"])
        state = saved["state"]

    def save_checkpoint() -> None:
        if rank == 0:
            ckpt.save_atomic({"fingerprint": run_id, "model": net.state_dict(),
                              "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                              "rng": ckpt.rng_state(), "state": state, "config": asdict(cfg)}, latest)

    def validate() -> None:
        if rank == 0:
            value = score(net, val_set, device)  # the bare module: DDP would wait for the other ranks
            state["curve"][-1]["val_miou"] = value
            if value > state["best"]:
                state["best"] = value
                ckpt.save_atomic({"model": net.state_dict(), "model_config": net.cfg.to_dict(),
                                  "train_config": asdict(cfg), "step": state["step"], "val_miou": value},
                                 out / "best.pt")
        if world > 1:
            dist.barrier()
        model.train()

    from tqdm import tqdm

    bar = tqdm(total=cfg.steps, initial=state["step"], desc=f"train stage {cfg.stage}", unit="step",
               disable=None if progress and rank == 0 else True, dynamic_ncols=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    model.train()
    started = time.perf_counter()
    while state["step"] < cfg.steps:
        order = batches(train_set, cfg.batch_clips, torch.Generator().manual_seed(cfg.seed * 1000 + state["epoch"]),
                        cfg.frames)
        order = order[rank::world][: len(order) // world] if world > 1 else order
        while state["position"] < len(order) and state["step"] < cfg.steps:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(cfg.accumulate):
                index = order[(state["position"] + micro) % len(order)]
                batch = training_batch(cfg, train_set, index, state["step"])
                with autocast:
                    preds = run_model(model, batch, device)
                    loss = criterion(preds, batch["labels"].to(device), batch["has_gt"].to(device),
                                     batch["regions"].to(device))["loss"]
                (loss / cfg.accumulate).backward()
                total += loss.item() / cfg.accumulate
            if cfg.clip_grad > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.clip_grad, foreach=True)
            optimizer.step()
            scheduler.step()
            state["position"] += cfg.accumulate
            state["step"] += 1
            state["curve"].append({"step": state["step"], "loss": total, "lr": max(scheduler.get_last_lr())})
            bar.update(1)
            bar.set_postfix(loss=f"{total:.3f}")
            if state["step"] % cfg.val_every == 0 or state["step"] == cfg.steps:
                validate()
            if state["step"] % cfg.checkpoint_every == 0 or state["step"] == cfg.steps:
                save_checkpoint()
        if state["position"] >= len(order):
            state["epoch"] += 1
            state["position"] = 0
    bar.close()
    summary = {"stage": cfg.stage, "steps": state["step"], "best_val_miou": state["best"],
               "final_loss": state["curve"][-1]["loss"] if state["curve"] else None,
               "seconds_this_run": round(time.perf_counter() - started, 1), "world_size": world}
    if state.get("audio_pretrain"):
        summary["audio_pretrain"] = state["audio_pretrain"]
    if rank == 0:
        write_json_atomic(out / "curve.json", state["curve"])
        write_json_atomic(out / "summary.json", summary)
    if world > 1:
        dist.barrier()
    return summary
