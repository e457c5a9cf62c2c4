"""The accuracy table's parameter handling: `--set` overrides, the folder's records and their refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "synthetic_table.py"


@pytest.fixture(scope="module")
def table():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


def test_set_param_changes_nested_values_read_as_yaml(table, params):
    table.set_param(params, "synth.avss_classes=23")
    table.set_param(params, "train.stage2.prior_truth=1.0")
    table.set_param(params, "train.flip=false")
    table.set_param(params, "train.model.queries=trivial")  # a new key, allowed under train
    assert params["synth"]["avss_classes"] == 23
    assert params["train"]["stage2"]["prior_truth"] == 1.0
    assert params["train"]["flip"] is False
    assert params["train"]["model"]["queries"] == "trivial"


@pytest.mark.parametrize(("assignment", "message"), [
    ("synth.avss_clases=3", "synth.avss_clases: no such parameter"),
    ("nosuch.key=1", "nosuch is not a section"),
    ("synth.seed.x=2", "synth.seed is not a section"),
    ("synth", "expected KEY=VALUE"),
    ("=3", "expected KEY=VALUE"),
])
def test_set_param_refuses_what_does_not_exist(table, params, assignment, message):
    before = json.dumps(params, sort_keys=True)
    with pytest.raises(ValueError, match=message):
        table.set_param(params, assignment)
    assert json.dumps(params, sort_keys=True) == before


def test_train_configs_apply_steps_and_name_bad_train_values(table, params):
    params["train"]["seed"] = 3
    cfg1, cfg2 = table.train_configs(params, 40, None, 20)
    assert (cfg1.stage, cfg1.steps, cfg1.val_every, cfg1.seed) == (1, 40, 20, 3)
    assert (cfg2.stage, cfg2.steps, cfg2.val_every) == (2, params["train"]["stage2"]["steps"], 20)
    params["train"]["bogus"] = 1
    with pytest.raises(ValueError, match=r"^unknown train parameter\(s\) bogus$"):
        table.train_configs(params, None, None, None)


def test_claim_records_then_refuses_other_parameters_naming_them(table, tmp_path):
    record = tmp_path / "params.json"
    stamp = {"synth": {"seed": 0}, "train": {"seed": 0, "lr": 0.001}}
    table.claim(record, stamp, "other parameters")
    assert json.loads(record.read_text()) == stamp
    table.claim(record, json.loads(json.dumps(stamp)), "other parameters")  # the same again passes
    other = {"synth": {"seed": 0}, "train": {"seed": 1, "lr": 0.001, "flip": False}}
    with pytest.raises(SystemExit, match=r"train\.flip: None -> False; train\.seed: 0 -> 1"):
        table.claim(record, other, "other parameters")
    assert json.loads(record.read_text()) == stamp
    with pytest.raises(SystemExit, match="not recorded"):
        table.claim(tmp_path / "schedule.json", {"steps1": 1}, "another schedule", unrecorded_runs=True)
    assert not (tmp_path / "schedule.json").exists()


def run_table(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "--size", "tiny", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)


def test_cli_records_the_overridden_parameters_and_refuses_a_mismatch(tmp_path):
    out = tmp_path / "table"
    done = run_table("--out", str(out), "--prepare", "--set", "train.seed=1", "--set", "synth.avss_classes=3")
    assert done.returncode == 0, done.stderr
    recorded = json.loads((out / "params.json").read_text())
    assert (recorded["train"]["seed"], recorded["synth"]["avss_classes"], recorded["synth"]["size"]) == (1, 3, "tiny")
    assert (out / "data").is_dir() and (out / "features").is_dir()
    refused = run_table("--out", str(out), "--prepare", "--set", "synth.avss_classes=3")
    assert refused.returncode == 1
    assert "train.seed: 1 -> 0" in refused.stderr
    assert json.loads((out / "params.json").read_text()) == recorded


def test_cli_bad_set_exits_naming_it_and_writes_nothing(tmp_path):
    out = tmp_path / "table"
    for assignment, message in (("synth.avss_clases=3", "--set synth.avss_clases: no such parameter"),
                                ("train.prior_truth=2", "train.prior_truth=2 must lie in [0, 1]")):
        done = run_table("--out", str(out), "--set", assignment)
        assert (done.returncode, done.stderr) == (1, f"params.yaml: {message}\n")
        assert not out.exists()
