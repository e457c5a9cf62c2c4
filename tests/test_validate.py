"""`avs validate`: a clean copy passes; each kind of corruption fails (errors) or warns (what the official
loaders accept and the steps handle), naming the clip and the file."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
from PIL import Image

from components.avsbench.layout import METADATA, list_clips
from components.cli import main
from components.common import StepError
from components.params import load_params


def _clip(root: Path, subset: str, split: str = "val", label: str | None = None):
    clips = list_clips(root, subset, split, (label,) if label else None)
    return clips[0]


def _rel(root: Path, path: Path) -> str:
    return str(path.relative_to(root))


def _rewrite_audio(path: Path, fn: Callable[[np.ndarray, int], tuple[np.ndarray, int]]) -> None:
    data, rate = sf.read(path, dtype="float32")
    data, rate = fn(data, rate)
    sf.write(path, data, rate, subtype="PCM_16")


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _edit_metadata(root: Path, subset: str, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> None:
    path = root / METADATA[subset]
    fn(pd.read_csv(path, dtype=str, keep_default_na=False)).to_csv(path, index=False)


# Each corruption edits the copy and returns (clip key, file that must be named, check that must fail).
def missing_frame(root: Path):
    c = _clip(root, "s4")
    c.frames[2].unlink()
    return c.key, _rel(root, c.frames[2]), "no_missing_files"


def missing_mask(root: Path):
    c = _clip(root, "ms3", "train")
    c.masks[4].unlink()
    return c.key, _rel(root, c.masks[4]), "no_missing_files"


def missing_audio(root: Path):
    c = _clip(root, "avss", "test", "v1m")
    c.audio.unlink()
    return c.key, _rel(root, c.audio), "no_missing_files"


def truncated_wav(root: Path):
    c = _clip(root, "s4", "train")
    _truncate(c.audio)
    return c.key, _rel(root, c.audio), "all_files_readable"


def unreadable_png(root: Path):
    c = _clip(root, "ms3")
    _truncate(c.frames[1])
    return c.key, _rel(root, c.frames[1]), "all_files_readable"


def unreadable_jpg(root: Path):
    c = _clip(root, "avss", "val", "v2")
    c.frames[7].write_bytes(b"not an image at all")
    return c.key, _rel(root, c.frames[7]), "all_files_readable"


def wrong_sample_rate(root: Path):
    c = _clip(root, "s4", "test")
    _rewrite_audio(c.audio, lambda x, r: (x[::2], r // 2))
    return c.key, _rel(root, c.audio), "sample_rate"


def silent_audio(root: Path):
    c = _clip(root, "ms3", "test")
    _rewrite_audio(c.audio, lambda x, r: (np.zeros_like(x), r))
    return c.key, _rel(root, c.audio), "audio_not_silent"


def short_audio(root: Path):
    c = _clip(root, "avss", "train", "v1s")
    _rewrite_audio(c.audio, lambda x, r: (x[: 2 * r], r))
    return c.key, _rel(root, c.audio), "audio_long_enough"


def extra_frame(root: Path):
    c = _clip(root, "s4", "val")
    extra = c.frame_dir / f"{c.clip_id}_6.png"
    extra.write_bytes(c.frames[0].read_bytes())
    return c.key, _rel(root, c.frame_dir), "frame_count"


def mask_size_mismatch(root: Path):
    c = _clip(root, "s4", "val")
    Image.open(c.masks[0]).resize((32, 48)).save(c.masks[0])
    return c.key, _rel(root, c.masks[0]), "mask_size"


def mask_values(root: Path):
    c = _clip(root, "ms3", "val")
    m = np.asarray(Image.open(c.masks[3])).copy()
    m[:4, :4] = 128
    Image.fromarray(m).save(c.masks[3])
    return c.key, _rel(root, c.masks[3]), "mask_values"


def off_palette_colour(root: Path):
    c = _clip(root, "avss", "test", "v1s")
    m = np.asarray(Image.open(c.masks[2]).convert("RGB")).copy()
    m[:3, :3] = (1, 2, 3)
    Image.fromarray(m).save(c.masks[2])
    return c.key, _rel(root, c.masks[2]), "mask_values"


def duplicate_id(root: Path):
    c = _clip(root, "s4", "train")
    _edit_metadata(root, "s4", lambda df: pd.concat([df, df[df["name"] == c.clip_id]]))
    return c.key, str(METADATA["s4"]), "unique_ids"


def unknown_split(root: Path):
    c = _clip(root, "ms3", "val")
    _edit_metadata(root, "ms3", lambda df: df.assign(split=df["split"].where(df["video_id"] != c.clip_id, "holdout")))
    return c.key, str(METADATA["ms3"]), "known_split"


def unknown_class(root: Path):
    c = _clip(root, "s4", "test")
    _edit_metadata(root, "s4", lambda df: df.assign(
        category=df["category"].where(df["name"] != c.clip_id, "dragon_roaring")))
    return c.key, str(METADATA["s4"]), "known_s4_category"


def unknown_avss_label(root: Path):
    c = _clip(root, "avss", "val", "v1m")
    _edit_metadata(root, "avss", lambda df: df.assign(label=df["label"].where(df["uid"] != c.clip_id, "v3")))
    return c.key, str(METADATA["avss"]), "known_avss_label"


def frame_size_differs(root: Path):
    c = _clip(root, "ms3", "test")
    Image.open(c.frames[3]).resize((48, 40)).save(c.frames[3])   # its mask keeps the clip's size
    return c.key, _rel(root, c.frame_dir), "frame_sizes_consistent"


def three_channel_audio(root: Path):
    c = _clip(root, "s4", "val")
    _rewrite_audio(c.audio, lambda x, r: (np.stack([x, x, x], 1), r))
    return c.key, _rel(root, c.audio), "audio_channels"


def missing_ground_truth_count(root: Path):
    c = _clip(root, "avss", "val", "v1s")
    c.masks[1].unlink()
    return c.key, _rel(root, c.masks[1]), "mask_count"


def train_frame_gap(root: Path):
    """A train clip lacking a frame before its last one: a hole, not a short clip (missing files)."""
    c = _clip(root, "avss", "train", "v2")
    c.frames[4].unlink()
    return c.key, _rel(root, c.frames[4]), "no_missing_files"


def heldout_clip_short_of_last_frames(root: Path):
    """Only train clips may be short of their last frames (the official loader lists their folder)."""
    c = _clip(root, "avss", "test", "v2")
    for path in c.frames[8:]:
        path.unlink()
    return c.key, _rel(root, c.frames[8]), "no_missing_files"


def train_clip_short_of_last_frames(root: Path):
    c = _clip(root, "avss", "train", "v2")
    for path in (*c.frames[7:], *c.masks[7:], *c.semantic[7:]):
        path.unlink()
    return c.key, _rel(root, c.frame_dir), "frame_count"


CORRUPTIONS = [missing_frame, missing_mask, missing_audio, truncated_wav, unreadable_png, unreadable_jpg,
               silent_audio, mask_size_mismatch, duplicate_id, unknown_split, unknown_class, unknown_avss_label,
               frame_size_differs, three_channel_audio, missing_ground_truth_count, train_frame_gap,
               heldout_clip_short_of_last_frames]
# what the official loaders accept and the steps handle: warnings by default (validate.warnings)
WARNED = [wrong_sample_rate, short_audio, extra_frame, mask_values, off_palette_colour,
          train_clip_short_of_last_frames]


def test_clean_copy_passes_and_writes_data_docs(tiny_data: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "report"
    assert main(["validate", "--data", str(tiny_data), "--out", str(out), "--metrics", str(tmp_path / "m.json")]) == 0
    assert (out / "data_docs" / "index.html").is_file()
    html = list((out / "data_docs" / "validations").rglob("*.html"))
    assert html and "avsbench_clips" in html[0].read_text()
    manifest = pd.read_csv(out / "manifest.csv")
    assert len(manifest) == 32 and set(manifest["subset"]) == {"s4", "ms3", "avss"}
    assert set(manifest["audio_sample_rate"]) == {16000}
    summary = json.loads((tmp_path / "m.json").read_text())
    assert summary["success"] is True and summary["clips"] == 32
    assert "OK" in capsys.readouterr().out


@pytest.mark.parametrize("corrupt", CORRUPTIONS, ids=lambda f: f.__name__)
def test_each_corruption_fails_naming_clip_and_file(corrupt, tiny_copy: Path, tmp_path: Path, capsys) -> None:
    key, named_file, check = corrupt(tiny_copy)
    out = tmp_path / "report"
    assert main(["validate", "--data", str(tiny_copy), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip().startswith(key)]
    assert lines, f"{key} not named in:\n{err}"
    assert any(named_file in line for line in lines), f"{named_file} not named in:\n{err}"
    results = json.loads((out / "results.json").read_text())
    failed = {r["check"]: r["failing_clips"] for r in results["checks"] if not r["success"]}
    assert key in failed.get(check, []), failed
    # only the corrupted clip fails
    assert {k for keys in failed.values() for k in keys} == {key}


@pytest.mark.parametrize("quirk", WARNED, ids=lambda f: f.__name__)
def test_each_quirk_warns_naming_clip_and_file_and_can_be_made_an_error(quirk, tiny_copy: Path, tmp_path: Path,
                                                                        capsys) -> None:
    key, named_file, check = quirk(tiny_copy)
    assert main(["validate", "--data", str(tiny_copy), "--out", str(tmp_path / "r")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line.strip().startswith(f"warning: {key}")]
    assert any(named_file in line for line in lines), f"{key} / {named_file} not warned in:\n{captured.err}"
    assert "OK" in captured.out and "warning(s)" in captured.out
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    warned = {r["check"]: r["failing_clips"] for r in results["checks"] if not r["success"]}
    assert warned == {check: [key]} and results["success"] and results["failures"] == []
    assert [r["level"] for r in results["checks"] if r["check"] == check] == ["warning"]
    # made an error (validate.warnings without it), the same finding fails the copy
    others = [w for w in load_params(None).validate.warnings if w != check]
    assert main(["validate", "--data", str(tiny_copy), "--out", str(tmp_path / "r2"),
                 "--set", f"validate.warnings={others}"]) == 1
    assert any(named_file in line for line in capsys.readouterr().err.splitlines() if key in line)


def test_cli_process_exits_nonzero_without_traceback(tiny_copy: Path, tmp_path: Path) -> None:
    key, named_file, _ = truncated_wav(tiny_copy)
    proc = subprocess.run([sys.executable, "-m", "components.cli", "validate", "--data", str(tiny_copy),
                           "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr and key in proc.stderr and named_file in proc.stderr


def test_missing_data_folder_is_a_clear_error(tmp_path: Path, capsys) -> None:
    assert main(["validate", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "r")]) == 2
    assert "does not exist" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["validate", "--data", str(empty), "--out", str(tmp_path / "r")]) == 2
    assert "no AVSBench metadata" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_broken_metadata_csv_is_named(tiny_copy: Path, tmp_path: Path, capsys) -> None:
    (tiny_copy / METADATA["ms3"]).write_text("id,oops\n1,2\n")
    assert main(["validate", "--data", str(tiny_copy), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert str(METADATA["ms3"]) in err and "video_id" in err


def test_the_check_names_params_yaml_can_name_are_the_suites() -> None:
    from components.validate import CHECKS
    from components.validate.suite import checks

    assert tuple(c.name for c in checks(load_params(None).validate)) == CHECKS
    with pytest.raises(StepError, match=r"validate\.warnings: unknown check 'sample_rte'"):
        load_params(None, ["validate.warnings=[sample_rte]"])
