"""Run folders on disk (driver side): where they go, and writing into them so that no file is
ever half-written and MANIFEST.sha256, written last, hashes them all. Used by every command
that leaves a folder: run, rerun, compare."""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path

import nbformat
from nbconvert import HTMLExporter

from repro.driver import integrity
from repro.driver.integrity import MANIFEST, manifest_lines
from repro.errors import UserError

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


def new_folder(runs_dir: Path, label: str) -> Path:
    """<runs_dir>/<UTC time>_<label>_<short id>/, created here and never reused."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    folder = Path(runs_dir) / f"{stamp}_{label}_{secrets.token_hex(3)}"
    try:
        folder.mkdir(parents=True, exist_ok=False)
    except OSError as error:  # what check_runs_dir could not rule out (a read-only file system)
        raise UserError(f"cannot create a run folder in {runs_dir}: {error.strerror}") from None
    return folder


def seal(notebook, folder: Path, html: bool = True, **meta) -> None:
    """Record `meta` and the integrity hashes in the notebook's metadata, then write it as the
    self-contained `report.html` (with `html`) and, last, as `folder/report.ipynb`: a report
    that is written is whole, or report.ipynb is still what it was."""
    notebook.metadata["repro"] = {**meta, "integrity": integrity.seal(meta, notebook)}
    if html:
        exporter = HTMLExporter(embed_images=True, template_file=str(HTML_TEMPLATE))
        write(folder / "report.html", exporter.from_notebook_node(notebook)[0])
    write(folder / "report.ipynb", notebook_text(notebook))


def notebook_text(notebook) -> str:
    """The notebook as Jupyter's server saves it (nbformat.write: indent 1, sorted keys, a final
    newline), so that opening and saving a report with no edit keeps its bytes."""
    return nbformat.writes(notebook) + "\n"


def write_manifest(run_dir: Path) -> None:
    """`sha256sum -c`-compatible hashes of every file in the run folder."""
    write(run_dir / MANIFEST, "\n".join(manifest_lines(run_dir)) + "\n")
