"""Integrity of a report: hashes embedded in the notebook, the run folder's manifest, bundles.

`finalize` embeds a sha256 of every cell (its source and outputs) in the notebook's metadata and
writes MANIFEST.sha256 over the folder; `check()` recomputes both and names whatever differs.
These hashes catch edits made after the run (a number typed over, a plot swapped, a file
changed); they are not a signature against someone who rewrites the hashes too.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tarfile
import tempfile
import zlib
from pathlib import Path

import nbformat

from repro.driver import snapshot
from repro.errors import UserError, brief
from repro.lockfile import sha256
from repro.paths import outside_records

MANIFEST = "MANIFEST.sha256"
# Where Jupyter keeps a notebook's checkpoints, beside it unless told otherwise (`make lab` keeps
# them under .jupyter/): never part of a run, so no manifest, verify or bundle sees one.
CHECKPOINTS = ".ipynb_checkpoints"
# What reading a file that is not a notebook raises: not JSON, not a mapping, a bad nbformat
# version, the schema (ValidationError), bytes that are not UTF-8 (a ValueError), I/O.
NOT_A_NOTEBOOK = (
    OSError,
    ValueError,
    TypeError,
    KeyError,
    AttributeError,
    nbformat.ValidationError,
)
# What opening a .tar.gz that is not a bundle raises: bad or truncated gzip or tar, and members
# the "data" extraction filter refuses (absolute paths, `..`, links out): tarfile.FilterError.
NOT_A_BUNDLE = (tarfile.TarError, EOFError, zlib.error, OSError)


def read_notebook(path: str | Path, what: str = "notebook"):
    """The notebook at `path`, read and validated against nbformat's schema, or UserError."""
    try:
        notebook = nbformat.read(path, as_version=4)
        nbformat.validate(notebook)
    except NOT_A_NOTEBOOK as error:
        raise UserError(f"cannot read {what} {path} as a notebook: {brief(error)}") from None
    return notebook


VERSION = 2  # 1: plain JSON; 2: canonical JSON that a save by JupyterLab or nbformat keeps


def canonical(value):
    """`value` as JSON that a round trip through JavaScript (JupyterLab) leaves unchanged:
    JavaScript has one number type, so an integral float such as 1.0 is saved as 1."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    if isinstance(value, dict):
        return {k: canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    return value


def terminal_text(text: str) -> str:
    """Stream text as a terminal, and JupyterLab, show it: backspaces and carriage returns
    applied (Lab stores stream outputs this way when it saves)."""
    while (shorter := re.sub(r"[^\n]\x08", "", text)) != text:
        text = shorter
    lines = []
    for line in re.sub(r"\r+\n", "\n", text).split("\n"):
        shown = ""
        for part in line.split("\r"):
            shown = part + shown[len(part) :]
        lines.append(shown)
    return "\n".join(lines)


BASE64 = {"image/png", "image/jpeg", "image/gif", "application/pdf"}  # no line breaks kept


def canonical_outputs(outputs: list) -> list:
    """A cell's outputs as JupyterLab keeps them when it saves: consecutive outputs of one stream
    merged, no execution counts or transient data, base64 images without line breaks."""
    kept: list[dict] = []
    for output in outputs:
        out = {k: v for k, v in output.items() if k not in ("execution_count", "transient")}
        if not out.get("metadata"):
            out.pop("metadata", None)
        if out.get("output_type") == "stream":
            last = kept[-1] if kept else {}
            if last.get("output_type") == "stream" and last.get("name") == out.get("name"):
                last["text"] += out.get("text", "")
                continue
            out["text"] = out.get("text", "")
        elif isinstance(out.get("data"), dict):
            out["data"] = {
                mime: "".join(v.split()) if mime in BASE64 and isinstance(v, str) else v
                for mime, v in out["data"].items()
            }
        kept.append(out)
    for out in kept:
        if out.get("output_type") == "stream":
            out["text"] = terminal_text(out["text"])
    return canonical(kept)


def json_sha256(value, version: int = VERSION) -> str:
    value = canonical(value) if version >= 2 else value
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def cell_hashes(notebook, version: int = VERSION) -> list[str]:
    """sha256 of each cell's source and outputs, as canonical JSON."""
    return [
        json_sha256(
            {
                "source": c.source,
                "outputs": canonical_outputs(c.get("outputs", []))
                if version >= 2
                else c.get("outputs", []),
            },
            version,
        )
        for c in notebook.cells
    ]


def seal(meta: dict, notebook) -> dict:
    """The integrity record of a report: a hash of each cell and of each metadata section."""
    return {
        "version": VERSION,
        "cells": cell_hashes(notebook),
        "sections": {key: json_sha256(value) for key, value in meta.items()},
        "method": "sha256 of each cell's source and outputs and of each metadata section, as "
        "canonical JSON (repro.driver.integrity: what a save by JupyterLab or nbformat leaves "
        "unchanged)",
    }


def notebook_problems(notebook) -> list[str]:
    """Cells whose source or outputs changed since the run, by index and first line; metadata
    sections that changed (the rerun record: code, lock and parameters a rerun would use); and
    embedded code or lock that does not match the hashes the report records for them."""
    meta = mapping(notebook.metadata.get("repro"))
    seal, version = mapping(meta.get("integrity")), integrity_version(notebook)
    recorded = seal.get("cells")
    if not isinstance(recorded, list):
        return ["the notebook carries no integrity hashes (not a finalised repro report)"]
    sections = mapping(seal.get("sections") if version >= 2 else {"rerun": seal.get("rerun")})
    keys = set(sections) | (set(meta) - {"integrity"} if version >= 2 else set())
    problems = [
        f"the report's {key} metadata changed"
        + (" (code, lock, parameters)" if key == "rerun" else "")
        for key in sorted(keys)
        if json_sha256(meta.get(key), version) != sections.get(key)
    ]
    problems += embedded_problems(meta)
    current = cell_hashes(notebook, version)
    if len(current) != len(recorded):
        return [
            *problems,
            f"cells were added or removed ({len(recorded)} recorded, {len(current)} now)",
        ]
    changed = [i for i, (a, b) in enumerate(zip(recorded, current, strict=True)) if a != b]
    return problems + changed_cells(notebook, changed)


def changed_cells(notebook, changed: list[int]) -> list[str]:
    """One line naming the cells whose source or outputs changed since the run: an edit, or
    cells run again (in JupyterLab, say), whose new outputs are no longer the run's."""
    if not changed:
        return []
    first = f"{changed[0]} changed: {first_line(notebook.cells[changed[0]].source)}"
    if len(changed) == 1:
        return [f"cell {first}"]
    return [
        f"{len(changed)} cells changed since the run (edited, or run again): "
        f"{', '.join(map(str, changed))}; cell {first}"
    ]


def embedded_problems(meta: dict) -> list[str]:
    """Whether the code and lock a report carries match the sha256 it claims for them, in its
    rerun record and in its run context (no key needed: the hashes are in the report)."""
    record, run = meta.get("rerun"), mapping(meta.get("run"))
    if not isinstance(record, dict):
        return []
    code = mapping(record.get("code"))
    template, library = mapping(code.get("template")), mapping(code.get("library"))
    try:
        files = snapshot.unarchive(library.get("archive"))
    except ValueError as error:
        return [f"the library archive it carries is unreadable ({error})"]
    claims = {  # what is carried: (its hash, the hash the rerun record and run context claim)
        "the template": (
            hashlib.sha256(str(template.get("text")).encode()).hexdigest(),
            {template.get("sha256"), mapping(run.get("template")).get("sha256")},
        ),
        "the library archive": (
            snapshot.tree_sha256(files),
            {library.get("sha256"), mapping(run.get("code")).get("library_sha256")},
        ),
    }
    if record.get("lock") is not None or run.get("lock"):
        claims["the lock"] = (
            hashlib.sha256(str(record.get("lock")).encode()).hexdigest(),
            {mapping(run.get("lock")).get("lock_sha256")},
        )
    return [
        f"{what} it carries does not match its recorded sha256"
        for what, (actual, claimed) in claims.items()
        if claimed != {actual}
    ]


def first_line(source: str) -> str:
    lines = source.strip().splitlines()
    return lines[0][:60] if lines else "(empty)"


def run_files(folder: Path) -> list[Path]:
    """The files a run folder holds: all but its manifest and Jupyter's checkpoints."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.name != MANIFEST and CHECKPOINTS not in p.relative_to(folder).parts
    )


def manifest_lines(folder: Path) -> list[str]:
    files = run_files(folder)
    return [f"{sha256(p).hexdigest()}  {p.relative_to(folder).as_posix()}" for p in files]


def folder_problems(folder: Path) -> list[str]:
    """Files that differ from the run folder's MANIFEST.sha256, plus the report's own checks. A
    report re-saved by Jupyter has other bytes but the same canonical content: not a change."""
    manifest, report = folder / MANIFEST, folder / "report.ipynb"
    if not (
        manifest.is_file() or (folder / "metrics.json").is_file() or any(folder.glob("*.ipynb"))
    ):
        raise UserError(f"{folder} is not a run folder (no {MANIFEST}, metrics.json or report)")
    if not manifest.is_file():
        unfinished = not (folder / "metrics.json").is_file()  # the driver was killed (SIGKILL)
        return [
            f"{folder} is an unfinished run: no metrics.json"
            if unfinished
            else f"no {MANIFEST} in {folder}"
        ]
    try:
        recorded = manifest_entries(manifest.read_text())
    except ValueError as error:
        return [f"{MANIFEST} is not a manifest: {error}"]
    current = manifest_entries("\n".join(manifest_lines(folder)))
    notebook, problems = None, []
    if report.is_file():
        try:
            notebook = read_notebook(report, "report")
        except UserError as error:  # a report that no longer reads is a change, listed
            problems.append(str(error))
    if notebook:
        problems += notebook_problems(notebook) + context_problems(folder, notebook)
    resaved = notebook and not problems and integrity_version(notebook) >= 2
    problems += [
        f"{name} was modified"
        for name in sorted(recorded)
        if name in current and current[name] != recorded[name]
        if not (resaved and name == report.name)
    ]
    problems += [f"{name} is missing" for name in sorted(set(recorded) - set(current))]
    problems += [f"{name} is not in the manifest" for name in sorted(set(current) - set(recorded))]
    return problems


def mapping(value) -> dict:
    """`value` if it is a JSON object, else an empty one: a report's metadata is untrusted."""
    return value if isinstance(value, dict) else {}


def integrity_version(notebook) -> int:
    version = mapping(mapping(notebook.metadata.get("repro")).get("integrity")).get("version")
    return version if isinstance(version, int) else 1


def context_problems(folder: Path, notebook) -> list[str]:
    """environment.json must say what the report's metadata says (both are in a run folder)."""
    environment = folder / "environment.json"
    recorded = mapping(notebook.metadata.get("repro")).get("environment")
    if recorded is None or not environment.is_file():
        return []
    try:
        current = json.loads(environment.read_text())
    except ValueError:
        return ["environment.json is not JSON"]
    if canonical(current) != canonical(recorded):
        return ["environment.json differs from the environment the report records"]
    return []


def manifest_entries(text: str) -> dict[str, str]:
    """{path: sha256} from `sha256sum` lines; ValueError naming the first line that is not one."""
    entries = {}
    for number, line in enumerate(text.splitlines(), 1):
        digest, sep, name = line.partition("  ")
        if not (sep and name and len(digest) == 64):
            raise ValueError(f"line {number} is not '<sha256>  <path>': {line[:80]!r}")
        entries[name] = digest
    return entries


def in_run_folder(report: Path) -> bool:
    """Whether `report` is the report of the run folder it is in (its manifest lists it)."""
    try:
        recorded = manifest_entries((report.parent / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    return report.name in recorded


def check(path: str | Path) -> list[str]:
    """Everything that differs from what the run recorded: a run folder, a bundle (.tar.gz) or
    a report notebook on its own (in its run folder: the folder). An empty list means intact."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist: give a run folder, a .tar.gz bundle or a report")
    if path.is_dir():
        return folder_problems(path)
    if path.name.endswith((".tar.gz", ".tgz")):
        with tempfile.TemporaryDirectory() as tmp:
            folder = unpack(path, Path(tmp))
            return folder_problems(folder)
    if path.suffix == ".ipynb":
        if in_run_folder(path):  # its numbers are in the files beside it: they are checked too
            return folder_problems(path.parent)
        return notebook_problems(read_notebook(path, "report"))
    raise UserError(f"cannot verify {path}: give a run folder, a .tar.gz bundle or a report.ipynb")


def bundle(folder: str | Path, output: str | Path | None = None) -> Path:
    """Pack a run folder into one .tar.gz that `verify` (and later `rerun`) accept."""
    folder = Path(folder)
    if not (folder / MANIFEST).is_file():
        raise UserError(f"{folder} is not a finalised run folder (no {MANIFEST})")
    output = Path(output) if output else folder.with_name(f"{folder.name}.tar.gz")
    outside_records(output, "the bundle", sweeps=False, fix="choose another path with -o")
    if output.exists():
        raise UserError(f"{output} exists already; choose another path with -o")
    if not output.parent.is_dir():
        raise UserError(f"cannot write {output}: {output.parent} is not a folder")
    partial = output.with_name(f".{output.name}.tmp")  # renamed once complete
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=folder.name, filter=without_checkpoints)
    os.replace(partial, output)
    return output


def without_checkpoints(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    return None if CHECKPOINTS in Path(member.name).parts else member


# A run folder is about 1 MB: what unpacks to more, or holds more files, is not one (a gzip bomb).
MAX_UNPACKED = 2**30
MAX_MEMBERS = 10_000


def unpack(archive: Path, into: Path, shown: str | None = None) -> Path:
    """Extract a bundle safely (files and folders only, nothing outside `into`, within the
    limits above); return its run folder. `shown` names the bundle in errors (its path)."""
    shown = shown or str(archive)
    try:
        with tarfile.open(archive) as tar:
            problem = members_problem(tar.getmembers())
            if problem is None:
                tar.extractall(into, filter="data")
    except tarfile.OutsideDestinationError as error:
        problem = f"{error.tarinfo.name[:80]!r} is outside the destination"
    except NOT_A_BUNDLE as error:
        raise UserError(f"cannot read {shown} as a bundle: {brief(error)}") from None
    if problem:
        raise UserError(f"cannot read {shown} as a bundle: {problem}")
    folders = [p for p in into.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise UserError(f"{shown} does not hold exactly one run folder")
    return folders[0]


def members_problem(members: list[tarfile.TarInfo]) -> str | None:
    """What makes a bundle's members no run folder: a link or device, too many, too large."""
    if len(members) > MAX_MEMBERS:
        return f"it holds more than {MAX_MEMBERS:,} files"
    odd = next((m.name for m in members if not (m.isfile() or m.isdir())), None)
    if odd is not None:
        return f"{odd[:80]!r} is a link or device, not a file"
    if sum(m.size for m in members) > MAX_UNPACKED:
        return f"it unpacks to more than {MAX_UNPACKED // 2**20:,} MiB"
    return None
