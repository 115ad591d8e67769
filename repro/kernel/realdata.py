"""Real data for mode=train-to-accuracy (in-kernel side): what `data=PATH` names, loaded once
into memory as numpy arrays before any framework sees them, so torch, TensorFlow and JAX train on
the very same arrays in the very same order. An image-folder tree for an image classifier
(repro.kernel.images), a tokenised text file for a causal language model (repro.kernel.text).

The held-out split is fixed whatever the run's seed; the run's seed draws the training order, a
fresh permutation each epoch, batches in it, the remainder dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    train_x: np.ndarray  # as the synthetic inputs: images (N, H, W, 3) float32, ids (N, T) int64
    train_y: np.ndarray  # as the synthetic labels: classes (N,), next ids (N, T), int64
    held_x: np.ndarray
    held_y: np.ndarray
    sha256: str  # which data this was (each loader says over what)
    classes: tuple[str, ...] | None  # an image tree's class names; None: the next token
    info: dict  # what metrics.json records about it, beside train, held_out and sha256
    rows: dict  # the report's table of it, after the path

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
        sizes = {"train": len(self.train_y), "held_out": len(self.held_y)}
        return {**self.info, **sizes, "sha256": self.sha256}


def load(path: str, cfg) -> Dataset:
    """The data at `path` for the model config `cfg`: a token file for a causal language
    model, an image-folder tree otherwise (the driver checked which applies)."""
    if cfg.task == "causal-lm":
        from repro.kernel import text

        return text.load(path, cfg.sequence_length, cfg.vocab_size)
    from repro.kernel import images

    return images.load(path, cfg.image_size)
