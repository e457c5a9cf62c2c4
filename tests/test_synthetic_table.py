"""The accuracy table's parameter handling: `--set` overrides, the folder's records and their refusals."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "synthetic_table.py"


@pytest.fixture(scope="module")
def table():
    """The benchmark script as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("synthetic_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_load_applies_overrides_and_synth_values_and_records_json(table):
    params, record = table.load(ROOT / "params.yaml", ["train.seed=3", "synth.avss_classes=5"], size="tiny", seed=None)
    assert (params.train.seed, params.synth.avss_classes, params.synth.size) == (3, 5, "tiny")
    assert record["train"]["seed"] == 3 and record == json.loads(json.dumps(record))
    with pytest.raises(SystemExit, match=r"synth\.avss_clases: unknown parameter"):
        table.load(ROOT / "params.yaml", ["synth.avss_clases=3"])


def test_train_configs_apply_steps_and_validation_interval(table):
    params, _ = table.load(ROOT / "params.yaml", ["train.seed=3"])
    cfg1, cfg2 = table.train_configs(params, 40, None, 20)
    assert (cfg1.stage, cfg1.steps, cfg1.val_every, cfg1.seed) == (1, 40, 20, 3)
    assert (cfg2.stage, cfg2.steps, cfg2.val_every) == (2, params.train_stage2.steps, 20)


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
    for assignment, message in (("synth.avss_clases=3", "synth.avss_clases: unknown parameter"),
                                ("train_stage2.prior_truth=2", "train_stage2.prior_truth=2.0 must lie in [0.0, 1.0]")):
        done = run_table("--out", str(out), "--set", assignment)
        assert done.returncode == 1 and done.stderr.startswith(f"params.yaml: {message}"), done.stderr
        assert not out.exists()
