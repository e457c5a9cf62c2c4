"""Class vocabularies of AVSBench and the AVSS colour palette.

AVSS has 71 semantic indices (0 = background, then 70 sounding-object classes in a fixed order).
S4 uses 23 categories named after sound events; each is bound to the AVSS class whose object makes
that sound, which is how the synthetic generator gives S4 categories a look and a sound.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np

AVSS_CLASSES: tuple[str, ...] = (
    "background", "accordion", "airplane", "axe", "baby", "bassoon", "bell", "bird", "boat", "boy",
    "bus", "car", "cat", "cello", "clarinet", "clipper", "clock", "dog", "donkey", "drum", "duck",
    "elephant", "emergency-car", "erhu", "flute", "frying-food", "girl", "goose", "guitar", "gun",
    "guzheng", "hair-dryer", "handpan", "harmonica", "harp", "helicopter", "hen", "horse", "keyboard",
    "leopard", "lion", "man", "marimba", "missile-rocket", "motorcycle", "mower", "parrot", "piano",
    "pig", "pipa", "saw", "saxophone", "sheep", "sitar", "sorna", "squirrel", "tabla", "tank", "tiger",
    "tractor", "train", "trombone", "truck", "trumpet", "tuba", "ukulele", "utv", "vacuum-cleaner",
    "violin", "wolf", "woman",
)
NUM_AVSS_CLASSES = len(AVSS_CLASSES)  # 71, background included

# The 23 S4 sound-event categories, each mapped to the AVSS class of the object that sounds.
S4_CATEGORY_TO_AVSS: dict[str, str] = {
    "ambulance_siren": "emergency-car",
    "baby_laughter": "baby",
    "cap_gun_shooting": "gun",
    "cat_meowing": "cat",
    "chainsawing_trees": "saw",
    "coyote_howling": "wolf",
    "dog_barking": "dog",
    "driving_buses": "bus",
    "female_singing": "woman",
    "helicopter": "helicopter",
    "horse_clip-clop": "horse",
    "lawn_mowing": "mower",
    "lions_roaring": "lion",
    "male_speech": "man",
    "mynah_bird_singing": "bird",
    "playing_acoustic_guitar": "guitar",
    "playing_glockenspiel": "marimba",
    "playing_piano": "piano",
    "playing_tabla": "tabla",
    "playing_ukulele": "ukulele",
    "playing_violin": "violin",
    "race_car": "car",
    "typing_on_computer_keyboard": "keyboard",
}
S4_CATEGORIES: tuple[str, ...] = tuple(sorted(S4_CATEGORY_TO_AVSS))

SPLITS: tuple[str, ...] = ("train", "val", "test")
AVSS_LABELS: tuple[str, ...] = ("v1s", "v1m", "v2")


def label2idx(first: int = 1) -> dict[str, int]:
    """The content of AVSS `label2idx.json`: class name -> `first` + semantic index (71 entries). The real
    file, as other projects ship it, counts from 1 (background 1 ... woman 71): the default."""
    return {name: first + i for i, name in enumerate(AVSS_CLASSES)}


def read_label2idx(path: Path) -> int:
    """Check an AVSS `label2idx.json` against the class order the readers use and return the index of
    its first class: 1 (the real file's convention) or 0. ValueError naming the file and the first entry
    that differs (another class order would silently relabel every mask)."""
    try:
        mapping = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{path}: cannot be read ({exc})") from exc
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"{path}: expected a mapping of class name -> index")
    first = min(mapping.values()) if all(isinstance(v, int) for v in mapping.values()) else None
    if first not in (0, 1):
        raise ValueError(f"{path}: indices must be whole numbers from 0 or from 1")
    if mapping == label2idx(first):
        return first
    expected = label2idx(first)
    wrong = next((k for k in expected if mapping.get(k) != expected[k]), None) or next(k for k in mapping
                                                                                        if k not in expected)
    raise ValueError(f"{path}: {wrong!r} is {mapping.get(wrong)}, expected {expected.get(wrong)} "
                     f"({len(mapping)} entries, classes in the order of components/avsbench/classes.py)")


@cache
def avss_palette(num_classes: int = NUM_AVSS_CLASSES) -> np.ndarray:
    """PASCAL-VOC bit-interleaved colormap.

    Returns: uint8 array [num_classes, 3]; row i is the RGB colour of semantic index i
    (0 -> black, 1 -> (128, 0, 0), 2 -> (0, 128, 0), ...).
    """
    cmap = np.zeros((num_classes, 3), dtype=np.uint8)
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        cmap[i] = (r, g, b)
    cmap.setflags(write=False)
    return cmap


def _rgb_keys(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int64)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def rgb_to_index(rgb: np.ndarray, unknown: int = 255) -> np.ndarray:
    """Map an AVSS colour label to semantic indices by exact RGB match.

    rgb: uint8 [H, W, 3]. Returns int64 [H, W]; colours outside the palette become `unknown`.
    """
    keys = _rgb_keys(avss_palette())
    lookup = dict(zip(keys.tolist(), range(len(keys)), strict=True))
    flat = _rgb_keys(rgb).ravel()
    uniq, inverse = np.unique(flat, return_inverse=True)
    mapped = np.array([lookup.get(int(k), unknown) for k in uniq], dtype=np.int64)
    return mapped[inverse].reshape(rgb.shape[:2])


def off_palette_colours(rgb: np.ndarray) -> list[tuple[int, int, int]]:
    """The distinct colours of `rgb` (uint8 [H, W, 3]) that are not AVSS palette colours."""
    known = set(_rgb_keys(avss_palette()).tolist())
    uniq = np.unique(_rgb_keys(rgb).ravel())
    return [((int(k) >> 16) & 255, (int(k) >> 8) & 255, int(k) & 255) for k in uniq if int(k) not in known]
