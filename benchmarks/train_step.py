"""Where one stage-1 training step's time goes: the recipe of --params against the earlier one, same run.

For each recipe it times whole training steps (data, forward, loss, backward, optimiser) on the demo data,
and each part of the network on its own (forward + backward on inputs of the step's shapes), then prints
the ratio of the two recipes' seconds per step and per annotated frame. The earlier recipe ("before") is
the same settings with every frame of a clip in each step, the per-tensor AdamW, no semantic loss, one
target per class and no look loss:
what a step cost before the demo recipe was reworked.

Usage: python benchmarks/train_step.py [--params params.yaml] [--data data/synthetic]
       [--features data/features] [--steps 20] [--threads 2]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import torch

from components.params import load_params
from components.train.data import ClipDataset, batches
from components.train.loop import TrainConfig, make_model, train_config, training_batch
from components.train.optim import param_groups
from components.train.predict import run_model
from model.criterion import SetCriterion


def _batch(cfg: TrainConfig, dataset: ClipDataset, order: list[list[int]], step: int) -> dict:
    """Training step `step`'s batch, read and cut and augmented as the training loop does it."""
    return training_batch(cfg, dataset, order[step % len(order)], step)


def _order(cfg: TrainConfig, dataset: ClipDataset) -> list[list[int]]:
    return batches(dataset, cfg.batch_clips, torch.Generator().manual_seed(cfg.seed * 1000), cfg.frames)


def time_steps(cfg: TrainConfig, dataset: ClipDataset, steps: int, fused: bool) -> dict[str, float]:
    """Mean seconds per training step of each phase over `steps` steps (after 3 warm-up steps), and the
    mean annotated frames per step."""
    net = make_model(cfg, initial_weights=False).train()
    criterion = SetCriterion(net.cfg)
    optimizer = torch.optim.AdamW(param_groups(net, cfg.lr, cfg.weight_decay, cfg.backbone_lr_mult),
                                  **({"fused": True} if fused else {}))
    order = _order(cfg, dataset)
    phases = dict.fromkeys(("data", "forward", "loss", "backward", "optimiser"), 0.0)
    annotated = 0
    warm = 3
    for step in range(steps + warm):
        if step == warm:
            phases = dict.fromkeys(phases, 0.0)
            annotated = 0
        t0 = time.perf_counter()
        batch = _batch(cfg, dataset, order, step)
        t1 = time.perf_counter()
        preds = run_model(net, batch, torch.device("cpu"))
        t2 = time.perf_counter()
        loss = criterion(preds, batch["labels"], batch["has_gt"], batch["regions"], batch["seeds"],
                         batch["looks"])["loss"]
        t3 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t4 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(net.parameters(), cfg.clip_grad, foreach=True)
        optimizer.step()
        t5 = time.perf_counter()
        for name, (a, b) in zip(phases, ((t0, t1), (t1, t2), (t2, t3), (t3, t4), (t4, t5)), strict=True):
            phases[name] += b - a
        annotated += int(batch["has_gt"].sum())
    return {**{k: v / steps for k, v in phases.items()}, "annotated_frames": annotated / steps}


def time_parts(cfg: TrainConfig, batch: dict, repeats: int = 5) -> dict[str, float]:
    """Seconds of forward + backward of each part of the network alone, on inputs of `batch`'s shapes."""
    net = make_model(cfg, initial_weights=False).train()
    frames, audio = batch["frames"].flatten(0, 1), batch["audio"].flatten(0, 1)
    t = batch["frames"].shape[1]

    def clock(fn) -> float:
        fn()
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        return (time.perf_counter() - start) / repeats

    def backward(out) -> None:
        outs = out if isinstance(out, (list, tuple)) else [out]
        sum(o.float().mean() for o in outs if torch.is_tensor(o) and o.requires_grad).backward()

    with torch.no_grad():
        feats = net.backbone(frames)
        tokens = net.audio(audio)
    feats = [f.requires_grad_() for f in feats]
    tokens = tokens.requires_grad_()
    parts = {"backbone": lambda: backward(net.backbone(frames))}
    if net.cfg.maskige:
        maskige = batch["maskige"].flatten(0, 1)
        parts["maskige backbone"] = lambda: backward(net.maskige_backbone(maskige))
    parts["audio encoder"] = (lambda: backward(net.audio(audio))) if not net.cfg.audio_frozen else \
        (lambda: net.audio(audio))
    if net.cfg.gtavm == "before":
        parts["GTAVM"] = lambda: backward(net.gtavm(feats, tokens, t)[0])
    parts["pixel decoder"] = lambda: backward(net.pixel_decoder(feats)[0])
    with torch.no_grad():
        mask_features, levels = net.pixel_decoder(feats)
    mask_features, levels = mask_features.requires_grad_(), [x.requires_grad_() for x in levels]
    content = net._query_content(tokens, tokens if net.cfg.gtavm != "off" else None).detach()
    parts["transformer decoder"] = lambda: backward([p["pred_masks"] for p in
                                                     net.decoder(levels, mask_features, content)])
    criterion = SetCriterion(net.cfg)

    if net.cfg.look_weight > 0:
        parts["look head"] = lambda: backward(net.look_head(mask_features))

    def loss() -> None:
        preds = net.decoder(levels, mask_features, content)
        if net.cfg.look_weight > 0:
            preds[-1]["look_logits"] = net.look_head(mask_features)
        criterion([{k: v.detach().requires_grad_() for k, v in p.items()} for p in preds],
                  batch["labels"], batch["has_gt"], batch["regions"], batch["seeds"], batch["looks"])["loss"].backward()
    parts["criterion (with decoder)"] = loss
    return {name: clock(fn) for name, fn in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--features", type=Path, default=Path("data/features"))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not (args.data.is_dir() and args.features.is_dir()):
        raise SystemExit(f"{args.data} or {args.features} missing: run `dvc repro features` first")
    after = train_config(load_params(args.params), 1)
    before = dataclasses.replace(after, frames=0, batch_clips=2,
                                 model={**after.model, "semantic_weight": 0.0, "region_targets": False,
                                        "look_weight": 0.0})
    dataset = ClipDataset(args.data, args.features, 1, "train", after.input_size)
    rows = {}
    for name, cfg, fused in (("before", before, False), ("after", after, True)):
        rows[name] = time_steps(cfg, dataset, args.steps, fused)
        parts = time_parts(cfg, _batch(cfg, dataset, _order(cfg, dataset), 0))
        total = sum(v for k, v in rows[name].items() if k != "annotated_frames")
        print(f"\n{name}: batch_clips={cfg.batch_clips} frames={cfg.frames or 'all'} "
              f"semantic_weight={cfg.model.get('semantic_weight', 0.0)} AdamW={'fused' if fused else 'per-tensor'}")
        print(f"  {total:.3f} s/step, {rows[name]['annotated_frames']:.1f} annotated frames/step")
        for phase in ("data", "forward", "loss", "backward", "optimiser"):
            print(f"  {phase:12s} {rows[name][phase]:.3f} s ({rows[name][phase] / total:5.1%})")
        print("  parts alone (forward + backward):")
        for part, seconds in parts.items():
            print(f"    {part:26s} {seconds:.3f} s")
        rows[name]["total"] = total
    b, a = rows["before"], rows["after"]
    print(f"\nafter / before: {a['total'] / b['total']:.2f}x the seconds per step, "
          f"{(a['total'] / a['annotated_frames']) / (b['total'] / b['annotated_frames']):.2f}x the seconds per "
          f"annotated frame ({args.threads} threads, {args.steps} steps each)")


if __name__ == "__main__":
    main()
