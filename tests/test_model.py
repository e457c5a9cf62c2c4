"""The NTAVS / AAVS network: presets, shapes, gradients, GTAVM by hand, prior paths, criterion, overfit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model import PRESETS, create_model, get_config
from model.criterion import SetCriterion, region_targets, semantic_loss, semantic_targets
from model.fusion import SILENT, SOUNDING, UNCERTAIN, PriorInputs, prior_states
from model.gtavm import GTAVMBlock
from model.ntavs import semantic_map

VARIANTS = {
    "ntavs, GTAVM before": {},
    "ntavs, GTAVM after": {"gtavm": "after"},
    "ntavs, no GTAVM": {"gtavm": "off"},
    "aavs queries, no maskige": {"queries": "aavs", "gtavm": "off", "maskige": False},
    "trivial queries": {"queries": "trivial"},
    "stage 2 prior, 71 classes": {"prior": True, "num_classes": 71},
}


def _inputs(b=1, t=2, h=64, w=96, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(b, t, 3, h, w, generator=g), torch.randn(b, t, 3, 96, 64, generator=g),
            torch.randn(b, t, 3, h, w, generator=g), torch.rand(b, t, h, w, generator=g))


@pytest.mark.parametrize("preset", ["ntavs-pvt", "ntavs-r50", "aavs"])
def test_paper_presets_build_on_meta(preset: str) -> None:
    with torch.device("meta"):
        net = create_model(preset)
    params = sum(p.numel() for p in net.parameters())
    assert params > 50e6
    assert net.cfg.num_queries == (144 if PRESETS[preset].queries == "ntavs" else 100)


@pytest.mark.parametrize("variant", VARIANTS, ids=list(VARIANTS))
def test_tiny_forward_backward_every_parameter_learns(variant: str) -> None:
    torch.manual_seed(0)  # fixed draw: with some random draws a small ReLU path is dead for this one input
    net = create_model("tiny", **VARIANTS[variant])
    with torch.no_grad():  # deformable attention starts query-independent (zero init); wake it so no path hides
        for name, p in net.named_parameters():
            if name.endswith(("sampling_offsets.weight", "attention_weights.weight")):
                p.normal_(0, 0.01)
    frames, audio, maskige, prior = _inputs()
    preds = net(frames, audio, maskige, prior)
    assert len(preds) == net.cfg.decoder_layers + 1
    q, c = net.cfg.num_queries, net.cfg.num_classes
    assert preds[-1]["pred_logits"].shape == (2, q, c + 1) and preds[-1]["pred_masks"].shape == (2, q, 16, 24)
    labels = torch.randint(0, c, (2, 64, 96))
    loss = SetCriterion(net.cfg)(preds, labels, torch.tensor([True, True]))["loss"]
    loss.backward()
    trainable = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    assert not [n for n, p in trainable if p.grad is None]
    # a tiny SE gate (4 hidden ReLUs) can be dead for one input; anything more would be a broken path
    zero = [n for n, p in trainable if not p.grad.any()]
    assert len(zero) <= 3 and all(".fc." in n for n in zero), zero
    assert all(p.requires_grad for p in net.parameters())  # tiny: no pretrained audio weights, all of it learns


def test_frozen_audio_transformer_takes_no_gradient() -> None:
    net = create_model("tiny", audio_frozen=True).train()
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("audio.transformer.") for n in frozen)
    assert not net.audio.transformer.init_bn.training  # its BatchNorm statistics stay fixed too


@pytest.mark.parametrize(("frames", "size"), [(1, (32, 32)), (3, (96, 64)), (7, (64, 128))])
def test_any_size_divisible_by_32_and_any_frame_count(frames: int, size: tuple[int, int]) -> None:
    net = create_model("tiny").eval()
    f, a, m, _ = _inputs(t=frames, h=size[0], w=size[1])
    with torch.no_grad():
        out = semantic_map(net(f, a, m)[-1], size)
    assert out.shape == (frames, 2, *size) and (out >= 0).all() and (out <= 1 + 1e-5).all()
    with pytest.raises(ValueError, match="divisible by 32"):
        net(torch.randn(1, 1, 3, 40, 64), a[:, :1], m[:, :1, :, :40])


def test_inputs_the_model_needs_are_named() -> None:
    f, a, m, _ = _inputs()
    with pytest.raises(ValueError, match="maskige"):
        create_model("tiny")(f, a)
    with pytest.raises(ValueError, match="prior"):
        create_model("tiny", prior=True)(f, a, m)
    with pytest.raises(KeyError, match="unknown model preset"):
        get_config("huge")
    with pytest.raises(ValueError, match="gtavm"):
        get_config("tiny", gtavm="sideways")


def _naive_gtavm(block: GTAVMBlock, visual: torch.Tensor, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The GTAVM formulas of docs/design.md with explicit loops, one head, for a [1, N, T, d] case."""
    def attn_of(mod, x):
        q, k, v = mod.qkv(x).chunk(3, dim=-1)                   # [1, N, T, d]
        scores = torch.einsum("bntd,bnsd->bnts", q, k) / x.shape[-1] ** 0.5
        return scores.softmax(-1), v

    def finish(mod, x, a, v):
        x = x + mod.proj(torch.einsum("bnts,bnsd->bntd", a, v))
        x = x + mod.mlp(mod.mlp_norm(x))
        return mod.out_norm(x)

    av, vv = attn_of(block.visual, visual)
    aa, va = attn_of(block.audio, audio)
    mean_a = sum(aa[:, i] for i in range(aa.shape[1])) / aa.shape[1]     # mean over audio tokens
    mean_v = sum(av[:, i] for i in range(av.shape[1])) / av.shape[1]     # mean over positions
    mixed_v = 0.9 * av + 0.1 * mean_a[:, None]
    mixed_a = 0.9 * aa + 0.1 * mean_v[:, None]
    return finish(block.visual, visual, mixed_v, vv), finish(block.audio, audio, mixed_a, va)


def test_gtavm_matches_the_formula_and_mixes_modalities() -> None:
    torch.manual_seed(0)
    block = GTAVMBlock(d=4, heads=1, mix=0.1)
    visual, audio = torch.randn(1, 3, 2, 4), torch.randn(1, 2, 2, 4)   # 3 positions, 2 audio tokens, T = 2
    out_v, out_a = block(visual, audio)
    ref_v, ref_a = _naive_gtavm(block, visual, audio)
    torch.testing.assert_close(out_v, ref_v)
    torch.testing.assert_close(out_a, ref_a)
    # the audio reaches the visual stream only through the mixing
    other_audio = torch.randn(1, 2, 2, 4)
    assert not torch.allclose(block(visual, other_audio)[0], out_v)
    block.mix = 0.0
    torch.testing.assert_close(block(visual, other_audio)[0], block(visual, audio)[0])


def test_prior_states_and_first_mask() -> None:
    prior = torch.tensor([[[0.0, 0.4, 0.41, 0.59, 0.6, 1.0]]])
    assert prior_states(prior)[0, 0].tolist() == [SILENT, SILENT, UNCERTAIN, UNCERTAIN, SOUNDING, SOUNDING]
    blocked = PriorInputs.first_blocked(prior, [(1, 6)])[0]
    assert blocked.tolist() == [[True, True, True, False, False, False]]


def test_prior_paths_change_only_where_the_prior_changed() -> None:
    torch.manual_seed(0)
    inputs = PriorInputs(32)
    prior = torch.zeros(1, 32, 32)
    changed = prior.clone()
    changed[:, :8, :8] = 1.0                                           # top-left corner becomes sounding
    feats = torch.randn(1, 32, 16, 16)
    diff = (inputs.mask_features(feats, changed) - inputs.mask_features(feats, prior)).abs().sum(1)[0]
    assert diff[:4, :4].min() > 0 and diff[6:, :].max() == 0 and diff[:, 6:].max() == 0
    pos_a, pos_b = inputs.level_positions(prior, [(8, 8)])[0], inputs.level_positions(changed, [(8, 8)])[0]
    moved = (pos_a - pos_b).abs().sum(1)[0] > 0
    assert moved[:2, :2].all() and not moved[3:, :].any() and not moved[:, 3:].any()
    # and through the whole stage-2 network the prior does change the prediction
    net = create_model("tiny", prior=True).eval()
    f, a, m, p = _inputs()
    with torch.no_grad():
        assert not torch.allclose(net(f, a, m, p)[-1]["pred_masks"], net(f, a, m, 1 - p)[-1]["pred_masks"])


def test_criterion_matching_and_frames_without_ground_truth() -> None:
    cfg = get_config("tiny", train_points=256)
    crit = SetCriterion(cfg)
    labels = torch.zeros(2, 32, 32, dtype=torch.long)
    labels[:, 8:24, 8:24] = 1
    labels[1, :2] = 255
    classes, masks = semantic_targets(labels[1])
    assert classes.tolist() == [0, 1] and masks[:, :2].sum() == 0
    # a prediction that is right for query 3 (object) and query 7 (background): matching must find them
    logits = torch.full((2, 10, 3), -5.0)
    logits[:, :, 2] = 5.0
    logits[:, 3, 1], logits[:, 7, 0] = 10.0, 10.0
    pred_masks = torch.full((2, 10, 8, 8), -8.0)
    pred_masks[:, 3, 2:6, 2:6] = 8.0
    pred_masks[:, 7] = 8.0
    pred_masks[:, 7, 2:6, 2:6] = -8.0
    prediction = {"pred_logits": logits, "pred_masks": pred_masks}
    targets = [semantic_targets(labels[i]) for i in range(2)]
    for rows, cols in crit.match(prediction, targets):
        assert dict(zip(cols.tolist(), rows.tolist(), strict=True)) == {1: 3, 0: 7}
    good = crit([prediction], labels, torch.tensor([True, True]))["loss"]
    bad = crit([{"pred_logits": -logits, "pred_masks": -pred_masks}], labels, torch.tensor([True, True]))["loss"]
    assert good < 0.3 * bad
    leaf = pred_masks.clone().requires_grad_(True)
    none = crit([{"pred_logits": logits, "pred_masks": leaf}], labels, torch.tensor([False, False]))
    none["loss"].backward()
    assert none["loss"].item() == 0 and not leaf.grad.any()


def test_region_targets_split_each_class_into_its_regions() -> None:
    """Two sounding objects and a silent one: three regions plus the backdrop; the targets partition the
    labelled pixels and paint the same label map as the per-class targets."""
    labels = torch.zeros(16, 16, dtype=torch.long)
    regions = torch.ones(16, 16, dtype=torch.long)                  # region 1: the backdrop
    labels[2:6, 2:6], regions[2:6, 2:6] = 1, 2                      # sounding object A
    labels[10:14, 10:14], regions[10:14, 10:14] = 1, 3              # sounding object B
    regions[2:4, 10:14] = 4                                         # a silent object: background label
    labels[5, 2:6] = 255                                            # ignored pixels stay out of every target
    labels[0, 0] = 1                                                # a sounding pixel in the backdrop region
    classes, masks = region_targets(labels, regions)
    assert sorted(classes.tolist()) == [0, 0, 1, 1, 1]              # backdrop, silent object, A, B, leftover
    assert torch.equal(masks.sum(0), (labels != 255).float())       # a partition of the labelled pixels
    painted = (masks * classes[:, None, None].float()).sum(0)
    sem_classes, sem_masks = semantic_targets(labels)
    assert torch.equal(painted, (sem_masks * sem_classes[:, None, None].float()).sum(0))
    by_area = {int(m.sum()): int(c) for c, m in zip(classes, masks, strict=True)}
    assert by_area == {12: 1, 16: 1, 1: 1, 8: 0, 215: 0}  # A (a row ignored), B, the
    # sounding pixel left over in the backdrop region, the silent object, the rest of the backdrop
    no_regions = region_targets(labels, torch.zeros_like(regions))
    assert sorted(no_regions[0].tolist()) == [0, 1]                 # no regions: one target per class
    silent_only = region_targets(labels, regions, split_sounding=False)   # region_classes "silent"
    by_area = {int(m.sum()): int(c) for c, m in zip(*silent_only, strict=True)}
    assert by_area == {29: 1, 8: 0, 215: 0}  # A, B and the leftover pixel one sounding target; silent split


def test_one_to_many_matching_gives_each_target_k_queries() -> None:
    cfg = get_config("tiny", train_points=256, match_copies=3)
    labels = torch.zeros(1, 16, 16, dtype=torch.long)
    labels[0, 4:12, 4:12] = 1
    prediction = {"pred_logits": torch.randn(1, 10, 3), "pred_masks": torch.randn(1, 10, 4, 4)}
    rows, cols = SetCriterion(cfg).match(prediction, [semantic_targets(labels[0])])[0]
    assert sorted(cols.tolist()) == [0, 0, 0, 1, 1, 1] and len(set(rows.tolist())) == 6
    few = {"pred_logits": torch.randn(1, 4, 3), "pred_masks": torch.randn(1, 4, 4, 4)}   # 4 queries, 2 targets
    rows, cols = SetCriterion(cfg).match(few, [semantic_targets(labels[0])])[0]
    assert sorted(cols.tolist()) == [0, 0, 1, 1]                    # as many copies as the queries allow


def test_semantic_loss_reads_the_evaluated_map() -> None:
    """Low for a prediction whose summed map is the label map, high for its opposite, blind to ignored
    pixels, and its gradient reaches every query (the unmatched ones too)."""
    labels = torch.zeros(2, 16, 16, dtype=torch.long)
    labels[:, 4:12, 4:12] = 1
    logits = torch.full((2, 6, 3), -6.0)
    logits[:, :3, 1] = 6.0                                          # queries 0-2: object
    logits[:, 3:, 0] = 6.0                                          # queries 3-5: background
    masks = torch.full((2, 6, 16, 16), -6.0)                        # at the labels' size: nothing blurred
    masks[:, :3, 4:12, 4:12] = 6.0
    masks[:, 3:] = 6.0
    masks[:, 3:, 4:12, 4:12] = -6.0
    right = semantic_loss({"pred_logits": logits, "pred_masks": masks}, labels)
    wrong = semantic_loss({"pred_logits": logits, "pred_masks": -masks}, labels)
    assert right < 0.05 and wrong > 2.0
    ignored = labels.clone()
    ignored[:, :4] = 255
    flipped = masks.clone()
    flipped[:, :, :4] = -flipped[:, :, :4]                          # wrong only where labels are ignored
    assert semantic_loss({"pred_logits": logits, "pred_masks": flipped}, ignored) == pytest.approx(
        semantic_loss({"pred_logits": logits, "pred_masks": masks}, ignored).item(), abs=1e-4)
    leaf = torch.zeros(2, 6, 16, 16, requires_grad=True)
    semantic_loss({"pred_logits": logits, "pred_masks": leaf}, labels).backward()
    assert leaf.grad.flatten(2).abs().sum(-1).gt(0).all()


def test_semantic_loss_equals_the_loss_on_the_full_class_map() -> None:
    """Painting only the classes present is exact: the same value and gradient as cross-entropy + dice on
    every channel of `semantic_map(..., resize_scores=True)`."""
    torch.manual_seed(0)
    logits = torch.randn(3, 10, 72, requires_grad=True)
    masks = torch.randn(3, 10, 8, 8, requires_grad=True)
    labels = torch.randint(0, 5, (3, 32, 32)) * 7                   # classes 0, 7, ..., 28 of 71
    labels[0, :5] = 255
    labels[2] = 14                                                  # a frame of one class

    def reference() -> torch.Tensor:
        probs = semantic_map({"pred_logits": logits, "pred_masks": masks}, (32, 32), resize_scores=True)
        valid = labels != 255
        nll = torch.nn.functional.nll_loss(probs.clamp_min(1e-6).log(), labels, ignore_index=255)
        target = torch.nn.functional.one_hot(torch.where(valid, labels, 0), 71).permute(0, 3, 1, 2).float()
        weight = valid[:, None].float()
        inter = (probs * target * weight).flatten(2).sum(-1)
        sums = ((probs + target) * weight).flatten(2).sum(-1)
        present = (target * weight).flatten(2).sum(-1) > 0
        return nll + (1 - (2 * inter + 1) / (sums + 1))[present].mean()

    fast = semantic_loss({"pred_logits": logits, "pred_masks": masks}, labels)
    grads = torch.autograd.grad(fast, (logits, masks))
    slow = reference()
    assert fast.item() == pytest.approx(slow.item(), rel=1e-5)
    for a, b in zip(grads, torch.autograd.grad(slow, (logits, masks)), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


@pytest.mark.slow
def test_tiny_overfits_two_synthetic_clips() -> None:
    from components.features import log_mel
    from components.features.maskige import paint_maskige
    from components.features.proposals import RegionProposer
    from components.synth.generate import iter_clips, resolve_config
    from model.metrics import s4_miou

    torch.manual_seed(0)
    proposer = RegionProposer()
    clips = [c for c in iter_clips(resolve_config("tiny"), seed=0) if c.part == "s4"][:2]
    frames, audio, maskiges, labels = [], [], [], []
    for clip in clips:
        scene = clip.scene
        frames.append((torch.from_numpy(scene.frames).permute(0, 3, 1, 2).float() / 255 - 0.45) / 0.25)
        wave = torch.from_numpy(scene.audio)
        audio.append(torch.stack([log_mel(wave, 16000, w, 5)[:, 0] for w in (256, 512, 1024)], 1))
        maskiges.append(torch.stack([torch.from_numpy(np.array(paint_maskige(proposer(f), (64, 64)).convert("RGB")))
                                     .permute(2, 0, 1).float() / 255 for f in scene.frames]))
        labels.append(torch.from_numpy(scene.sounding_mask().astype(np.int64)))
    frames, audio, maskiges, labels = map(torch.stack, (frames, audio, maskiges, labels))
    labels = labels.flatten(0, 1)
    net = create_model("tiny")
    crit = SetCriterion(net.cfg)
    opt = torch.optim.AdamW([p for p in net.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.05)
    has_gt = torch.ones(len(labels), dtype=torch.bool)
    best = 0.0
    for step in range(200):
        net.train()
        loss = crit(net(frames, audio, maskiges), labels, has_gt)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 9:
            net.eval()
            with torch.no_grad():
                prob = semantic_map(net(frames, audio, maskiges)[-1], (64, 64))[:, 1]
            best = max(best, s4_miou(prob, labels))
            if best > 0.9:
                break
    assert best > 0.9, f"mIoU {best:.3f} after {step + 1} steps"


def test_local_weight_files_load_and_missing_files_are_named(tmp_path) -> None:
    import timm

    from model.audio import AudioTransformer, load_ced_weights
    from model.backbone import Backbone

    source = timm.create_model("pvt_v2_b0", pretrained=False)
    torch.save(source.state_dict(), tmp_path / "pvt.pth")             # a full classifier checkpoint
    backbone = Backbone("pvt_v2_b0", 64, tmp_path / "pvt.pth")
    torch.testing.assert_close(backbone.body.state_dict()["patch_embed.proj.weight"],
                               source.state_dict()["patch_embed.proj.weight"])
    with pytest.raises(FileNotFoundError, match="never downloaded"):
        Backbone("pvt_v2_b0", 64, tmp_path / "nope.pth")

    ced = AudioTransformer(dim=64, depth=2, heads=2)
    state = {f"model.{k}": v.clone() + 1 for k, v in ced.state_dict().items()}
    state["model.time_pos_embed"] = torch.randn(1, 64, 1, 63)             # CED trains on 10 s: longer
    state["model.outputlayer.1.weight"] = torch.randn(527, 64)            # AudioSet classifier: skipped
    torch.save(state, tmp_path / "ced.pt")
    target = AudioTransformer(dim=64, depth=2, heads=2)
    load_ced_weights(target, tmp_path / "ced.pt")
    torch.testing.assert_close(target.time_pos_embed, state["model.time_pos_embed"][..., :6])
    torch.testing.assert_close(target.blocks[1].attn.qkv.weight, state["model.blocks.1.attn.qkv.weight"])
    del state["model.norm.weight"]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(ValueError, match=r"norm\.weight"):
        load_ced_weights(target, tmp_path / "broken.pt")


def _grid_rand(*size, dtype=None, device=None, **_) -> torch.Tensor:
    """Stand-in for torch.rand in the criterion: every row the same interior points, so a mask's sampled
    points do not depend on how many masks are sampled with it (one process or two)."""
    a, b, c = size
    return torch.linspace(0.2, 0.8, b * c, dtype=dtype, device=device).reshape(1, b, c).expand(a, -1, -1).clone()


def _ddp_batch() -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
    """4 frames, each one class over the whole frame (so the sampled points do not matter); the last frame
    has no ground truth. Mask logits are constant per query, class logits random: one clear matching."""
    gen = torch.Generator().manual_seed(3)
    prediction = {"pred_logits": torch.randn(4, 12, 4, generator=gen) * 3,
                  "pred_masks": (torch.randn(4, 12, 1, 1, generator=gen) * 2).expand(-1, -1, 16, 16).clone()}
    labels = torch.tensor([1, 2, 1, 2]).view(4, 1, 1).expand(-1, 32, 32).clone()
    return prediction, labels, torch.tensor([True, True, True, False])


def _ddp_losses(rank: int, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        torch.rand = _grid_rand
        prediction, labels, has_gt = _ddp_batch()
        half = slice(0, 2) if rank == 0 else slice(2, 4)   # rank 0: 2 annotated frames, rank 1: one
        crit = SetCriterion(get_config("tiny", num_classes=3, train_points=64, semantic_weight=5.0))
        losses = crit([{k: v[half] for k, v in prediction.items()}], labels[half], has_gt[half])
        torch.save({k: v.detach() for k, v in losses.items()}, f"{out}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()


def test_two_processes_give_the_one_process_losses(tmp_path, monkeypatch) -> None:
    """DDP averages the processes' gradients; with the counts the losses divide by (matched masks, class
    weights, labelled pixels) summed over the processes, every loss averaged over 2 processes equals that
    of one process holding the whole batch, even when the processes hold different numbers of masks and
    frames (here 2 and 1)."""
    import torch.multiprocessing as mp

    from components.common import free_ports

    mp.spawn(_ddp_losses, args=(free_ports(1)[0], str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    monkeypatch.setattr(torch, "rand", _grid_rand)
    prediction, labels, has_gt = _ddp_batch()
    one = SetCriterion(get_config("tiny", num_classes=3, train_points=64, semantic_weight=5.0))(
        [prediction], labels, has_gt)
    torch.testing.assert_close((ranks[0]["loss"] + ranks[1]["loss"]) / 2, one["loss"], rtol=1e-5, atol=1e-6)
    for key in ("loss_mask", "loss_dice", "loss_ce"):
        both = (ranks[0][key] + ranks[1][key]) / 2
        torch.testing.assert_close(both, one[key], rtol=1e-5, atol=1e-6)
        # each process's own counts (in the ratio 2 : 1) would not: the shared mean (1.5) makes them equal
        own = (ranks[0][key] * 1.5 / 2 + ranks[1][key] * 1.5 / 1) / 2
        assert not torch.isclose(own, one[key], rtol=1e-3), key


def test_look_loss_names_each_pixels_class_from_the_mask_features() -> None:
    """With look_weight the training-mode model adds "look_logits" (not in eval), the criterion adds
    look_weight x their cross-entropy on the named pixels (others ignored), and the look head learns."""
    from model.criterion import look_loss

    torch.manual_seed(0)
    logits = torch.randn(2, 71, 8, 8)
    looks = torch.full((2, 32, 32), 255)
    looks[0, 4:12, 4:12] = 7
    looks[1, 20:, 20:] = 42
    big = F.interpolate(logits, size=(32, 32), mode="bilinear", align_corners=False)
    named = looks != 255
    expected = -big.log_softmax(1).gather(1, looks.clamp(max=70)[:, None])[:, 0][named].mean()
    assert torch.allclose(look_loss(logits, looks, float(named.sum())), expected, atol=1e-5)
    assert look_loss(logits, torch.full_like(looks, 255), 1.0).item() == 0.0

    net = create_model("tiny", look_weight=2.0)
    f, a, m = _inputs(b=1, t=2, h=64, w=64)[:3]
    labels = torch.zeros(2, 64, 64, dtype=torch.long)
    labels[:, 16:40, 16:40] = 1
    frame_looks = torch.where(labels == 1, 7, 255)
    preds = net(f, a, m)
    assert preds[-1]["look_logits"].shape == (2, 71, 16, 16) and all("look_logits" not in p for p in preds[:-1])
    crit = SetCriterion(net.cfg)
    has_gt = torch.tensor([True, True])
    seeds = torch.tensor([1, 2])  # the same sampled points in both criteria
    out = crit(preds, labels, has_gt, labels, seeds, looks=frame_looks)
    without = SetCriterion(get_config("tiny"))(preds, labels, has_gt, labels, seeds)
    assert torch.allclose(out["loss"], without["loss"] + 2.0 * out["loss_look"], rtol=1e-5)
    assert out["loss_look"] > 0
    out["loss"].backward()
    assert net.look_head.weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="looks"):
        crit(preds, labels, has_gt, labels)
    net.eval()
    with torch.no_grad():
        assert "look_logits" not in net(f, a, m)[-1]
    assert not hasattr(create_model("tiny"), "look_head")               # off by default: no head at all
