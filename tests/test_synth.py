"""The synthetic AVSBench is a real audio-visual task: the audio tells which visible object sounds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.avsbench.classes import AVSS_CLASSES, S4_CATEGORY_TO_AVSS
from components.synth.baseline import audio_blind_scores
from components.synth.generate import generate, iter_clips, resolve_config
from components.synth.looks import look_of
from components.synth.sounds import SAMPLE_RATE, signature


def _band_power(x: np.ndarray, f0: float) -> float:
    spec = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SAMPLE_RATE)
    return float(spec[(freqs > f0 / 1.1) & (freqs < f0 * 1.1)].sum())


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_every_class_has_its_own_look_and_sound() -> None:
    looks = {(look_of(k).shape, tuple(look_of(k).colour)) for k in range(1, 71)}
    sounds = {signature(k)[:2] for k in range(1, 71)}
    assert len(looks) == 70 and len(sounds) == 70
    with pytest.raises(ValueError):
        look_of(0)


def test_same_seed_same_bytes_other_seed_other_data(tiny_data: Path, tmp_path: Path) -> None:
    again = tmp_path / "again"
    generate(again, resolve_config("tiny"), seed=0)
    assert _tree(again) == _tree(tiny_data)
    other = tmp_path / "other"
    generate(other, resolve_config("tiny"), seed=1)
    assert _tree(other).keys() != _tree(tiny_data).keys()


def test_s4_sound_comes_from_the_sounding_category_not_the_distractors() -> None:
    checked = 0
    for clip in iter_clips(resolve_config("tiny"), seed=3):
        if clip.part != "s4":
            continue
        scene = clip.scene
        source = AVSS_CLASSES.index(S4_CATEGORY_TO_AVSS[clip.category])
        assert scene.classes[0] == source and scene.sounding[:, 0].all() and not scene.sounding[:, 1:].any()
        assert len(scene.classes) >= 2, "every clip has at least one silent distractor by default"
        f_src = signature(source)[1]
        for distractor in scene.classes[1:]:
            f_dis = signature(int(distractor))[1]
            if abs(np.log(f_dis / f_src)) > 0.2:
                assert _band_power(scene.audio, f_src) > 5 * _band_power(scene.audio, f_dis)
                checked += 1
        # the ground truth covers exactly the sounding object's visible pixels
        assert np.array_equal(scene.sounding_mask(), scene.instances == 0)
    assert checked > 0


def test_v2_sounding_set_changes_and_audio_follows_it_second_by_second() -> None:
    cfg = resolve_config("tiny", noise_level=0.05)
    changed, checked = False, 0
    for clip in iter_clips(cfg, seed=0):
        if clip.part != "v2":
            continue
        scene = clip.scene
        assert len(scene.frames) == 10 and len(scene.audio) == 10 * SAMPLE_RATE
        sources = np.flatnonzero(scene.sounding.any(0))
        changed |= len({tuple(row) for row in scene.sounding}) > 1
        pitches = [signature(int(scene.classes[k]))[1] for k in sources]
        for k, f0 in zip(sources, pitches, strict=True):
            if any(abs(np.log(f / f0)) < 0.2 for j, f in zip(sources, pitches, strict=True) if j != k):
                continue  # another source shares the band
            power = [_band_power(scene.audio[t * SAMPLE_RATE + 800:(t + 1) * SAMPLE_RATE - 800], f0) for t in range(10)]
            on = [p for p, s in zip(power, scene.sounding[:, k], strict=True) if s]
            off = [p for p, s in zip(power, scene.sounding[:, k], strict=True) if not s]
            if on and off:
                assert min(on) > 5 * max(off)
                checked += 1
    assert changed and checked > 0


def test_objects_move_and_multi_source_clips_mix_sources() -> None:
    for clip in iter_clips(resolve_config("tiny"), seed=0):
        scene = clip.scene
        centre = [np.argwhere(scene.instances[t] == 0).mean(0) for t in range(len(scene.frames))
                  if (scene.instances[t] == 0).any()]
        assert np.abs(np.diff(centre, axis=0)).max() > 0.5
        if clip.part in ("ms3", "v1m"):
            assert scene.sounding.any(0).sum() >= 2


def test_audio_blind_baseline_is_well_below_perfect_and_the_knob_controls_it() -> None:
    scores = audio_blind_scores(resolve_config("tiny"), seed=0, splits=("train", "val", "test"))
    for part, (miou, perfect, present) in scores.items():
        assert miou < 0.8 * perfect, (part, miou, perfect)
        assert present >= miou and (present == miou) == (part in ("s4", "ms3")), part
    easy = audio_blind_scores(resolve_config("tiny", min_distractors=0, max_distractors=0), seed=0,
                              splits=("train", "val", "test"))
    assert easy["s4"][0] == pytest.approx(1.0)


def test_bad_knobs_are_rejected() -> None:
    from components.common import StepError

    with pytest.raises(StepError, match="max_sources"):
        resolve_config("tiny", max_sources=1)
    with pytest.raises(StepError, match="unknown size"):
        resolve_config("huge")


def test_object_errors_names_how_a_silent_object_looks_next_to_the_sources() -> None:
    """benchmarks/object_errors.py's look relation: classes 1 and 2 share red; 43 is an orange disc, near red;
    8 a green disc (red's shape, a far colour); 9 a green square."""
    import importlib.util

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "object_errors.py"
    spec = importlib.util.spec_from_file_location("object_errors", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (look_of(1).shape, look_of(8).shape, look_of(43).shape) == ("disc", "disc", "disc")
    assert module.look_relation(2, [1]) == "same colour"
    assert module.look_relation(43, [1]) == "near colour"
    assert module.look_relation(8, [1]) == "same shape"
    assert module.look_relation(9, [1]) == "other"
    assert module.look_relation(9, [1, 10]) == "same colour"       # 10 is green too: any source counts
    assert module.look_relation(1, [1]) == "other"                 # its own class is not compared
    fractions = {"sources": [0.9, 0.1], "silent": [0.7, 0.0, 0.95], "relation": ["same colour", "other", "other"]}
    rates = module.rates(fractions)
    assert rates["sources marked"] == 0.5 and rates["same colour marked"] == 1.0 and rates["other marked"] == 0.5
    assert rates["silent > 0.8"] == 1 / 3 and np.isnan(rates["near colour marked"])
