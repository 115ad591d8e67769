"""An image-folder tree (`data=PATH`): one subfolder per class, named after it, holding that
class's image files, as torchvision's ImageFolder reads it. Shared: the driver checks a tree
before anything starts, the kernel reads the same listing before decoding it
(repro.kernel.images), so both see the same classes, files and held-out split.

The tree is someone else's data, so it is read as untrusted input: nothing is followed through
a link, sizes and counts are bounded, every file must start as the image its name says, and
every problem is one line naming the file and the fix.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path

from repro.bounds import setting
from repro.errors import UserError

MAX_BYTES_VARIABLE = "REPRO_DATA_MAX_MB"  # the most a tree may hold on disk (default 2048 MB)
MAX_FILES = 2_000_000
HOLDOUT = 0.2  # the share of each class held out to measure accuracy on
SPLIT_SEED = 0  # fixed: the held-out images do not change with a run's seed
MAGIC = {  # how each image format starts (Pillow decodes them all)
    ".png": (b"\x89PNG\r\n\x1a\n",),
    ".jpg": (b"\xff\xd8\xff",),
    ".jpeg": (b"\xff\xd8\xff",),
    ".bmp": (b"BM",),
    ".gif": (b"GIF87a", b"GIF89a"),
    ".ppm": (b"P6", b"P3"),
    ".pgm": (b"P5", b"P2"),
}


@dataclass(frozen=True)
class ImageFolder:
    root: Path
    classes: tuple[str, ...]  # sorted: class i is the i-th folder name
    files: tuple[tuple[str, int], ...]  # (path relative to root, class index), sorted
    bytes: int  # every image file's size, summed (hidden files and top-level files are skipped)

    def counts(self) -> list[int]:
        """Images per class."""
        counts = [0] * len(self.classes)
        for _, label in self.files:
            counts[label] += 1
        return counts

    def held_out(self) -> int:
        """How many images the held-out split takes: HOLDOUT of each class, at least one."""
        return sum(held_out(n) for n in self.counts())


def held_out(n: int) -> int:
    """Held-out images of a class of `n` (n >= 2): one at least, one left to train on at least."""
    return min(n - 1, max(1, round(n * HOLDOUT)))


def max_bytes() -> int:
    return int(setting(MAX_BYTES_VARIABLE) * 2**20)


def scan(path: str | Path, *, check_headers: bool = True) -> ImageFolder:
    """The tree at `path`, listed and checked, or UserError (one line) saying what to fix."""
    root = Path(path)
    where = f"data={path}"
    if not root.is_dir():
        raise UserError(f"{where} is not a directory: give a folder of class subfolders of images")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"{where} is not readable")
    try:
        entries = sorted(os.scandir(root), key=lambda e: e.name)
    except OSError as error:
        raise UserError(f"{where} cannot be listed: {error.strerror}") from None
    classes = [e for e in entries if not e.name.startswith(".") and e.is_dir(follow_symlinks=False)]
    links = [e for e in entries if e.is_symlink()]
    if links:
        raise UserError(f"{where}: {links[0].name} is a link; copy what it points to instead")
    if len(classes) < 2:
        raise UserError(
            f"{where} has {len(classes)} class folder(s); an image-folder tree needs 2 or more"
        )
    files, size, limit = [], 0, max_bytes()
    for label, folder in enumerate(classes):
        found = list_class(root, folder.name, label, check_headers)
        if len(found[0]) < 2:
            raise UserError(
                f"{where}: class {folder.name!r} has {len(found[0])} image(s); each class needs 2 "
                "or more (one held out to measure accuracy)"
            )
        files += found[0]
        size += found[1]
        if size > limit or len(files) > MAX_FILES:
            raise UserError(
                f"{where} holds more than {limit / 2**20:.0f} MB or {MAX_FILES:,} images; "
                f"use a smaller tree or raise {MAX_BYTES_VARIABLE}"
            )
    return ImageFolder(root, tuple(c.name for c in classes), tuple(files), size)


def list_class(root: Path, name: str, label: int, check_headers: bool):
    """(files, bytes) of one class folder, hidden files skipped, or UserError."""
    files, size = [], 0
    for entry in sorted(os.scandir(root / name), key=lambda e: e.name):
        relative = f"{name}/{entry.name}"
        if entry.name.startswith("."):
            continue
        info = entry.stat(follow_symlinks=False)
        if not stat.S_ISREG(info.st_mode):
            what = "a link" if entry.is_symlink() else "not a regular file"
            raise UserError(f"data: {relative} is {what}; a class folder holds image files only")
        suffix = Path(entry.name).suffix.lower()
        if suffix not in MAGIC:
            raise UserError(
                f"data: {relative} is not an image file ({', '.join(MAGIC)}); remove it"
            )
        if check_headers:
            check_header(root / relative, relative, suffix)
        files.append((relative, label))
        size += info.st_size
    return files, size


def check_header(path: Path, relative: str, suffix: str) -> None:
    """UserError unless the file starts as its suffix says (a cheap check; the kernel decodes)."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as error:
        raise UserError(f"data: {relative} cannot be read: {error.strerror}") from None
    if not head.startswith(MAGIC[suffix]):
        raise UserError(f"data: {relative} is not a {suffix[1:].upper()} image (its first bytes)")
