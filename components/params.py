"""params.yaml: one typed schema per section, one loader with overrides.

Every pipeline step reads its parameters through `load_params` (a file plus `SECTION.KEY=VALUE`
overrides, as `dvc exp run -S` writes them) or `parse_section` (one section as a mapping, as a KFP
component receives it). Unknown keys and values of the wrong type are refused with a `ParamsError` that
names the key (`train.lr`). The defaults are the field defaults below and nowhere else; the repository's
params.yaml states each of them, so DVC tracks every value (tests/test_params.py checks the two agree).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from components.common import StepError

DEFAULT_FILE = Path("params.yaml")


class ParamsError(StepError):
    """A parameters file or override that cannot be used; the message names the file and the key."""


def _range(value: float, key: str, low: float = -math.inf, high: float = math.inf, rule: str = "") -> None:
    if not low <= value <= high:
        raise ValueError(f"{key}={value} {rule or f'must lie in [{low}, {high}]'}")


@dataclass(frozen=True)
class DataParams:
    """root: the AVSBench copy (a folder holding AVSBench_object/ and/or AVSBench_semantic/)."""

    root: str = "data/synthetic"


@dataclass(frozen=True)
class SynthParams:
    """`avs synth`: a size preset (tiny | demo | large) and its knobs; None keeps the preset's value
    (the knobs are described by components.synth.generate.SynthConfig; clips: part -> train, val, test
    clip counts); quirks: put the real data's quirks into the copy (components.synth.quirks)."""

    size: str = "demo"
    seed: int = 0
    noise_level: float | None = 0.1
    min_distractors: int | None = 1
    max_distractors: int | None = 3
    max_sources: int | None = 3
    min_radius: float | None = 0.16
    max_radius: float | None = 0.27
    s4_categories: int | None = 23
    avss_classes: int | None = 23
    image_size: int | None = None
    clips: dict[str, tuple[int, ...]] | None = None
    quirks: bool = False

    def knobs(self) -> dict[str, Any]:
        """The SynthConfig overrides: every knob that is set."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in ("size", "seed", "quirks") and v is not None}



@dataclass(frozen=True)
class ValidateParams:
    """`avs validate`: the expected sample rate (Hz), the quietest audio RMS that counts as sound, the
    shortest audio as a fraction of the clip's frame count in seconds, and which checks only warn (the
    official loaders accept such data and the steps handle it: another sample rate is resampled, short
    audio padded, a train clip short of frames padded, stray label colours read as background); every
    other check is an error."""

    sample_rate: int = 16000
    min_rms: float = 0.001
    min_duration_fraction: float = 0.9
    warnings: tuple[str, ...] = ("sample_rate", "audio_long_enough", "frame_count", "mask_values")

    def check(self) -> None:
        from components.validate import CHECKS

        _range(self.sample_rate, "sample_rate", 1)
        _range(self.min_duration_fraction, "min_duration_fraction", 0.0, 1.0)
        unknown = [name for name in self.warnings if name not in CHECKS]
        if unknown:
            raise ValueError(f"warnings: unknown check {unknown[0]!r}; checks: {', '.join(CHECKS)}")


@dataclass(frozen=True)
class FeaturesParams:
    """`avs features`: where the class-agnostic masks come from (regions: offline proposals; sam: a local
    SAM checkpoint of the registry type sam_model_type), the maskige side, and clips per batched
    spectrogram computation."""

    mask_source: str = "regions"
    sam_checkpoint: str = ""
    sam_model_type: str = "vit_b"
    maskige_size: int = 224
    batch_size: int = 32

    def check(self) -> None:
        if self.mask_source not in ("regions", "sam"):
            raise ValueError(f"mask_source={self.mask_source!r}: expected regions or sam")
        _range(self.maskige_size, "maskige_size", 32)
        _range(self.batch_size, "batch_size", 1)


@dataclass(frozen=True)
class PretrainVisualParams:
    """`avs pretrain-visual` (optional): steps, images per step, one-cycle peak lr, rendered images, seed."""

    steps: int = 500
    batch: int = 32
    lr: float = 0.003
    images: int = 4096
    seed: int = 0


@dataclass(frozen=True)
class TrainParams:
    """What both training stages share (components.train.loop.TrainConfig says what each key does);
    `model` holds ModelConfig overrides of the preset, checked against ModelConfig's fields and types."""

    preset: str = "tiny"
    input_size: int = 64
    batch_clips: int = 6
    frames: int = 2
    accumulate: int = 1
    lr: float = 0.001
    weight_decay: float = 0.05
    backbone_lr_mult: float = 1.0
    poly_power: float = 0.9
    clip_grad: float = 1.0
    checkpoint_every: int = 50
    val_every: int = 300
    seed: int = 0
    audio_swap: bool = False
    flip: bool = True
    max_zoom: float = 1.5
    repeat: dict[str, int] = field(default_factory=dict)
    model: dict[str, Any] = field(default_factory=lambda: {
        "audio_frozen": True, "semantic_weight": 5.0, "region_targets": True, "look_weight": 20.0})

    def check(self) -> None:
        _range(self.input_size, "input_size", 32)
        if self.input_size % 32:
            raise ValueError(f"input_size={self.input_size} must be divisible by 32")
        _range(self.max_zoom, "max_zoom", 1.0, rule="must be >= 1 (1: no zoom)")
        _range(self.frames, "frames", 0, rule="must be >= 0 (0: every frame)")
        for name in ("batch_clips", "accumulate", "checkpoint_every", "val_every"):
            _range(getattr(self, name), name, 1, rule="must be >= 1")
        for subset, times in self.repeat.items():
            from components.avsbench.layout import SUBSETS  # only when set: it imports pandas

            if subset not in SUBSETS:
                raise ValueError(f"repeat.{subset}: unknown subset; expected one of {', '.join(SUBSETS)}")
            _range(times, f"repeat.{subset}", 1, rule="must be >= 1 (times each clip of the subset comes per epoch)")
        from model.config import ModelConfig

        hints = typing.get_type_hints(ModelConfig)
        for key, value in self.model.items():
            if key not in hints:
                raise ValueError(f"model.{key}: unknown network setting (see model/config.py ModelConfig)")
            _coerce(value, hints[key], f"model.{key}")


AUDIO_HEADS = ("mean", "tokens")  # what the audio pretraining's head reads (`pretrain_audio`)


@dataclass(frozen=True)
class TrainStage1Params:
    """Stage 1 (class-agnostic): steps, and the audio transformer's pretraining on the S4 categories
    (steps, 0: off; most sources mixed into one example)."""

    steps: int = 600
    audio_pretrain_steps: int = 300
    audio_pretrain_sources: int = 3
    audio_pretrain_head: str = "mean"
    audio_pretrain_avss: bool = False

    def check(self) -> None:
        _range(self.steps, "steps", 1, rule="must be >= 1")
        _range(self.audio_pretrain_steps, "audio_pretrain_steps", 0, rule="must be >= 0 (0: off)")
        _range(self.audio_pretrain_sources, "audio_pretrain_sources", 1, rule="must be >= 1 (1: single sounds)")
        if self.audio_pretrain_head not in AUDIO_HEADS:
            raise ValueError(f"audio_pretrain_head={self.audio_pretrain_head!r}: expected one of {AUDIO_HEADS}")


@dataclass(frozen=True)
class TrainStage2Params:
    """Stage 2 (semantic, with the stage-1 prior): steps, and the share of training clips whose prior is
    the ground truth instead of the stage-1 prediction."""

    steps: int = 300
    prior_truth: float = 0.5

    def check(self) -> None:
        _range(self.steps, "steps", 1, rule="must be >= 1")
        _range(self.prior_truth, "prior_truth", 0.0, 1.0)


@dataclass(frozen=True)
class GateParams:
    """`avs gate`: minimums (dotted paths into metrics/evaluation.json -> value) and the margin by which
    the challenger may trail the champion on a gate metric."""

    minimums: dict[str, float] = field(default_factory=lambda: {
        "s4.test.miou": 0.53, "ms3.test.miou": 0.74, "avss.test.miou_present": 0.50})
    margin: float = 0.02


@dataclass(frozen=True)
class PackageParams:
    """`avs package`: the TorchServe archive and how its worker runs (docs/serving.md)."""

    model_name: str = "avs"
    model_version: str = "1.0"
    workers: int = 1
    batch_size: int = 4
    max_batch_delay_ms: int = 50
    response_timeout_s: int = 120
    startup_timeout_s: int = 600
    max_seconds: float = 20.0
    max_payload_mb: float = 50.0
    mask_format: str = "png"
    threads: int = 0
    warmup_seconds: float = 5.0
    warmup_size: int = 224

    def check(self) -> None:
        if self.mask_format not in ("png", "rle"):
            raise ValueError(f"mask_format={self.mask_format!r}: expected png or rle")


@dataclass(frozen=True)
class ServeParams:
    """`avs serve start`: TorchServe on this machine."""

    model_store: str = "models/serving"
    address: str = "127.0.0.1"
    inference_port: int = 8080
    management_port: int = 8081
    metrics_port: int = 8082
    token_auth: bool = True
    token_expiration_min: int = 60


@dataclass(frozen=True)
class DeployParams:
    """`avs deploy`: TorchServe on Kubernetes GPU nodes ("" means unset)."""

    namespace: str = "avs-serving"
    image: str = "avs-gpu:0.1.0"
    replicas: int = 1
    gpus: int = 1
    model_uri: str = ""
    s3_secret: str = "avs-s3-credentials"
    s3_endpoint: str = ""
    claim: str = ""
    create_namespace: bool = False
    token_auth: bool = True
    token_expiration_min: int = 1440
    timeout_s: float = 1200.0


@dataclass(frozen=True)
class DriftParams:
    """`avs drift`: alpha (family-wise false-alarm rate), min_clips (fewest clips a report is made for),
    ignore_columns (never tested), max_seconds (longer videos are skipped), reference_split (the split the
    drift_reference stage describes: train | val | test | all)."""

    alpha: float = 0.01
    min_clips: int = 10
    ignore_columns: tuple[str, ...] = ()
    max_seconds: float = 60.0
    reference_split: str = "train"

    def check(self) -> None:
        if not 0.0 < self.alpha < 1.0:
            raise ValueError(f"alpha={self.alpha} must lie in (0, 1)")
        _range(self.min_clips, "min_clips", 2, rule="must be at least 2")
        if self.reference_split not in ("train", "val", "test", "all"):
            raise ValueError(f"reference_split={self.reference_split!r}: expected train, val, test or all")


@dataclass(frozen=True)
class Params:
    """The whole params.yaml, one typed section per step."""

    data: DataParams = field(default_factory=DataParams)
    synth: SynthParams = field(default_factory=SynthParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    features: FeaturesParams = field(default_factory=FeaturesParams)
    pretrain_visual: PretrainVisualParams = field(default_factory=PretrainVisualParams)
    train: TrainParams = field(default_factory=TrainParams)
    train_stage1: TrainStage1Params = field(default_factory=TrainStage1Params)
    train_stage2: TrainStage2Params = field(default_factory=TrainStage2Params)
    gate: GateParams = field(default_factory=GateParams)
    package: PackageParams = field(default_factory=PackageParams)
    serve: ServeParams = field(default_factory=ServeParams)
    deploy: DeployParams = field(default_factory=DeployParams)
    drift: DriftParams = field(default_factory=DriftParams)


SECTIONS: dict[str, type] = {f.name: f.default_factory for f in dataclasses.fields(Params)}  # type: ignore[misc]


def _type_name(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    """`value` checked against the annotation `hint` (int, float, bool, str, X | None, tuple[str, ...],
    dict[str, X], Any); ints stand for floats, whole floats for ints (KFP passes numbers as doubles).
    ValueError names `key`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, key)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)):
            return tuple(_coerce(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
    elif origin is dict:
        if isinstance(value, Mapping):
            return {str(k): _coerce(v, args[1], f"{key}.{k}") for k, v in value.items()}
    else:
        raise TypeError(f"{key}: unsupported annotation {hint!r}")
    raise ValueError(f"{key}={value!r} is not {_type_name(hint)}")


def parse_section(name: str, mapping: Mapping[str, Any] | None) -> Any:
    """The typed section `name` from its mapping (missing keys keep their defaults). ParamsError names the
    first unknown key, value of the wrong type or value out of range (`name.key: ...`)."""
    if name not in SECTIONS:
        raise ParamsError(f"{name}: unknown section; known: {', '.join(SECTIONS)}")
    cls = SECTIONS[name]
    mapping = {} if mapping is None else mapping
    if not isinstance(mapping, Mapping):
        raise ParamsError(f"{name}: expected a mapping of parameters, got {mapping!r}")
    hints = typing.get_type_hints(cls)
    unknown = sorted(set(mapping) - set(hints))
    if unknown:
        raise ParamsError(f"{name}.{unknown[0]}: unknown parameter; {name} has {', '.join(hints)}")
    try:
        values = {key: _coerce(value, hints[key], f"{name}.{key}") for key, value in mapping.items()}
        section = cls(**values)
        if hasattr(section, "check"):
            try:
                section.check()
            except ValueError as exc:
                raise ValueError(f"{name}.{exc}") from None
    except ValueError as exc:
        raise ParamsError(str(exc)) from None
    return section


def parse_params(mapping: Mapping[str, Any], source: str = "parameters") -> Params:
    """Params from a whole parameters mapping; ParamsError names `source` and the key at fault."""
    if not isinstance(mapping, Mapping):
        raise ParamsError(f"{source}: expected a mapping of sections")
    unknown = sorted(set(mapping) - set(SECTIONS))
    if unknown:
        raise ParamsError(f"{source}: {unknown[0]}: unknown section; known: {', '.join(SECTIONS)}")
    try:
        return Params(**{name: parse_section(name, mapping.get(name)) for name in SECTIONS})
    except ParamsError as exc:
        raise ParamsError(f"{source}: {exc}") from None


def apply_overrides(mapping: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """A copy of `mapping` with each "a.b.c=VALUE" applied; VALUE is read as YAML ("2", "0.5", "{x: 1}").

    The dotted path walks nested mappings (creating missing levels, which parsing then checks); the last
    part is replaced whole, so a mapping whose keys hold dots (gate.minimums) is set as one YAML mapping:
    `gate.minimums={s4.test.miou: 0.6}`. ParamsError for a malformed override."""
    import yaml

    result = copy.deepcopy(dict(mapping))
    for item in overrides:
        key, sep, raw = item.partition("=")
        parts = key.strip().split(".")
        if not sep or not all(parts):
            raise ParamsError(f"--set {item!r}: expected SECTION.KEY=VALUE")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as exc:
            raise ParamsError(f"--set {item!r}: the value is not valid YAML ({exc})") from exc
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ParamsError(f"--set {item!r}: {part!r} is not a mapping")
            node = child
        node[parts[-1]] = value
    return result


def read_mapping(path: Path) -> dict[str, Any]:
    """The raw mapping of a parameters YAML file; ParamsError naming the file when it cannot be read."""
    import yaml

    try:
        content = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ParamsError(f"{path}: cannot read the parameters ({exc})") from exc
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ParamsError(f"{path}: expected a mapping of sections")
    return content


def load_params(path: Path | None = DEFAULT_FILE, overrides: Iterable[str] = (),
                values: Mapping[str, Any] | None = None) -> Params:
    """Params from `path` with `overrides` ("SECTION.KEY=VALUE" text, as `--set` gives them) and then
    `values` ({"SECTION.KEY": value}, as command-line options give them; None values are skipped) on top.

    path None, or the default params.yaml when the working directory has none: the defaults. A path that
    was asked for and is missing is an error. ParamsError names the file and the key at fault."""
    if path is None or (Path(path) == DEFAULT_FILE and not Path(path).is_file()):
        mapping, source = {}, "defaults"
    else:
        mapping, source = read_mapping(Path(path)), str(path)
    mapping = apply_overrides(mapping, overrides)
    for key, value in (values or {}).items():
        if value is not None:
            section, _, name = key.partition(".")
            node = mapping.setdefault(section, {})
            if not isinstance(node, dict):
                raise ParamsError(f"{source}: {section} is not a mapping of parameters")
            node[name] = value
    return parse_params(mapping, source)
