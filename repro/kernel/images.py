"""An image-folder tree as a repro.kernel.realdata.Dataset (in-kernel side), decoded once
into memory and split into a fixed held-out set and a training set.

Everything here is numpy and Pillow: each image decoded, converted to RGB and resized to the
model's side (bilinear), scaled to [0, 1], then standardised per channel with the training set's
mean and std; no augmentation. The held-out split takes the same share of every class
(repro.imagefolder.HOLDOUT) with a fixed seed, whatever the run's seed.
"""

from __future__ import annotations

import hashlib
import io

import numpy as np

from repro import imagefolder
from repro.kernel.realdata import Dataset


class DataError(ValueError):
    """An image of the tree that cannot be decoded: the message is one line naming it."""


def decode(content: bytes, relative: str, side: int) -> np.ndarray:
    """One image file's bytes as (side, side, 3) uint8, or DataError naming it."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(content)) as image:
            rgb = image.convert("RGB").resize((side, side), Image.BILINEAR)
            return np.asarray(rgb, dtype=np.uint8)
    except (OSError, ValueError, Image.DecompressionBombError) as error:
        raise DataError(f"data: {relative} cannot be decoded as an image: {error}") from None


def split(labels: np.ndarray) -> np.ndarray:
    """A boolean mask of the held-out images: imagefolder.held_out(n) of each class of n,
    drawn with the fixed SPLIT_SEED."""
    rng = np.random.default_rng(imagefolder.SPLIT_SEED)
    held = np.zeros(len(labels), dtype=bool)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        held[rng.permutation(members)[: imagefolder.held_out(len(members))]] = True
    return held


def load(path: str, side: int) -> Dataset:
    """The tree at `path` (checked again: it is read now), decoded at `side` x `side`."""
    folder = imagefolder.scan(path)
    digest = hashlib.sha256()
    images = []
    for relative, _ in folder.files:
        content = (folder.root / relative).read_bytes()
        digest.update(relative.encode() + b"\0" + content)
        images.append(decode(content, relative, side))
    x = np.stack(images).astype(np.float32) / 255
    y = np.asarray([label for _, label in folder.files], dtype=np.int64)
    held = split(y)
    mean = x[~held].mean(axis=(0, 1, 2))
    std = x[~held].std(axis=(0, 1, 2)) + 1e-6
    x = (x - mean) / std
    counts = folder.counts()
    info = {
        "classes": list(folder.classes),
        "images_per_class": counts,
        "image_shape": list(x.shape[1:]),
    }
    each = ", ".join(f"{c}: {n}" for c, n in zip(folder.classes, counts, strict=True))
    rows = {
        "classes (images each)": f"{len(folder.classes)} ({each})",
        "training / held-out images": f"{int((~held).sum()):,} / {int(held.sum()):,}",
        "image shape after resizing": " × ".join(map(str, x.shape[1:])),
        "sha256 over every file's path and bytes": digest.hexdigest(),
    }
    return Dataset(
        x[~held], y[~held], x[held], y[held], digest.hexdigest(), folder.classes, info, rows
    )
