"""WAV header facts that libsndfile hides: the frame count the header promises."""

from __future__ import annotations

import struct
from pathlib import Path


def declared_frames(path: Path) -> int | None:
    """Frames promised by a RIFF/WAVE header's `data` chunk, or None for non-RIFF files.

    libsndfile quietly reads a cut-off file up to where its bytes end, so comparing this number with
    the frames it actually decodes is how a truncated WAV is caught.
    """
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = None
        while True:
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
            if cid == b"fmt ":
                fmt = fh.read(size + (size & 1))
                block_align = struct.unpack("<H", fmt[12:14])[0] if len(fmt) >= 14 else None
            elif cid == b"data":
                return size // block_align if block_align else None
            else:
                fh.seek(size + (size & 1), 1)
