"""In-process inference with the trained two-stage model: the one code path behind the TorchServe handler,
the serving benchmark and the drift reports.

    from components.infer import Segmenter
    seg = Segmenter("models/stage1/best.pt", "models/stage2/best.pt")    # device: CUDA when present
    result = seg.predict(frames, waveform, sample_rate)   # uint8 [T, 3, H, W], float [N] or [C, N], Hz
    result.foreground   # float32 [T, H, W] stage-1 sounding-object probability
    result.class_map    # int64 [T, H, W] AVSS class index (0 = background)
    result.classes      # per frame: [{"id", "name", "score", "area"}] of the classes present
    result.timings      # milliseconds per phase

The network inputs are built exactly as the training data pipeline builds them (components.train.data):
frames resized (bilinear) to the model's `input_size` and normalised with MEAN/STD; the three NTAVS
log-mel scales of the audio, one 0.96 s example per frame (padded by repeating the last example);
maskiges from the same mask proposer and painter as `avs features`, read back as RGB and resized with
nearest. Stage 1's foreground probability is stage 2's prior, as in `avs predict-masks`.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from components.avsbench.classes import AVSS_CLASSES
from components.common import StepError
from components.features.logmel import NTAVS_WINDOWS, log_mel_at, to_mono_16k
from components.features.maskige import MASKIGE_SIZE, paint_maskige
from components.features.proposals import MaskProposer, make_proposer
from components.train.checkpoint import load_trained
from components.train.data import MEAN, STD
from components.train.predict import run_model
from model.ntavs import semantic_map

FOREGROUND_THRESHOLD = 0.5


BINARY_CLASSES: tuple[str, ...] = ("background", "sounding-object")   # a stage-1 (class-agnostic) model's


def class_names(num_classes: int) -> tuple[str, ...]:
    """Names of a model's classes by index: the binary names for 2, the AVSS names for 71, else "class-i"."""
    if num_classes == 2:
        return BINARY_CLASSES
    if num_classes == len(AVSS_CLASSES):
        return AVSS_CLASSES
    return tuple(f"class-{i}" for i in range(num_classes))


@dataclass
class ClipResult:
    """What the model says about one clip (T frames of H x W, the caller's resolution).

    foreground: float32 [T, H, W] stage-1 probability that a pixel belongs to a sounding object.
    class_map:  int64 [T, H, W] class index per pixel (stage 2's argmax; without stage 2: foreground > 0.5).
    classes:    per frame, the classes present (index > 0) as {"id", "name", "score", "area"}; score is the
                mean class probability over the class's pixels, area the fraction of the frame it covers.
    clip_classes: over the whole clip, {"id", "name", "score" (best frame), "frames" (indices)}.
    timings:    milliseconds: audio, maskige, frames (preprocessing), stage1, stage2, postprocess, total;
                for a batch, stage1/stage2 are the whole batch's time and `batch` its size.
    """

    foreground: torch.Tensor
    class_map: torch.Tensor
    classes: list[list[dict[str, Any]]]
    clip_classes: list[dict[str, Any]]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass
class _Inputs:
    frames: torch.Tensor            # [T, 3, S, S] normalised, at the stage-1 input size
    audio: torch.Tensor             # [T, 3, 96, 64]
    maskige: torch.Tensor | None    # [T, 3, S, S] in [0, 1], at the stage-1 input size
    size: tuple[int, int]           # the caller's (H, W)
    timings: dict[str, float]


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


class Segmenter:
    """The stage-1 (class-agnostic) and stage-2 (AVSS classes, stage-1 prior) networks, ready to predict.

    stage1: a 2-class `best.pt` without prior; stage2: a `best.pt` with the prior input (None: stage 1
    only, class map = foreground > 0.5). device: default CUDA when present. mask_source/maskige_size
    (and sam_checkpoint/sam_model_type for "sam"): must match the `features` parameters the models were
    trained with; `proposer` replaces the named one. amp: bfloat16 autocast on CUDA.
    """

    def __init__(self, stage1: Path | str, stage2: Path | str | None = None, device: torch.device | str | None = None,
                 mask_source: str = "regions", maskige_size: int = MASKIGE_SIZE, proposer: MaskProposer | None = None,
                 amp: bool = True, sam_checkpoint: Path | str | None = None, sam_model_type: str = "vit_b"):
        self.device = torch.device(device if device is not None else ("cuda" if torch.cuda.is_available() else "cpu"))
        self.stage1, cfg1 = load_trained(Path(stage1))
        if self.stage1.cfg.num_classes != 2 or self.stage1.cfg.prior:
            raise ValueError(f"{stage1}: stage 1 must be a 2-class model without the prior input")
        self.size1 = int(cfg1["input_size"])
        self.stage2, self.size2 = None, self.size1
        if stage2 is not None:
            self.stage2, cfg2 = load_trained(Path(stage2))
            if not self.stage2.cfg.prior:
                raise ValueError(f"{stage2}: stage 2 must be a model with the prior input")
            self.size2 = int(cfg2["input_size"])
            self.stage2.to(self.device)
        self.stage1.to(self.device)
        self.class_names = class_names(2 if self.stage2 is None else self.stage2.cfg.num_classes)
        self.needs_maskige = self.stage1.cfg.maskige or (self.stage2 is not None and self.stage2.cfg.maskige)
        checkpoint = Path(sam_checkpoint) if sam_checkpoint else None
        self.proposer = proposer or (make_proposer(mask_source, checkpoint, sam_model_type) if self.needs_maskige
                                     else None)
        self.maskige_size = maskige_size
        self.amp = amp and self.device.type == "cuda"

    def info(self) -> dict[str, Any]:
        """Device, compiled-op backend, input sizes, class count and thread count (for logs and /ping-like checks)."""
        from cuda_ext import backend

        return {"device": str(self.device), "deform_attn": backend(self.device), "input_size": [self.size1, self.size2],
                "num_classes": len(self.class_names), "stage2": self.stage2 is not None,
                "mask_source": getattr(self.proposer, "name", None), "threads": torch.get_num_threads()}

    # -- preprocessing: the training data pipeline's recipe, on in-memory media -----------------------------
    def _maskige(self, frames: torch.Tensor, size: int) -> torch.Tensor:
        """float [T, 3, size, size] in [0, 1]: propose on each frame at its own resolution, paint, read as RGB."""
        out = []
        for frame in frames.permute(0, 2, 3, 1).numpy():
            painted = paint_maskige(self.proposer(np.ascontiguousarray(frame)), self.maskige_size)
            out.append(np.asarray(painted.convert("RGB")))
        maskige = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255
        return F.interpolate(maskige, size=(size, size), mode="nearest")

    def prepare(self, frames: torch.Tensor, waveform: torch.Tensor, sample_rate: int,
                times: Sequence[float] | None = None) -> _Inputs:
        """Network inputs of one clip. frames uint8 [T, 3, H, W]; waveform [N] or [C, N] at `sample_rate`;
        times: each frame's time in seconds from the waveform's start (default 0, 1, ..., T - 1). A frame at
        t s hears the 0.96 s log-mel example at position t (example k for a whole t = k, as in training)."""
        frames = torch.as_tensor(frames)
        if frames.dtype != torch.uint8 or frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[0] == 0:
            raise ValueError(f"frames must be uint8 [T, 3, H, W] with T >= 1, got {frames.dtype} {tuple(frames.shape)}")
        if sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {sample_rate}")
        t, timings = frames.shape[0], {}
        start = time.perf_counter()
        wave = to_mono_16k(torch.as_tensor(waveform), int(sample_rate))
        if wave.numel() == 0:
            raise ValueError("waveform holds no samples")
        positions = [float(x) for x in times] if times is not None else [float(k) for k in range(t)]
        if len(positions) != t:
            raise ValueError(f"times holds {len(positions)} entries for {t} frames")
        scales = log_mel_at(wave, positions, NTAVS_WINDOWS)
        audio = torch.stack([scales[w][:, 0] for w in NTAVS_WINDOWS], 1)      # [T, 3, 96, 64]
        timings["audio"] = _ms(start)
        start = time.perf_counter()
        maskige = self._maskige(frames, self.size1) if self.needs_maskige else None
        timings["maskige"] = _ms(start)
        start = time.perf_counter()
        x = F.interpolate(frames.float() / 255, size=(self.size1, self.size1), mode="bilinear", align_corners=False)
        timings["frames"] = _ms(start)
        return _Inputs((x - MEAN) / STD, audio, maskige, (int(frames.shape[-2]), int(frames.shape[-1])), timings)

    # -- the two stages ------------------------------------------------------------------------------------
    def _run(self, net: torch.nn.Module, batch: dict[str, torch.Tensor], size: int) -> torch.Tensor:
        """Per-class probabilities [B*T, C, size, size] (float32, on the device)."""
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.amp):
            preds = run_model(net, batch, self.device)
        return semantic_map(preds[-1], (size, size)).float()

    @staticmethod
    def _resize_batch(x: torch.Tensor, size: int, mode: str) -> torch.Tensor:
        """[B, T, C, S, S] -> [B, T, C, size, size]."""
        if x.shape[-1] == size:
            return x
        b, t = x.shape[:2]
        out = F.interpolate(x.flatten(0, 1), size=(size, size), mode=mode,
                            **({"align_corners": False} if mode == "bilinear" else {}))
        return out.unflatten(0, (b, t))

    @torch.no_grad()
    def predict_batch(self, clips: Sequence[tuple]) -> list[ClipResult]:
        """Predict several clips; clips with the same frame count share one forward pass per stage.

        clips: (frames uint8 [T, 3, H, W], waveform [N] or [C, N], sample_rate[, times]) each (times: see
        `prepare`). Returns one ClipResult per clip, in order, at each clip's own resolution.
        """
        start_all = time.perf_counter()
        prepared = [self.prepare(*clip) for clip in clips]
        groups: dict[int, list[int]] = {}
        for i, inputs in enumerate(prepared):
            groups.setdefault(inputs.frames.shape[0], []).append(i)
        results: list[ClipResult | None] = [None] * len(clips)
        for indices in groups.values():
            for i, result in zip(indices, self._predict_group([prepared[i] for i in indices]), strict=True):
                results[i] = result
        for result, inputs in zip(results, prepared, strict=True):
            result.timings = {**inputs.timings, **result.timings, "total": _ms(start_all)}
        return results

    def predict(self, frames: torch.Tensor, waveform: torch.Tensor, sample_rate: int,
                times: Sequence[float] | None = None) -> ClipResult:
        """Predict one clip: frames uint8 [T, 3, H, W], waveform float [N] or [C, N] at `sample_rate` Hz,
        optional frame times in seconds (see `prepare`)."""
        return self.predict_batch([(frames, waveform, sample_rate, times)])[0]

    def _predict_group(self, group: list[_Inputs]) -> list[ClipResult]:
        t = group[0].frames.shape[0]
        batch = {"frames": torch.stack([g.frames for g in group]), "audio": torch.stack([g.audio for g in group])}
        if self.needs_maskige:
            batch["maskige"] = torch.stack([g.maskige for g in group])
        timings: dict[str, float] = {"batch": len(group)}
        start = time.perf_counter()
        fg = self._run(self.stage1, batch, self.size1)[:, 1]                       # [B*T, S1, S1]
        timings["stage1"] = _ms(start)
        start = time.perf_counter()
        if self.stage2 is not None:
            prior = fg.unflatten(0, (len(group), t))                                 # [B, T, S1, S1]
            batch2 = {"frames": self._resize_batch(batch["frames"], self.size2, "bilinear"),
                      "audio": batch["audio"],
                      "prior": self._resize_batch(prior[:, :, None], self.size2, "bilinear")[:, :, 0]}
            if "maskige" in batch:
                batch2["maskige"] = self._resize_batch(batch["maskige"], self.size2, "nearest")
            probs = self._run(self.stage2, batch2, self.size2)                      # [B*T, C, S2, S2]
        else:
            probs = torch.stack([1 - fg, fg], 1)
        timings["stage2"] = _ms(start)
        start = time.perf_counter()
        fg, probs = fg.unflatten(0, (len(group), t)).cpu(), probs.unflatten(0, (len(group), t))
        results = [self._postprocess(fg[b], probs[b], g.size) for b, g in enumerate(group)]
        post = _ms(start) / len(group)
        for r in results:
            r.timings = {**timings, "postprocess": round(post, 2)}
        return results

    def _postprocess(self, fg: torch.Tensor, probs: torch.Tensor, size: tuple[int, int]) -> ClipResult:
        """fg [T, S1, S1] (CPU), probs [T, C, S2, S2] (device) -> a ClipResult at `size` (H, W)."""
        score, labels = probs.max(1)                                                 # [T, S2, S2]
        if self.stage2 is None:
            labels = (probs[:, 1] > FOREGROUND_THRESHOLD).long()
            score = torch.where(labels == 1, probs[:, 1], probs[:, 0])
        labels, score = labels.cpu(), score.cpu()
        frames, found = [], {}
        for t in range(len(labels)):
            ids, counts = torch.unique(labels[t], return_counts=True)
            present = []
            for cid, count in zip(ids.tolist(), counts.tolist(), strict=True):
                if cid == 0:
                    continue
                s = float(score[t][labels[t] == cid].mean())
                present.append({"id": cid, "name": self.class_names[cid], "score": round(s, 4),
                                "area": round(count / labels[t].numel(), 4)})
                entry = found.setdefault(cid, {"id": cid, "name": self.class_names[cid], "score": 0.0, "frames": []})
                entry["score"], entry["frames"] = max(entry["score"], round(s, 4)), [*entry["frames"], t]
            frames.append(sorted(present, key=lambda c: -c["score"]))
        foreground = F.interpolate(fg[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        class_map = F.interpolate(labels[:, None].float(), size=size, mode="nearest")[:, 0].long()
        return ClipResult(foreground.clamp_(0, 1), class_map, frames, sorted(found.values(), key=lambda c: -c["score"]))

    def warmup(self, seconds: int = 5, size: tuple[int, int] = (224, 224), batch: int = 1) -> float:
        """Run `batch` random clips of `seconds` frames at `size` through both stages (loads the compiled
        op, allocates buffers, primes cuDNN); returns the milliseconds it took."""
        start = time.perf_counter()
        gen = torch.Generator().manual_seed(0)
        frames = torch.randint(0, 256, (seconds, 3, *size), dtype=torch.uint8, generator=gen)
        wave = 0.1 * torch.randn(seconds * 16000, generator=gen)
        self.predict_batch([(frames, wave, 16000)] * batch)
        return _ms(start)


def model_files(model: Path | str) -> tuple[Path, Path | None]:
    """(stage-1, stage-2 or None) checkpoint files of `model`: the pipeline's models folder (stage1/best.pt
    [+ stage2/best.pt]), an extracted serving folder (stage1.pt [+ stage2.pt]) or one stage-1 best.pt.
    StepError naming `model` when none is there."""
    model = Path(model)
    if not model.exists():
        raise StepError(f"{model}: no such model file or folder")
    if model.is_file():
        return model, None
    for one, two in (("stage1/best.pt", "stage2/best.pt"), ("stage1.pt", "stage2.pt")):
        if (model / one).is_file():
            return model / one, (model / two if (model / two).is_file() else None)
    raise StepError(f"{model}: no model found (expected stage1/best.pt [+ stage2/best.pt], stage1.pt [+ stage2.pt], "
                    "or a stage-1 best.pt file)")


def open_segmenter(model: Path | str, device: torch.device | str | None = None, **options: Any) -> Segmenter:
    """A Segmenter over the model at `model` (see `model_files`); options go to Segmenter. StepError naming
    `model` when it is missing or cannot be loaded."""
    stage1, stage2 = model_files(model)
    try:
        return Segmenter(stage1, stage2, device=device, **options)
    except ValueError as exc:
        raise StepError(f"{model}: {exc}") from exc
