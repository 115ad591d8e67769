"""A tokenised text file (repro.tokenfile) as a repro.kernel.realdata.Dataset (in-kernel
side): the corpus cut into non-overlapping windows of sequence_length + 1 tokens, each an input
sequence and the next token at every position, the last windows held out (tokenfile.held_out).
Accuracy is next-token top-1 accuracy over every held-out position. Ids are read as stored and
widened to int64, as the synthetic ones; nothing is shuffled inside a window.
"""

from __future__ import annotations

import hashlib

import numpy as np

from repro import tokenfile
from repro.errors import UserError
from repro.kernel.realdata import Dataset


def sha256(path) -> str:
    """The file's sha256 (what `sha256sum` prints), read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(2**20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def load(path: str, sequence_length: int, vocab_size: int) -> Dataset:
    """The file at `path` (checked again: it is read now) in windows of `sequence_length` + 1."""
    found, tokens = tokenfile.read(path, vocab_size)
    n = found.windows(sequence_length)
    if n < 2:
        raise UserError(
            f"data={path}: {found.tokens:,} tokens make {n} window(s) of {sequence_length + 1}"
        )
    windows = np.asarray(tokens[: n * (sequence_length + 1)], dtype=np.int64)
    windows = windows.reshape(n, sequence_length + 1)
    held = tokenfile.held_out(n)
    train, test = windows[:-held], windows[-held:]  # views: inputs and labels share the ids
    digest = sha256(found.path)
    info = {
        "format": found.format,
        "dtype": found.dtype,
        "tokens": found.tokens,
        "max_id": found.max_id,
        "sequence_length": sequence_length,
    }
    rows = {
        "format": f"{tokenfile.FORMATS[found.format]} ({found.format}, {found.dtype})",
        "tokens (largest id)": f"{found.tokens:,} ({found.max_id:,}, vocabulary {vocab_size:,})",
        "training / held-out sequences": f"{len(train):,} / {held:,} of {sequence_length} "
        "tokens (held out: the end of the file)",
        "sha256 of the file": digest,
    }
    return Dataset(train[:, :-1], train[:, 1:], test[:, :-1], test[:, 1:], digest, None, info, rows)
