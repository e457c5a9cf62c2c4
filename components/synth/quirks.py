"""The quirks of real AVSBench copies, put into a synthetic one (`avs synth --quirks`).

What the official loaders accept and our steps handle, each applied to a written copy: AVSS audio at
44.1 kHz stereo (the AVSS `audio.wav` rate is not documented), one clip whose audio is short, one train
clip short of its last frames, a few label pixels of a colour outside the palette, and a label2idx.json
counting from 0 (ours counts from 1, as the real file does; the readers accept either). Validation must
warn about each, naming the clip and the file, and still pass; the pipeline must run on the copy.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import soundfile as sf
from PIL import Image

from components.avsbench.classes import label2idx
from components.avsbench.layout import LABEL2IDX, clip_files, read_metadata
from components.common import StepError

QUIRK_RATE = 44100
SHORT_FRACTION = 0.6          # the short clip keeps this share of its audio (validation wants 90%)
STRAY_COLOUR = (3, 2, 1)      # not an AVSS palette colour
MISSING_FRAMES = 2            # the short train clip lacks its last two frames


def check_room(clips: dict[str, tuple[int, ...]]) -> None:
    """StepError naming what is missing when a synthetic config (part -> train, val, test clip counts)
    has no clip for one of the quirks: an S4 train clip, a v2 train clip, an AVSS val clip."""
    none = (0, 0, 0)
    needs = {"an S4 train clip": clips.get("s4", none)[0], "an AVSS v2 train clip": clips.get("v2", none)[0],
             "an AVSS val clip": sum(clips.get(p, none)[1] for p in ("v1s", "v1m", "v2"))}
    missing = [what for what, n in needs.items() if n < 1]
    if missing:
        raise StepError(f"synth --quirks needs {', '.join(missing)} (synth.clips: {clips})")


def _first(root: Path, subset: str, split: str, label: str | None = None):
    meta = read_metadata(root, subset)
    rows = meta[(meta["split"] == split) & ((meta["label"] == label) if label else True)]
    r = rows.iloc[0]
    return clip_files(root, subset, r["clip_id"], r["split"], r["label"])


def _resample_stereo(path: Path) -> None:
    """Rewrite a 16 kHz mono WAV at QUIRK_RATE with two slightly different channels."""
    import torch
    import torchaudio.functional as AF

    data, rate = sf.read(path, dtype="float32")
    wave = AF.resample(torch.from_numpy(data), rate, QUIRK_RATE).numpy()
    sf.write(path, np.stack([wave, 0.9 * wave], 1), QUIRK_RATE, subtype="PCM_16")


def add_quirks(root: Path) -> dict[str, list[str]]:
    """Put every quirk into the AVSBench copy at `root` (written by `generate`, S4 and AVSS with v2 train
    clips present: `check_room`). Returns {quirk: [files changed, relative to root]}."""
    root = Path(root)
    done: dict[str, list[str]] = {"audio_44k1_stereo": [], "short_audio": [], "missing_train_frames": [],
                                  "stray_colour": [], "label2idx_from_0": []}
    for r in read_metadata(root, "avss").itertuples(index=False):
        files = clip_files(root, "avss", r.clip_id, r.split, r.label)
        _resample_stereo(files.audio)
        done["audio_44k1_stereo"].append(str(files.audio.relative_to(root)))

    short = _first(root, "s4", "train")
    data, rate = sf.read(short.audio, dtype="float32")
    sf.write(short.audio, data[: int(SHORT_FRACTION * len(data))], rate, subtype="PCM_16")
    done["short_audio"].append(str(short.audio.relative_to(root)))

    cut = _first(root, "avss", "train", "v2")
    for t in range(cut.num_frames - MISSING_FRAMES, cut.num_frames):
        for path in (cut.frames[t], cut.masks[t], cut.semantic[t]):
            path.unlink()
            done["missing_train_frames"].append(str(path.relative_to(root)))

    stray = _first(root, "avss", "val")
    label = np.array(Image.open(stray.masks[0]).convert("RGB"))
    label[:3, :3] = STRAY_COLOUR
    Image.fromarray(label).save(stray.masks[0])
    done["stray_colour"].append(str(stray.masks[0].relative_to(root)))

    (root / LABEL2IDX).write_text(json.dumps(label2idx(first=0), indent=1) + "\n")
    done["label2idx_from_0"].append(str(LABEL2IDX))
    record = root / "SYNTHETIC.json"
    record.write_text(json.dumps({**json.loads(record.read_text()), "quirks": done}, indent=2) + "\n")
    return done
