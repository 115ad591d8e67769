"""Small real data sets written out in the formats mode=train-to-accuracy reads (driver side):
`repro data digits DEST` (an image-folder tree), `repro data pydoc DEST.npy` (a token file).

The digits are scikit-learn's bundled handwritten digits (1,797 images of 8x8 pixels, 17 grey
levels, 10 classes; the UCI optdigits test set), read from the `digits.csv.gz` that ships inside
the scikit-learn wheel: nothing is downloaded at run time, and scikit-learn is never imported
(its file is found, checked against the sha256 below and parsed with the standard library).
scikit-learn is the `data` extra (`pip install -e '.[data]'`; make test installs it).

The text is Python's own: the documentation topics `help()` shows (the `pydoc_data` package,
~465,000 characters of English prose and code, in every CPython, so again nothing is downloaded),
tokenised byte-level (its UTF-8 bytes, 256 ids: within every GPT preset's vocabulary, and no
tokenizer to pin) and saved as a one-dimensional uint16 `.npy`. It changes with the Python
version that writes it; the report records the file's sha256.
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


def new(dest: str | Path) -> tuple[Path, Path]:
    """(DEST, where to write it first) for a data set that must not exist yet: it is written
    beside DEST and renamed into place, so it is whole or absent."""
    dest = Path(dest)
    if dest.exists() or dest.is_symlink():
        raise UserError(f"{dest} already exists; give a new path (nothing is overwritten)")
    if not dest.parent.is_dir():
        raise UserError(f"{dest.parent} is not a directory; create it first")
    partial = dest.with_name(f".{dest.name}.partial")
    remove(partial)
    return dest, partial


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def written(write, dest: str | Path):
    """`write(partial)`'s result once what it wrote is renamed to DEST; nothing left if not."""
    dest, partial = new(dest)
    try:
        result = write(partial)
        os.rename(partial, dest)
    except OSError as error:
        remove(partial)
        raise UserError(f"cannot write {dest}: {error.strerror}") from None
    except BaseException:
        remove(partial)
        raise
    return result


def write_digits(dest: str | Path) -> int:
    """Write the digits as DEST/<label>/<index>.png; return how many."""

    def write(partial: Path) -> int:
        images = digits()
        for index, (pixels, label) in enumerate(images):
            folder = partial / str(label)
            folder.mkdir(parents=True, exist_ok=True)
            (folder / f"{index:04d}.png").write_bytes(png(pixels, DIGITS_SIDE))
        return len(images)

    return written(write, dest)


def pydoc_text() -> str:
    """Python's documentation topics, in the order of their names."""
    from pydoc_data.topics import topics

    return "\n\n".join(topics[name] for name in sorted(topics))


def write_pydoc(dest: str | Path) -> int:
    """Write the topics' UTF-8 bytes as a uint16 .npy of token ids at DEST; return how many."""
    if Path(dest).suffix != ".npy":
        raise UserError(f"{dest}: give a path ending in .npy (a NumPy array of token ids)")

    def write(partial: Path) -> int:
        import numpy as np  # scipy's

        tokens = np.frombuffer(pydoc_text().encode(), dtype=np.uint8).astype(np.uint16)
        with open(partial, "wb") as f:  # a file object: np.save would append .npy to a name
            np.save(f, tokens, allow_pickle=False)
        return len(tokens)

    return written(write, dest)


WRITERS = {  # `repro data NAME DEST`: what it writes, and how
    "digits": ("images", write_digits, "scikit-learn's 8x8 digits, an image-folder tree"),
    "pydoc": ("tokens", write_pydoc, "Python's documentation topics, byte-level tokens (.npy)"),
}
