"""Private scratch folders (driver side): where a run's kernel keeps its connection file, its
sockets and its temporary files, and an embedded Ray cluster its session. One folder a use, on a
path short enough for Unix sockets whatever TMPDIR is (an AF_UNIX path ends at 107 bytes; Ray's
sockets add 64 characters to its folder, and macOS's TMPDIR, /var/folders/…, is 49 alone). The
folder goes when its use ends; one whose process was killed (SIGKILL) goes at the next start of
any repro that makes one: a folder is in use while a lock on its HELD file is held.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

PREFIX = "repro-scratch-"
HELD = "held"
MAX = 40  # characters of a scratch folder's path: Ray's longest socket path stays under 107
SHORT = "/tmp"  # where scratch goes when TMPDIR is too long for that


def root() -> Path:
    """TMPDIR, unless a scratch folder there would be longer than MAX."""
    tmp = tempfile.gettempdir()
    return Path(tmp if len(os.fsencode(tmp)) + len(PREFIX) + 9 <= MAX else SHORT)


def sweep_stale(where: Path) -> None:
    """Remove the scratch folders in `where` that no live process holds."""
    for folder in where.glob(f"{PREFIX}*"):
        try:
            with open(folder / HELD) as held:  # not ours, not made yet, or gone: skipped
                fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held: in use
                shutil.rmtree(folder, ignore_errors=True)
        except OSError:
            continue


@contextlib.contextmanager
def scratch() -> Iterator[Path]:
    """A new private folder (mode 0700), held and then removed."""
    where = root()
    sweep_stale(where)
    folder = Path(tempfile.mkdtemp(prefix=PREFIX, dir=where))
    try:
        with open(folder / f".{HELD}", "w") as held:
            fcntl.flock(held, fcntl.LOCK_EX)
            os.rename(folder / f".{HELD}", folder / HELD)  # only a held lock is ever seen
            yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
