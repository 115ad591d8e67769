"""mode=train-to-accuracy, checked before anything starts (driver side): DAWNBench's
time-to-accuracy on a real image-folder tree (`data=PATH`, repro.imagefolder), run by
templates/train-to-accuracy.ipynb (repro.kernel.accuracy measures it).

Why a mode and not a task: in repro a workload's `task` names its family of inputs and
outputs (image classification, a language model) and picks its template's prose, while `mode`
says what a run measures (inference steps, training steps). Time to accuracy is a third thing to
measure on the same image workloads, so it is `mode=train-to-accuracy`.
"""

from __future__ import annotations

from pathlib import Path

from repro import imagefolder
from repro.errors import UserError
from repro.kernel import models
from repro.paths import TEMPLATES

TRAIN_TO_ACCURACY = "train-to-accuracy"
TEMPLATE = TEMPLATES / "train-to-accuracy.ipynb"
ONLY_HERE = ("data", "target_accuracy", "eval_every", "max_steps", "max_seconds")
MAX_DECODED_BYTES = 4 * 2**30  # the decoded float32 images (the kernel briefly holds ~3 copies)


def check(spec: dict, resolved: dict) -> None:
    """UserError (one line) unless a train-to-accuracy request can run; records `data` as an
    absolute path (the notebook runs in its run folder). (Other modes record its parameters,
    ONLY_HERE, as null: repro.driver.plan.ONLY_IN.)"""
    if resolved["mode"] != TRAIN_TO_ACCURACY:
        return
    if spec["task"] != "image-classification":
        raise UserError(
            f"mode={TRAIN_TO_ACCURACY} trains image classifiers on an image-folder tree; "
            f"{spec['name']} is a {spec['task']} workload"
        )
    if not resolved["data"]:
        raise UserError(
            f"mode={TRAIN_TO_ACCURACY} needs data=PATH, a folder of class folders of images "
            "(`repro data digits DEST` writes one)"
        )
    if resolved["devices"] > 1:
        raise UserError(f"mode={TRAIN_TO_ACCURACY} trains on one device; use devices=1")
    path = Path(resolved["data"]).expanduser().absolute()
    folder = imagefolder.scan(path)
    train = len(folder.files) - folder.held_out()
    if train < resolved["batch_size"]:
        raise UserError(
            f"data={resolved['data']} leaves {train} training images, fewer than one batch "
            f"(batch_size={resolved['batch_size']}); use a smaller batch_size"
        )
    side = models.config(spec["model"]).image_size
    decoded = len(folder.files) * side * side * 3 * 4
    if decoded > MAX_DECODED_BYTES:
        raise UserError(
            f"data={resolved['data']}: {len(folder.files):,} images at {side}x{side} take "
            f"{decoded / 2**30:.1f} GiB decoded, more than {MAX_DECODED_BYTES / 2**30:.0f}; "
            "use a smaller tree"
        )
    resolved["data"] = str(path)
