"""Integrity of a report: hashes embedded in the notebook, the run folder's manifest, bundles.

`finalize` embeds a sha256 of every cell (its source and outputs) in the notebook's metadata and
writes MANIFEST.sha256 over the folder; `check()` recomputes both and names whatever differs.
These hashes catch edits made after the run (a number typed over, a plot swapped, a file
changed); they are not a signature against someone who rewrites the hashes too.
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from pathlib import Path

import nbformat

from repro.errors import UserError
from repro.lockfile import sha256

MANIFEST = "MANIFEST.sha256"


def cell_hashes(notebook) -> list[str]:
    """sha256 of each cell's source and outputs, as canonical JSON."""
    return [
        hashlib.sha256(
            json.dumps(
                {"source": c.source, "outputs": c.get("outputs", [])}, sort_keys=True
            ).encode()
        ).hexdigest()
        for c in notebook.cells
    ]


def json_sha256(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def notebook_problems(notebook) -> list[str]:
    """Cells whose source or outputs changed since the run, by index and first line, and a
    changed rerun record (the code, lock and parameters a rerun would use)."""
    meta = notebook.metadata.get("repro", {})
    recorded = meta.get("integrity", {}).get("cells")
    if recorded is None:
        return ["the notebook carries no integrity hashes (not a finalised repro report)"]
    problems = []
    if json_sha256(meta.get("rerun")) != meta["integrity"].get("rerun"):
        problems.append("the rerun record (code, lock, parameters) changed")
    current = cell_hashes(notebook)
    if len(current) != len(recorded):
        return [
            *problems,
            f"cells were added or removed ({len(recorded)} recorded, {len(current)} now)",
        ]
    return problems + [
        f"cell {i} changed: {first_line(notebook.cells[i].source)}"
        for i, (a, b) in enumerate(zip(recorded, current, strict=True))
        if a != b
    ]


def first_line(source: str) -> str:
    lines = source.strip().splitlines()
    return lines[0][:60] if lines else "(empty)"


def manifest_lines(folder: Path) -> list[str]:
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST)
    return [f"{sha256(p).hexdigest()}  {p.relative_to(folder).as_posix()}" for p in files]


def folder_problems(folder: Path) -> list[str]:
    """Files that differ from the run folder's MANIFEST.sha256, plus the report's cells."""
    manifest = folder / MANIFEST
    if not manifest.is_file():
        unfinished = not (folder / "metrics.json").is_file()  # the driver was killed (SIGKILL)
        return [
            f"{folder} is an unfinished run: no metrics.json"
            if unfinished
            else f"no {MANIFEST} in {folder}"
        ]
    recorded = dict(reversed(line.split("  ", 1)) for line in manifest.read_text().splitlines())
    current = dict(reversed(line.split("  ", 1)) for line in manifest_lines(folder))
    problems = [
        f"{name} was modified"
        for name in sorted(recorded)
        if name in current and current[name] != recorded[name]
    ]
    problems += [f"{name} is missing" for name in sorted(set(recorded) - set(current))]
    problems += [f"{name} is not in the manifest" for name in sorted(set(current) - set(recorded))]
    report = folder / "report.ipynb"
    if report.is_file():
        problems += notebook_problems(nbformat.read(report, as_version=4))
    return problems


def check(path: str | Path) -> list[str]:
    """Everything that differs from what the run recorded: a run folder, a bundle (.tar.gz) or
    a report notebook on its own. An empty list means intact."""
    path = Path(path)
    if path.is_dir():
        return folder_problems(path)
    if path.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = unpack(path, Path(tmp))
            return folder_problems(folder)
    if path.suffix == ".ipynb":
        return notebook_problems(nbformat.read(path, as_version=4))
    raise UserError(f"cannot verify {path}: give a run folder, a .tar.gz bundle or a report.ipynb")


def bundle(folder: str | Path, output: str | Path | None = None) -> Path:
    """Pack a run folder into one .tar.gz that `verify` (and later `rerun`) accept."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise UserError(f"{folder} is not a finalised run folder (no {MANIFEST})")
    output = Path(output) if output else folder.with_name(f"{folder.name}.tar.gz")
    if output.exists():
        raise UserError(f"{output} exists already; choose another path with -o")
    with tarfile.open(output, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return output


def unpack(archive: Path, into: Path) -> Path:
    """Extract a bundle safely (no absolute paths or links out); return its run folder."""
    with tarfile.open(archive) as tar:
        tar.extractall(into, filter="data")
    folders = [p for p in into.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise UserError(f"{archive} does not hold exactly one run folder")
    return folders[0]
