"""A tokenised text file (`data=PATH` for a causal language model): the corpus as one flat array
of token ids, as language-model training pipelines keep it. Two formats: a NumPy `.npy` file of
one integer dimension, and nanoGPT's `.bin` (raw little-endian uint16, what its prepare.py
scripts write). Shared: the driver checks the file before anything starts, the kernel reads it
with the same rules (repro.kernel.text), so both see the same tokens and the same split.

The split is contiguous, as language models are evaluated: the corpus is cut into
non-overlapping windows of sequence_length + 1 tokens (inputs, and the next token at every
position), the last HOLDOUT of the windows (at most MAX_HELD_OUT) is held out, and training
draws from the ones before it.

The file is someone else's data, so it is read as untrusted input: no link is followed, its size
is bounded (imagefolder's REPRO_DATA_MAX_MB), a `.npy` is parsed without pickles, every id must
be inside the model's vocabulary, and every problem is one line naming the fix.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from repro import imagefolder
from repro.errors import UserError

FORMATS = {".npy": "NumPy array", ".bin": "nanoGPT uint16"}
NPY_MAGIC = b"\x93NUMPY"
HOLDOUT = 0.1  # the share of windows, at the end of the corpus, held out
MAX_HELD_OUT = 1024  # windows: evaluating a held-out set costs its forward passes, every time


@dataclass(frozen=True)
class TokenFile:
    path: Path
    format: str  # a key of FORMATS
    dtype: str  # as stored, e.g. uint16
    tokens: int
    bytes: int
    max_id: int

    def windows(self, sequence_length: int) -> int:
        """Non-overlapping windows of sequence_length + 1 tokens (the remainder dropped)."""
        return self.tokens // (sequence_length + 1)


def held_out(windows: int) -> int:
    """Held-out windows of `windows` (>= 2): the last HOLDOUT, one at least, one left to train
    on at least, MAX_HELD_OUT at most."""
    return min(windows - 1, MAX_HELD_OUT, max(1, round(windows * HOLDOUT)))


def is_token_file(path: str | Path) -> bool:
    """Whether `path` names a token file by its suffix (an image-folder tree otherwise)."""
    return Path(path).suffix.lower() in FORMATS


def read(path: str | Path, vocab_size: int):
    """(TokenFile, the ids as a read-only numpy memmap) at `path`, checked, or UserError."""
    import numpy as np  # the kernels and the driver (scipy's) both have it

    where = f"data={path}"
    path = Path(path)
    try:
        info = os.lstat(path)
    except OSError:
        raise UserError(
            f"{where} does not exist: give a tokenised text file ({', '.join(FORMATS)})"
        ) from None
    if stat.S_ISLNK(info.st_mode):
        raise UserError(f"{where} is a link; copy what it points to instead")
    if not stat.S_ISREG(info.st_mode):
        raise UserError(f"{where} is not a regular file: give a tokenised text file")
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UserError(
            f"{where}: a tokenised text file ends in {' or '.join(FORMATS)} "
            "(`repro data pydoc DEST.npy` writes one)"
        )
    limit = imagefolder.max_bytes()
    if info.st_size > limit:
        raise UserError(
            f"{where} holds more than {limit / 2**20:.0f} MB; use a smaller file or raise "
            f"{imagefolder.MAX_BYTES_VARIABLE}"
        )
    try:
        tokens = mapped(path, suffix, info.st_size, np)
    except (OSError, ValueError, EOFError) as error:  # numpy's own words for a bad header
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"{where} cannot be read as a {FORMATS[suffix]} file: {reason}") from None
    if tokens.ndim != 1 or tokens.dtype.kind not in "iu" or not len(tokens):
        raise UserError(
            f"{where} holds an array of {tokens.dtype}, shape {tokens.shape}; a tokenised "
            "text file is one non-empty dimension of integer token ids"
        )
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise UserError(
            f"{where} holds token id {low if low < 0 else high}, outside the model's vocabulary "
            f"(0..{vocab_size - 1}); tokenise with at most {vocab_size} ids or pick a workload "
            "with a larger vocab_size"
        )
    found = TokenFile(path, suffix, str(tokens.dtype), len(tokens), info.st_size, high)
    return found, tokens


def mapped(path: Path, suffix: str, size: int, np):
    """The file's ids, memory-mapped: a `.npy` only once it starts as one (np.load would open a
    zip as an archive), with no pickles; a `.bin` as whole uint16s."""
    if suffix == ".bin":
        if size % 2:
            raise ValueError(f"{size:,} bytes is not a whole number of uint16 ids")
        return np.memmap(path, dtype="<u2", mode="r")
    with open(path, "rb") as f:
        if f.read(len(NPY_MAGIC)) != NPY_MAGIC:
            raise ValueError("it does not start as one")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def check(path: str | Path, vocab_size: int, sequence_length: int, batch_size: int) -> TokenFile:
    """The file at `path`, checked for a run: enough windows for one batch and a held-out set."""
    found, _ = read(path, vocab_size)
    windows = found.windows(sequence_length)
    train = windows - held_out(windows) if windows >= 2 else 0
    if train < batch_size:
        raise UserError(
            f"data={path}: {found.tokens:,} tokens make {windows:,} windows of "
            f"{sequence_length + 1} and leave {train:,} to train on, fewer than one batch "
            f"(batch_size={batch_size}); use a larger file, a smaller batch_size or "
            "sequence_length"
        )
    return found
