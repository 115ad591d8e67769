"""Real data for mode=train-to-accuracy (in-kernel side): an image-folder tree decoded once into
memory, split into a fixed held-out set and a training set, and the order batches are drawn in.

Everything here is numpy and Pillow, before any framework sees it, so torch, TensorFlow and JAX
train on the very same arrays in the very same order: each image decoded, converted to RGB and
resized to the model's side (bilinear), scaled to [0, 1], then standardised per channel with the
training set's mean and std; no augmentation. The held-out split takes the same share of every
class (repro.imagefolder.HOLDOUT) with a fixed seed, whatever the run's seed; the run's seed
draws the training order, a fresh permutation each epoch, batches in it, the remainder dropped.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass

import numpy as np

from repro import imagefolder


class DataError(ValueError):
    """An image of the tree that cannot be decoded: the message is one line naming it."""


@dataclass(frozen=True)
class Dataset:
    classes: tuple[str, ...]
    train_x: np.ndarray  # (N, H, W, 3) float32, standardised
    train_y: np.ndarray  # (N,) int64, as the synthetic labels
    held_x: np.ndarray
    held_y: np.ndarray
    sha256: str  # over every file's path and bytes, in order: which data this was
    counts: tuple[int, ...]  # images per class

    def batches(self, batch_size: int, seed: int):
        """(x, y) numpy batches forever: each epoch a permutation of the training set drawn
        from (seed, epoch), cut into whole batches."""
        per_epoch = len(self.train_y) // batch_size
        for epoch in range(10**9):
            order = np.random.default_rng([seed, epoch]).permutation(len(self.train_y))
            for i in range(per_epoch):
                take = order[i * batch_size : (i + 1) * batch_size]
                yield self.train_x[take], self.train_y[take]

    def summary(self) -> dict:
        return {
            "classes": list(self.classes),
            "images_per_class": list(self.counts),
            "train": len(self.train_y),
            "held_out": len(self.held_y),
            "image_shape": list(self.train_x.shape[1:]),
            "sha256": self.sha256,
        }


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
    counts = tuple(folder.counts())
    return Dataset(folder.classes, x[~held], y[~held], x[held], y[held], digest.hexdigest(), counts)
