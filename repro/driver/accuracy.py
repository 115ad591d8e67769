"""mode=train-to-accuracy, checked before anything starts (driver side): DAWNBench's
time-to-accuracy on real data (`data=PATH`): an image-folder tree for an image classifier
(repro.imagefolder), a tokenised text file for a causal language model (repro.tokenfile); run by
templates/train-to-accuracy.ipynb (repro.kernel.accuracy measures it).

Why a mode and not a task: in repro a workload's `task` names its family of inputs and
outputs (image classification, a language model) and picks its template's prose, while `mode`
says what a run measures (inference steps, training steps). Time to accuracy is a third thing to
measure on the same workloads, so it is `mode=train-to-accuracy`.
"""

from __future__ import annotations

from pathlib import Path

from repro import imagefolder, tokenfile
from repro.errors import UserError
from repro.kernel import models
from repro.paths import TEMPLATES

TRAIN_TO_ACCURACY = "train-to-accuracy"
TEMPLATE = TEMPLATES / "train-to-accuracy.ipynb"
ONLY_HERE = ("data", "target_accuracy", "eval_every", "max_steps", "max_seconds")
MAX_DECODED_BYTES = 4 * 2**30  # float32 images (the kernel briefly holds ~3 copies), int64 ids
DATA = {  # the task that trains on each kind of data, and how to make some
    "image-classification": "an image-folder tree (`repro data digits DEST` writes one)",
    "causal-lm": "a tokenised text file, .npy or nanoGPT .bin (`repro data pydoc DEST.npy`)",
}


def check(spec: dict, resolved: dict) -> None:
    """UserError (one line) unless a train-to-accuracy request can run; records `data` as an
    absolute path (the notebook runs in its run folder). (Other modes record its parameters,
    ONLY_HERE, as null: repro.driver.plan.ONLY_IN.)"""
    if resolved["mode"] != TRAIN_TO_ACCURACY:
        return
    task = spec["task"]
    if task not in DATA:
        raise UserError(
            f"mode={TRAIN_TO_ACCURACY} trains image classifiers and causal language models; "
            f"{spec['name']} is a {task} workload, whose data would need labels repro does not read"
        )
    if not resolved["data"]:
        raise UserError(f"mode={TRAIN_TO_ACCURACY} needs data=PATH, {DATA[task]}")
    if resolved["devices"] > 1:
        raise UserError(f"mode={TRAIN_TO_ACCURACY} trains on one device; use devices=1")
    path = Path(resolved["data"]).expanduser().absolute()
    cfg = models.config(spec["model"])
    if task == "causal-lm":
        found = tokenfile.check(path, cfg.vocab_size, cfg.sequence_length, resolved["batch_size"])
        decoded, what = found.tokens * 8, f"{found.tokens:,} tokens"
    else:
        decoded, what = images(path, resolved, cfg.image_size)
    if decoded > MAX_DECODED_BYTES:
        raise UserError(
            f"data={resolved['data']}: {what} take {decoded / 2**30:.1f} GiB in memory, more "
            f"than {MAX_DECODED_BYTES / 2**30:.0f}; use less data"
        )
    resolved["data"] = str(path)


def images(path: Path, resolved: dict, side: int) -> tuple[int, str]:
    """(decoded bytes, what they are) of the image-folder tree at `path`, or UserError."""
    if tokenfile.is_token_file(path):
        raise UserError(
            f"data={resolved['data']} is a token file; an image workload trains on "
            f"{DATA['image-classification']}"
        )
    folder = imagefolder.scan(path)
    train = len(folder.files) - folder.held_out()
    if train < resolved["batch_size"]:
        raise UserError(
            f"data={resolved['data']} leaves {train} training images, fewer than one batch "
            f"(batch_size={resolved['batch_size']}); use a smaller batch_size"
        )
    return len(folder.files) * side * side * 3 * 4, f"{len(folder.files):,} images at {side}x{side}"
