"""params.yaml through its one loader: the schema's defaults are the file's values, every key is read by a
step, unknown keys and wrong types are refused with the key named, and every step refuses a misspelt key
before it does any work."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest
import yaml

from components.cli import main
from components.params import (
    SECTIONS,
    Params,
    ParamsError,
    load_params,
    parse_section,
)
from components.pipeline.steps import from_struct

ROOT = Path(__file__).resolve().parents[1]


def test_the_repository_params_yaml_states_exactly_the_defaults() -> None:
    """The defaults live in the schema; params.yaml states each of them (so DVC tracks every value)."""
    written = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert set(written) == set(SECTIONS)
    for name, cls in SECTIONS.items():
        assert set(written[name]) == {f.name for f in dataclasses.fields(cls)}, name
    assert load_params(ROOT / "params.yaml") == Params()


def _consumers() -> str:
    """The source of everything that consumes parameters: the components (but the schema), the KFP tasks and
    dvc.yaml."""
    files = [p for p in (ROOT / "components").rglob("*.py") if p.name != "params.py"]
    files += [ROOT / "pipelines" / "tasks.py", ROOT / "dvc.yaml"]
    return "\n".join(p.read_text() for p in files)


def _wholesale() -> dict[str, set[str]]:
    """Sections a step hands on whole (`asdict`, `knobs()`), with the names their receiver accepts: a key is
    read when the receiver takes it."""
    from components.deploy.manifests import DeploySettings
    from components.serve.server import ServerSettings
    from components.synth.generate import SynthConfig
    from components.train.loop import TrainConfig
    from components.train.visual_pretrain import pretrain_visual

    fields = {f.name for f in dataclasses.fields(SynthConfig)}
    return {"synth": fields | {"size", "seed"},        # resolve_config(size, **knobs()), generate(seed=)
            "pretrain_visual": set(inspect.signature(pretrain_visual).parameters),
            "train": {f.name for f in dataclasses.fields(TrainConfig)},
            "serve": {f.name for f in dataclasses.fields(ServerSettings)},
            "deploy": {f.name for f in dataclasses.fields(DeploySettings)} | {"timeout_s"}}


def test_every_key_is_read_by_some_step() -> None:
    """No dead keys: each key is read as an attribute of its section by a step (or in dvc.yaml as
    ${section.key}), or its section is handed whole to a receiver that takes it."""
    source, wholesale = _consumers(), _wholesale()
    dead = []
    for name, cls in SECTIONS.items():
        for key in (f.name for f in dataclasses.fields(cls)):
            read = (key in wholesale.get(name, ()) or re.search(rf"\.{key}\b", source) is not None
                    or f"${{{name}.{key}}}" in source)
            if not read:
                dead.append(f"{name}.{key}")
    assert dead == []


@pytest.mark.parametrize(("override", "message"), [
    ("train.lr=fast", "train.lr='fast' is not float"),
    ("train.flip=1", "train.flip=1 is not bool"),
    ("train.input_size=64.5", "train.input_size=64.5 is not int"),
    ("train.input_size=48", "train.input_size=48 must be divisible by 32"),
    ("train.model.decoder_layer=3", "train.model.decoder_layer: unknown network setting"),
    ("train.model.decoder_layers=two", "train.model.decoder_layers='two' is not int"),
    ("train_stage2.prior_truth=1.5", "train_stage2.prior_truth=1.5 must lie in [0.0, 1.0]"),
    ("train_stage1.audio_pretrain_sources=0", "train_stage1.audio_pretrain_sources=0 must be >= 1"),
    ("train.frames=-1", "train.frames=-1 must be >= 0"),
    ("train.max_zoom=0.5", "train.max_zoom=0.5 must be >= 1"),
    ("train.repeat={ms4: 2}", "train.repeat.ms4: unknown subset; expected one of s4, ms3, avss"),
    ("train.repeat={ms3: 0}", "train.repeat.ms3=0 must be >= 1"),
    ("train_stage1.audio_pretrain_head=first", "train_stage1.audio_pretrain_head='first': expected one of"),
    ("gate.minimums={s4.test.miou: high}", "gate.minimums.s4.test.miou='high' is not float"),
    ("drift.alpha=2", "drift.alpha=2.0 must lie in (0, 1)"),
    ("drift.ignore_columns=video_fps", "drift.ignore_columns='video_fps' is not tuple"),
    ("features.mask_source=sma", "features.mask_source='sma': expected regions or sam"),
    ("synth.sizes=tiny", "synth.sizes: unknown parameter"),
    ("trian.lr=0.1", "trian: unknown section"),
    ("serve.inference_port=80.5", "serve.inference_port=80.5 is not int"),
])
def test_wrong_keys_types_and_ranges_are_refused_naming_the_key(override: str, message: str) -> None:
    with pytest.raises(ParamsError) as info:
        load_params(None, [override])
    assert message in str(info.value)


def test_file_overrides_and_values_apply_in_that_order(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": 0.5, "seed": 1}, "synth": {"size": "tiny"}}))
    params = load_params(path, ["train.lr=0.25", "train.seed=2"], {"train.seed": 3, "synth.size": None})
    assert (params.train.lr, params.train.seed, params.synth.size) == (0.25, 3, "tiny")
    assert params.train.batch_clips == Params().train.batch_clips    # missing keys: the defaults
    assert load_params(None) == Params()
    with pytest.raises(ParamsError, match=r"absent\.yaml: cannot read the parameters"):
        load_params(tmp_path / "absent.yaml")                        # asked for and missing: an error
    path.write_text("- a list\n")
    with pytest.raises(ParamsError, match="expected a mapping of sections"):
        load_params(path)


def test_a_section_as_kfp_passes_it_parses_to_the_same_values() -> None:
    """KFP hands dict parameters over with every number a double: whole doubles become ints again."""
    plain = dataclasses.asdict(Params().train_stage1)
    doubles = {k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in plain.items()}
    assert any(isinstance(v, float) for v in doubles.values())
    parsed = parse_section("train_stage1", from_struct(doubles))
    assert parsed == Params().train_stage1 and isinstance(parsed.steps, int)
    assert parse_section("train_stage1", doubles) == Params().train_stage1   # the schema alone does it too


# the steps that read params.yaml, each with arguments that would otherwise run (or fail later), and the
# section whose misspelt key it must refuse before doing anything
READERS = {
    "synth": (["synth", "--out", "x", "--size", "tiny"], "synth"),
    "validate": (["validate", "--data", "nowhere", "--out", "r"], "validate"),
    "features": (["features", "--data", "nowhere", "--out", "f"], "features"),
    "train": (["train", "--stage", "1", "--data", "d", "--features", "f", "--out", "o"], "train"),
    "train stage 2": (["train", "--stage", "2", "--data", "d", "--features", "f", "--out", "o"], "train_stage2"),
    "pretrain-visual": (["pretrain-visual", "--out", "w.pt"], "pretrain_visual"),
    "gate": (["gate", "--metrics", "m.json", "--out", "g.json"], "gate"),
    "package": (["package", "--stage1", "s1.pt", "--out", "s"], "package"),
    "serve": (["serve", "start", "--run-dir", "rd"], "serve"),
    "deploy": (["deploy", "--render", "-"], "deploy"),
    "predict": (["predict", "v.mp4", "--out", "o"], "features"),
    "drift-reference": (["drift-reference", "--data", "d", "--out", "r"], "drift"),
    "drift": (["drift", "--reference", "r", "--current", "c", "--out", "d"], "drift"),
    "pipeline compile": (["pipeline", "compile", "--out", "p.yaml"], "train_stage1"),
}


@pytest.mark.parametrize("step", sorted(READERS))
def test_each_step_refuses_a_misspelt_key_naming_it(step: str, tmp_path: Path, monkeypatch, capsys) -> None:
    argv, section = READERS[step]
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    key = next(iter(params[section]))
    misspelt = key[:-2] + key[-1] + key[-2]                # the last two letters swapped
    params[section][misspelt] = params[section].pop(key)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"params.yaml: {section}.{misspelt}: unknown parameter" in err, err
    assert [p.name for p in tmp_path.iterdir()] == ["params.yaml"]    # nothing written
