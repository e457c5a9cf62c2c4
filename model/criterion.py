"""Hungarian matching and the Mask2Former losses with deep supervision (docs/design.md, Losses).

Targets are semantic label maps: every class present in a frame is one target (its class and binary
mask; pixels labelled `ignore_index` belong to no target). Matching cost = 2 * class + 5 * BCE + 5 * dice
on points sampled uniformly; losses = weighted CE (no-object weight 0.1) + BCE + dice on points chosen by
importance sampling (oversample 3, 75% most uncertain), summed over the initial and every layer's
prediction. Frames without ground truth take no loss.

With `semantic_weight` > 0 every prediction also takes `semantic_loss`: cross-entropy and dice on the
per-pixel class probabilities that evaluation thresholds (`semantic_map`, the sum over all queries). The
matched-query losses train only the few matched queries; the evaluated map also sums the unmatched ones,
whose "no object" probability is never exactly 1, so without this term training and evaluation disagree.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from model.config import ModelConfig


def point_sample(maps: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """Bilinear values of maps [N, H, W] at normalised (x, y) coords [N, P, 2] -> [N, P]."""
    grid = (2 * coords - 1).unsqueeze(2)                                   # [N, P, 1, 2]
    return F.grid_sample(maps.unsqueeze(1), grid, align_corners=False)[:, 0, :, 0]


def semantic_targets(labels: torch.Tensor, ignore_index: int = 255) -> tuple[torch.Tensor, torch.Tensor]:
    """labels int [H, W] -> (classes int64 [K], masks float [K, H, W]) for the K classes present."""
    classes = labels.unique()
    classes = classes[classes != ignore_index]
    return classes, (labels[None] == classes[:, None, None]).float()


def region_targets(labels: torch.Tensor, regions: torch.Tensor, ignore_index: int = 255,
                   split_sounding: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One target per region of the frame's class-agnostic masks (the maskige), instead of one per class.

    labels int [H, W] (class per pixel, `ignore_index` for none); regions int [H, W] (region id per pixel,
    0 for none). Each region takes the class most of its labelled pixels have, and its mask is those
    pixels; labelled pixels left over (outside every region, or of another class than their region's)
    form one more target per class. The targets partition the labelled pixels, so their classes paint
    the same label map as `semantic_targets`; what changes is that every object is a target of its own:
    a query segments one object and its class says whether that object sounds, where one query per class
    would have to find every sounding object in one mask. Returns (classes int64 [K], masks float [K, H, W]).
    """
    valid = labels != ignore_index
    classes, masks = [], []
    left = valid.clone()
    for region in regions.unique().tolist():
        inside = (regions == region) & valid
        if region == 0 or not inside.any():
            continue
        cls = int(labels[inside].bincount().argmax())
        if cls and not split_sounding:
            continue
        mask = inside & (labels == cls)
        classes.append(cls)
        masks.append(mask)
        left &= ~mask
    for cls in labels[left].unique().tolist():
        classes.append(cls)
        masks.append(left & (labels == cls))
    if not masks:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, *labels.shape)
    return torch.tensor(classes, dtype=torch.long), torch.stack(masks).float()


def frame_rand(counts: list[int], draws: list[torch.Generator], shape: tuple[int, ...], like: torch.Tensor,
               ) -> torch.Tensor:
    """Uniform [0, 1) values [sum(counts), *shape]: `counts[f]` rows drawn from frame f's generator
    `draws[f]` (on `like`'s device, in its dtype). A frame's values depend on its own generator only, not
    on which other frames share the batch (one process or several)."""
    return torch.cat([torch.rand(count, *shape, generator=gen, device=like.device, dtype=like.dtype)
                      for count, gen in zip(counts, draws, strict=True)])


def _uncertain_points(logits: torch.Tensor, num: int, oversample: float, importance: float,
                      counts: list[int], draws: list[torch.Generator]) -> torch.Tensor:
    """Coords [N, num, 2] for logits [N, H, W], N = sum(counts) masks of len(counts) frames: `importance` of
    them where |logit| is smallest among `oversample * num` random candidates, the rest uniformly random;
    each frame's masks draw from that frame's generator (see `frame_rand`)."""
    candidates = frame_rand(counts, draws, (int(num * oversample), 2), logits)
    uncertainty = -point_sample(logits, candidates).abs()
    k = int(importance * num)
    top = uncertainty.topk(k, dim=1).indices
    chosen = torch.gather(candidates, 1, top[..., None].expand(-1, -1, 2))
    return torch.cat([chosen, frame_rand(counts, draws, (num - k, 2), logits)], 1)


def dice_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Sum over masks of 1 - (2|p.t| + 1) / (|p| + |t| + 1); logits, labels [M, P]."""
    p = logits.sigmoid()
    return (1 - (2 * (p * labels).sum(-1) + 1) / (p.sum(-1) + labels.sum(-1) + 1)).sum()


def semantic_loss(prediction: dict[str, torch.Tensor], labels: torch.Tensor, ignore_index: int = 255,
                  normalisers: tuple[float, float] | None = None) -> torch.Tensor:
    """Cross-entropy + dice of the evaluated class probabilities against label maps.

    prediction: "pred_logits" [N, Q, C + 1], "pred_masks" [N, Q, h, w]; labels int64 [N, H, W] (ignore
    `ignore_index`). The probabilities are those of `semantic_map(prediction, (H, W), resize_scores=True)`
    [N, C, H, W], which sum to 1 per pixel. Dice is averaged over the (frame, class) pairs present in the
    labels. Returns a scalar. `normalisers`: (labelled pixels, present (frame, class) pairs) to divide the
    summed cross-entropy and dice by instead of this batch's own counts (`semantic_counts`; a distributed
    run passes the mean over its processes, see `shared_means`).

    Only the classes present in `labels` are painted: a pixel's normaliser (its summed scores over all C
    classes) is one einsum over the per-query object probability, and the resize is linear, so this equals
    the loss on the full C-class map at a fraction of the cost when C is 71.
    """
    valid = labels != ignore_index
    present = labels[valid].unique()
    if len(present) == 0:
        return prediction["pred_masks"].sum() * 0.0
    size = tuple(labels.shape[-2:])
    masks = prediction["pred_masks"].sigmoid()
    probs = prediction["pred_logits"].softmax(-1)[..., :-1]                             # [N, Q, C]
    scores = torch.einsum("bqk,bqhw->bkhw", probs[..., present], masks)                 # [N, K, h, w]
    total = torch.einsum("bq,bqhw->bhw", probs.sum(-1), masks)[:, None]                 # [N, 1, h, w]
    scores = F.interpolate(scores, size=size, mode="bilinear", align_corners=False)
    total = F.interpolate(total, size=size, mode="bilinear", align_corners=False)
    probs_k = scores / total.clamp(min=1e-6)                                            # [N, K, H, W]
    # class id -> its channel among the present ones (ignored pixels read channel 0 and are masked out)
    index = torch.searchsorted(present, torch.where(valid, labels, present[0]))
    picked = probs_k.gather(1, index[:, None])[:, 0]
    pixels, pairs = normalisers if normalisers is not None else semantic_counts(labels, ignore_index)
    nll = -(picked.clamp_min(1e-6).log() * valid).sum() / pixels
    target = F.one_hot(index, len(present)).permute(0, 3, 1, 2).to(probs_k.dtype)
    weight = valid[:, None].to(probs_k.dtype)
    inter = (probs_k * target * weight).flatten(2).sum(-1)                               # [N, K]
    sums = ((probs_k + target) * weight).flatten(2).sum(-1)
    in_frame = (target * weight).flatten(2).sum(-1) > 0
    dice = 1 - (2 * inter + 1) / (sums + 1)
    return nll + dice[in_frame].sum() / pairs


def look_loss(look_logits: torch.Tensor, looks: torch.Tensor, pixels: float, ignore_index: int = 255,
              ) -> torch.Tensor:
    """Cross-entropy of the per-pixel class named from the mask features against the classes the data gives.

    look_logits [N, 71, h, w] (resized bilinearly to the labels' size); looks int64 [N, H, W]: the AVSS class
    of each sounding pixel whose class is known, `ignore_index` elsewhere; `pixels`: what the summed
    cross-entropy is divided by (the labelled pixels, `shared_means` of them in a distributed run).
    Returns a scalar, 0 (in the graph) when no pixel is named.

    Why: the binding of a sound to an object can only use what the pixel features tell apart, and trained
    on "which of these objects sounds" alone they come to tell colours apart and little else (two objects of
    one colour and different shapes are taken together). Naming the object's class from the same features
    makes them tell the looks apart.
    """
    logits = F.interpolate(look_logits, size=tuple(looks.shape[-2:]), mode="bilinear", align_corners=False)
    return F.cross_entropy(logits, looks, ignore_index=ignore_index, reduction="sum") / pixels


def semantic_counts(labels: torch.Tensor, ignore_index: int = 255) -> tuple[float, float]:
    """(labelled pixels, (frame, class) pairs present) of label maps [N, H, W]: what `semantic_loss`
    averages its cross-entropy and its dice over."""
    valid = labels != ignore_index
    pairs = sum(len(frame[ok].unique()) for frame, ok in zip(labels, valid, strict=True))
    return float(valid.sum()), float(pairs)


def shared_means(counts: list[float], device: torch.device) -> list[float]:
    """What the losses of one process divide their sums by: each of `counts` (this process's matched masks,
    class weights, labelled pixels, ...) at least 1, or in a distributed run the sum over the processes
    (one all_reduce), at least 1, divided by the world size. DDP averages the processes' gradients, so
    with these shared normalisers the gradient is that of one process holding the whole batch, however
    the batch is split; each process's own counts would weigh an item more on a process that holds fewer
    (Mask2Former normalises its mask losses the same way)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = torch.tensor(counts, dtype=torch.float64, device=device)
        dist.all_reduce(total)
        world = dist.get_world_size()
        return [max(value, 1.0) / world for value in total.tolist()]
    return [max(float(value), 1.0) for value in counts]


class SetCriterion(nn.Module):
    """Loss of a list of predictions against label maps.

    forward(predictions, labels [B*T, H, W] int64 (ignore 255), has_gt bool [B*T], regions [B*T, H, W] (needed
    with cfg.region_targets), looks [B*T, H, W] (needed with cfg.look_weight)) -> dict with "loss" (the
    weighted total) and the unweighted "loss_ce", "loss_mask", "loss_dice" of the last prediction (and
    "loss_look" with cfg.look_weight).
    """

    def __init__(self, cfg: ModelConfig, ignore_index: int = 255):
        super().__init__()
        self.cfg = cfg
        self.ignore_index = ignore_index
        weight = torch.ones(cfg.num_classes + 1)
        weight[-1] = cfg.no_object_weight
        self.register_buffer("class_weight", weight)

    def _copies(self, targets: int, queries: int) -> int:
        """Queries matched to each target of a frame (cfg.match_copies, as far as the queries go round)."""
        return max(1, min(self.cfg.match_copies, queries // max(targets, 1)))

    def _matched(self, targets: int, queries: int) -> int:
        """Matched (query, target) pairs of a frame with `targets` targets: the masks its losses sum over."""
        return min(queries, targets * self._copies(targets, queries))

    def _targets(self, labels: torch.Tensor, keep: torch.Tensor, regions: torch.Tensor | None,
                 dtype: torch.dtype) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """(classes [K], masks [K, H, W]) of each kept frame: per class, or per region (cfg.region_targets)."""
        if self.cfg.region_targets:
            if regions is None:
                raise ValueError("this criterion uses region targets (cfg.region_targets): pass regions [B*T, H, W]")
            targets = [region_targets(labels[i], regions[i], self.ignore_index,
                                      self.cfg.region_classes == "all") for i in keep.tolist()]
        else:
            targets = [semantic_targets(labels[i], self.ignore_index) for i in keep.tolist()]
        return [(c.to(labels.device), m.to(dtype)) for c, m in targets]

    @torch.no_grad()
    def match(self, prediction: dict[str, torch.Tensor], targets: list[tuple[torch.Tensor, torch.Tensor]],
              draws: list[torch.Generator] | None = None):
        """Per frame, (query indices, target indices) minimising the matching cost; with cfg.match_copies k
        each target index appears k times (k distinct queries), as far as the queries go round. `draws`: one
        generator per frame for its sampled points (default: seeded from the global generator)."""
        cfg, out = self.cfg, []
        masks_all = prediction["pred_masks"]
        draws = draws if draws is not None else frame_generators(None, len(targets), masks_all.device)
        for logits, masks, (classes, target_masks), gen in zip(prediction["pred_logits"], masks_all, targets,
                                                                draws, strict=True):
            coords = frame_rand([1], [gen], (cfg.train_points, 2), masks)
            pred = point_sample(masks, coords.expand(len(masks), -1, -1))                  # [Q, P]
            tgt = point_sample(target_masks, coords.expand(len(target_masks), -1, -1))     # [K, P]
            cost_class = -logits.softmax(-1)[:, classes]                                  # [Q, K]
            pos = F.binary_cross_entropy_with_logits(pred, torch.ones_like(pred), reduction="none")
            neg = F.binary_cross_entropy_with_logits(pred, torch.zeros_like(pred), reduction="none")
            cost_bce = (pos @ tgt.T + neg @ (1 - tgt).T) / pred.shape[1]
            p = pred.sigmoid()
            cost_dice = 1 - (2 * p @ tgt.T + 1) / (p.sum(-1)[:, None] + tgt.sum(-1)[None, :] + 1)
            cost = cfg.class_weight * cost_class + cfg.mask_weight * cost_bce + cfg.dice_weight * cost_dice
            # one-to-many: each target repeated `copies` times in the assignment (as many as the queries allow)
            copies = self._copies(len(classes), len(masks))
            rows, cols = linear_sum_assignment(cost.float().cpu().numpy().repeat(copies, axis=1))
            out.append((torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols // copies, dtype=torch.long)))
        return out

    def _losses(self, prediction, targets, draws: list[torch.Generator], num_masks: float, class_total: float):
        """(class, mask, dice) losses of one prediction. The mask terms are summed over the matched masks and
        divided by `num_masks`, the class term summed over the queries (weighted) and divided by
        `class_total`: the normalisers of `shared_means`. `draws`: each frame's generator."""
        cfg = self.cfg
        logits, masks = prediction["pred_logits"], prediction["pred_masks"]
        matches = self.match(prediction, targets, draws)
        target_classes = torch.full(logits.shape[:2], cfg.num_classes, dtype=torch.long, device=logits.device)
        src, tgt = [], []
        for frame, ((rows, cols), (classes, target_masks)) in enumerate(zip(matches, targets, strict=True)):
            target_classes[frame, rows] = classes[cols]
            src.append(masks[frame, rows])
            tgt.append(target_masks[cols])
        loss_ce = F.cross_entropy(logits.transpose(1, 2), target_classes, weight=self.class_weight,
                                  reduction="sum") / class_total
        src_masks, tgt_masks = torch.cat(src), torch.cat(tgt)
        with torch.no_grad():
            coords = _uncertain_points(src_masks, cfg.train_points, cfg.oversample, cfg.importance,
                                       [len(rows) for rows, _ in matches], draws)
            labels = point_sample(tgt_masks, coords)
        point_logits = point_sample(src_masks, coords)
        loss_mask = F.binary_cross_entropy_with_logits(point_logits, labels, reduction="none").mean(1).sum() / num_masks
        loss_dice = dice_loss(point_logits, labels) / num_masks
        return loss_ce, loss_mask, loss_dice

    def _counts(self, targets: list[tuple[torch.Tensor, torch.Tensor]], queries: int, labels: torch.Tensor,
                looks: torch.Tensor | None) -> list[float]:
        """This batch's sums the losses are averaged over: matched masks, the class weights of all queries
        (matched ones weigh 1, the others `no_object_weight`), with the semantic loss its labelled pixels
        and present (frame, class) pairs (`semantic_counts`), and with the look loss its named pixels."""
        matched = [self._matched(len(classes), queries) for classes, _ in targets]
        class_total = sum(m + (queries - m) * self.cfg.no_object_weight for m in matched)
        counts = [float(sum(matched)), float(class_total)]
        if self.cfg.semantic_weight > 0:
            counts += semantic_counts(labels, self.ignore_index)
        if self.cfg.look_weight > 0:
            if looks is None:
                raise ValueError("this criterion names the looks (cfg.look_weight): pass looks [B*T, H, W]")
            counts.append(float((looks != self.ignore_index).sum()))
        return counts

    def forward(self, predictions: list[dict[str, torch.Tensor]], labels: torch.Tensor, has_gt: torch.Tensor,
                regions: torch.Tensor | None = None, seeds: torch.Tensor | None = None,
                looks: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """See the class; `seeds` int64 [B*T]: each frame's seed for the points its losses sample (one
        generator per frame, so the draws do not depend on how frames are batched or split among
        processes); default: drawn from the global generator."""
        keep = has_gt.nonzero().flatten()
        targets = self._targets(labels, keep, regions, predictions[0]["pred_masks"].dtype)
        queries = predictions[0]["pred_logits"].shape[1]
        # every process reaches this collective, annotated frames or not
        kept_looks = looks[keep.to(looks.device)].to(labels.device) if looks is not None else None
        num_masks, class_total, *rest = shared_means(self._counts(targets, queries, labels[keep], kept_looks),
                                                     labels.device)
        semantic = rest[:2]
        if len(keep) == 0:  # nothing annotated: a zero that still belongs to the graph
            zero = sum(p["pred_logits"].sum() + p["pred_masks"].sum() + (p["look_logits"].sum() if "look_logits" in p
                                                                          else 0.0) for p in predictions) * 0.0
            out = {"loss": zero, "loss_ce": zero.detach(), "loss_mask": zero.detach(), "loss_dice": zero.detach()}
            return out | ({"loss_look": zero.detach()} if self.cfg.look_weight > 0 else {})
        kept_seeds = seeds[keep.to(seeds.device)].tolist() if seeds is not None else None
        draws = frame_generators(kept_seeds, len(keep), predictions[0]["pred_masks"].device)
        total = 0.0
        for prediction in predictions:
            selected = {k: v[keep] for k, v in prediction.items()}
            loss_ce, loss_mask, loss_dice = self._losses(selected, targets, draws, num_masks, class_total)
            total = total + self.cfg.class_weight * loss_ce + self.cfg.mask_weight * loss_mask \
                + self.cfg.dice_weight * loss_dice
            if self.cfg.semantic_weight > 0:
                total = total + self.cfg.semantic_weight * semantic_loss(selected, labels[keep], self.ignore_index,
                                                                         tuple(semantic))
        out = {"loss": total, "loss_ce": loss_ce.detach(), "loss_mask": loss_mask.detach(),
               "loss_dice": loss_dice.detach()}
        if self.cfg.look_weight > 0:
            if "look_logits" not in predictions[-1]:
                raise ValueError("cfg.look_weight: the last prediction holds no look_logits (a model in training "
                                 "mode with the same config makes them)")
            loss_look = look_loss(predictions[-1]["look_logits"][keep], kept_looks, rest[-1], self.ignore_index)
            out["loss"] = total + self.cfg.look_weight * loss_look
            out["loss_look"] = loss_look.detach()
        return out


def frame_generators(seeds: list[int] | None, count: int, device: torch.device) -> list[torch.Generator]:
    """One generator per frame on `device`, seeded with `seeds` (default: `count` seeds drawn from the
    global generator)."""
    if seeds is None:
        seeds = torch.randint(0, 2**62, (count,)).tolist()
    return [torch.Generator(device=device).manual_seed(int(seed)) for seed in seeds]
