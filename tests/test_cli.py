"""The `avs` command itself: help, clear errors, no half-written outputs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from components.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_help_lists_the_steps() -> None:
    avs = Path(sys.executable).parent / "avs"
    proc = subprocess.run([str(avs), "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for step in ("synth", "validate"):
        assert step in proc.stdout


def test_synth_refuses_to_clobber_and_leaves_nothing_half_written(tmp_path: Path, capsys) -> None:
    out = tmp_path / "d"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    assert main(["synth", "--out", str(out), "--size", "tiny"]) == 2
    assert "already exists" in capsys.readouterr().err
    assert [p.name for p in out.iterdir()] == ["precious.txt"]
    assert main(["synth", "--out", str(tmp_path / "e"), "--size", "nope"]) == 2
    assert "unknown size" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


def test_synth_overwrite_replaces_atomically(tmp_path: Path) -> None:
    out = tmp_path / "d"
    assert main(["synth", "--out", str(out), "--size", "tiny", "--max-distractors", "1"]) == 0
    assert main(["synth", "--out", str(out), "--size", "tiny", "--overwrite"]) == 0
    assert (out / "SYNTHETIC.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]


# One bad input per subcommand: (argv, a fragment of the message that names the fault). Run in an empty
# folder; "P" stands for a copy of the project's params.yaml there.
BAD_INPUTS = {
    "synth": (["--out", "x", "--size", "nope"], "unknown size 'nope'"),
    "validate": (["--data", "nowhere", "--out", "r"], "data folder nowhere does not exist"),
    "features": (["--data", "nowhere", "--out", "f"], "data folder nowhere does not exist"),
    "train": (["--stage", "1", "--data", "nowhere", "--features", "f", "--out", "o", "--params", "missing.yaml"],
              "missing.yaml: cannot read the parameters"),
    "pretrain-visual": (["--out", "w.pt", "--params", "missing.yaml"], "missing.yaml: cannot read the parameters"),
    "predict-masks": (["--data", "d", "--features", "f", "--model", "missing.pt", "--out", "p"],
                      "model file missing.pt not found"),
    "evaluate": (["--data", "d", "--features", "f", "--out", "r", "--metrics", "m.json"],
                 "needs a stage-1 model, a stage-2 model or both"),
    "gate": (["--metrics", "missing.json", "--out", "g.json", "--params", "P"], "cannot read metrics missing.json"),
    "summary": (["--metrics", "missing.json"], "missing.json"),
    "package": (["--stage1", "missing.pt", "--out", "s", "--params", "P"], "model file missing.pt not found"),
    "serve": (["start", "--model-store", "nowhere", "--run-dir", "rd", "--params", "P"], "avs.mar not found"),
    "deploy": (["--manifests", "nowhere", "--render", "-", "--params", "P"], "nowhere/kustomization.yaml"),
    "predict": (["v.mp4", "--model", "missing", "--out", "o"], "missing: no such model file or folder"),
    "export-video": (["--data", "nowhere", "--out", "x.mp4"], "nowhere: no AVSBench clips"),
    "drift-reference": (["--data", "nowhere", "--out", "r"], "nowhere: no AVSBench metadata"),
    "drift": (["--reference", "nowhere", "--current", "nowhere", "--out", "d"], "nowhere: not a descriptor table"),
    "pipeline": (["compile", "--params", "missing.yaml"], "missing.yaml: cannot read the parameters"),
}


def test_every_subcommand_has_a_bad_input_case() -> None:
    from components.cli import build_parser

    parser = build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command")
    assert set(subparsers.choices) == set(BAD_INPUTS)


@pytest.mark.parametrize("step", sorted(BAD_INPUTS))
def test_each_subcommand_helps_and_names_a_bad_input(step: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """`--help` exits 0 with the step's usage; one bad input exits 2 with a message naming the fault, and
    writes nothing."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        main([step, "--help"])
    assert info.value.code == 0 and f"avs {step}" in capsys.readouterr().out
    shutil.copyfile(ROOT / "params.yaml", tmp_path / "P")
    argv, message = BAD_INPUTS[step]
    assert main([step, *argv]) == 2
    err = capsys.readouterr().err
    assert f"avs {step}: error:" in err and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["P"]
