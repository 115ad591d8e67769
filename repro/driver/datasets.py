"""Small real data sets written out as image-folder trees (driver side): `repro data digits DEST`.

The digits are scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, 17 grey
levels, 10 classes; the UCI optdigits test set), read from the `digits.csv.gz` that ships inside
the scikit-learn wheel: nothing is downloaded at run time, and scikit-learn is never imported
(its file is found, checked against the sha256 below and parsed with the standard library).
scikit-learn is the `data` extra (`pip install -e '.[data]'`; make test installs it).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import importlib.util
import io
import os
import shutil
import struct
import zlib
from pathlib import Path

from repro.errors import UserError

DIGITS_SHA256 = "09f66e6debdee2cd2b5ae59e0d6abbb73fc2b0e0185d2e1957e9ebb51e23aa22"
DIGITS_SIDE, DIGITS_LEVELS = 8, 16  # 8x8 pixels, values 0..16


def digits_file() -> Path:
    """scikit-learn's digits.csv.gz, found without importing scikit-learn, or UserError."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or not spec.origin:
        raise UserError(
            "the digits come from scikit-learn's wheel, which is not installed: "
            "pip install -e '.[data]' (make test installs it)"
        )
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz"
    if not path.is_file() or hashlib.sha256(path.read_bytes()).hexdigest() != DIGITS_SHA256:
        raise UserError(f"{path} is missing or not the digits file this repro knows (sha256)")
    return path


def digits() -> list[tuple[bytes, int]]:
    """(8x8 grey pixels scaled to 0..255, label) for each of the 1,797 digits, in file order."""
    text = gzip.decompress(digits_file().read_bytes()).decode()
    rows = []
    for row in csv.reader(io.StringIO(text)):
        values = [int(float(v)) for v in row]
        pixels = bytes(round(v * 255 / DIGITS_LEVELS) for v in values[:-1])
        rows.append((pixels, values[-1]))
    return rows


def png(pixels: bytes, side: int) -> bytes:
    """A greyscale 8-bit PNG of a `side` x `side` image (each row: filter byte 0, then pixels)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\0" + pixels[i : i + side] for i in range(0, side * side, side))
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 9))
        + chunk(b"IEND", b"")
    )


def write_digits(dest: str | Path) -> int:
    """Write the digits as DEST/<label>/<index>.png; return how many. DEST must not exist yet:
    the tree is written beside it and renamed into place, so it is whole or absent."""
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise UserError(f"{dest} already exists; give a new folder (nothing is overwritten)")
    if not dest.parent.is_dir():
        raise UserError(f"{dest.parent} is not a directory; create it first")
    images = digits()
    partial = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    try:
        for index, (pixels, label) in enumerate(images):
            folder = partial / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:04d}.png").write_bytes(png(pixels, DIGITS_SIDE))
        os.rename(partial, dest)
    except OSError as error:
        shutil.rmtree(partial, ignore_errors=True)
        raise UserError(f"cannot write {dest}: {error.strerror}") from None
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return len(images)
