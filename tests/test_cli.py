"""The `avs` command itself: help, clear errors, no half-written outputs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from components.cli import main


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
