"""Run folders on disk (driver side): where they go, and writing into them so that no file is
ever half-written and MANIFEST.sha256, written last, hashes them all. Used by every command
that leaves a folder: run, rerun, compare."""

from __future__ import annotations

import os
import secrets
import shutil
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from repro.bounds import setting
from repro.driver import integrity
from repro.driver.integrity import MANIFEST, manifest_lines
from repro.errors import UserError, option

HTML_TEMPLATE = Path(__file__).with_name("html") / "repro.html.j2"  # offline, images embedded


def write(path: Path, content: str | bytes) -> None:
    """Write via a temporary file and rename, so no file is ever half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_bytes(content.encode() if isinstance(content, str) else content)
        os.replace(tmp, path)
    except BaseException:  # a full disk, an interrupt: no half-written file, no stray temp
        tmp.unlink(missing_ok=True)
        raise


MIN_FREE_VARIABLE = "REPRO_MIN_FREE_MB"  # free space a run needs (default 200 MB)


def check_runs_dir(runs_dir: Path) -> None:
    """UserError unless run folders can be written under `runs_dir` (created later if missing)
    and its disk has room for a report."""
    existing = Path(runs_dir).absolute()
    while not existing.exists():
        existing = existing.parent
    fix = f"choose another with {option('--runs-dir')}"
    if not existing.is_dir():
        raise UserError(f"cannot create the runs directory {runs_dir}: {existing} is a file; {fix}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UserError(f"the runs directory {runs_dir} is not writable ({existing}); {fix}")
    need = setting(MIN_FREE_VARIABLE) * 1e6
    free = shutil.disk_usage(existing).free
    if free < need:
        raise UserError(
            f"only {free / 1e6:.0f} MB free for {runs_dir}, a run needs {need / 1e6:.0f} MB "
            f"({MIN_FREE_VARIABLE}); free some space or {fix}"
        )


def new_folder(runs_dir: Path, label: str) -> Path:
    """<runs_dir>/<UTC time>_<label>_<short id>/, created here and never reused."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(runs_dir) / f"{stamp}_{label}_{secrets.token_hex(3)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as error:  # what check_runs_dir could not rule out (a read-only file system)
        raise UserError(f"cannot create a run folder in {runs_dir}: {error.strerror}") from None
    return folder


def seal(notebook, folder: Path, **meta) -> None:
    """Record `meta` and the integrity hashes in the notebook's metadata, then write it as
    `folder/report.ipynb` and as the self-contained `report.html`."""
    notebook.metadata["repro"] = {**meta, "integrity": integrity.seal(meta, notebook)}
    write(folder / "report.ipynb", notebook_text(notebook))
    exporter = HTMLExporter(embed_images=True, template_file=str(HTML_TEMPLATE))
    html, _ = exporter.from_notebook_node(notebook)
    write(folder / "report.html", html)


def notebook_text(notebook) -> str:
    """The notebook as Jupyter's server saves it (nbformat.write: indent 1, sorted keys, a final
    newline), so that opening and saving a report with no edit keeps its bytes."""
    return nbformat.writes(notebook) + "\n"


def write_manifest(run_dir: Path) -> None:
    """`sha256sum -c`-compatible hashes of every file in the run folder."""
    write(run_dir / MANIFEST, "\n".join(manifest_lines(run_dir)) + "\n")
