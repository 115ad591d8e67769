"""The code that ran, carried inside the report: the template and an archive of `repro` itself.

`take()` reads them before a run; `finalize` embeds the result in the notebook's metadata, so a
report copied anywhere holds what `repro rerun` needs. `differences()` compares a snapshot with
another (this checkout's, usually) and writes a readable diff: a rerun executes code that
arrived in a shared file, so it first shows what that code changes.
"""

from __future__ import annotations

import base64
import binascii
import difflib
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from repro.driver.templates import Template
from repro.paths import KERNELS, ROOT

SKIP = ("__pycache__", ".pyc")


def library_files(root: Path = ROOT) -> dict[str, bytes]:
    """Every file of the `repro` package under `root`, by path relative to `root`."""
    package = root / "repro"
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(package.rglob("*"))
        if p.is_file() and not any(s in p.as_posix() for s in SKIP)
    }


def tree_sha256(files: dict[str, bytes]) -> str:
    """One hash for a set of files: sha256 over their sorted paths and contents' sha256."""
    lines = "".join(f"{hashlib.sha256(files[p]).hexdigest()}  {p}\n" for p in sorted(files))
    return hashlib.sha256(lines.encode()).hexdigest()


def archive(files: dict[str, bytes]) -> str:
    """A reproducible .tar.gz of `files` (fixed order, times and owners), base64-encoded."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for path in sorted(files):
            info = tarfile.TarInfo(path)
            info.size, info.mode, info.mtime = len(files[path]), 0o644, 0
            tar.addfile(info, io.BytesIO(files[path]))
    return base64.b64encode(gzip.compress(buffer.getvalue(), 9, mtime=0)).decode()


SAFE_PATH = re.compile(r"repro(/[A-Za-z0-9_][A-Za-z0-9_.-]*)+")  # no "..", no absolute paths
MAX_BYTES = 64 << 20  # the library is about 1 MB; a larger archive is not one repro wrote


def unarchive(encoded: str) -> dict[str, bytes]:
    """The files of an archive made by `archive()`, checked as untrusted data: regular files
    only, each under repro/ with a plain relative path, 64 MiB at most. ValueError otherwise."""
    try:
        data = base64.b64decode(encoded, validate=True)
        files = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if not (member.isfile() and SAFE_PATH.fullmatch(member.name)):
                    raise ValueError(f"unexpected member {member.name!r}")
                if member.name in files:
                    raise ValueError(f"{member.name!r} appears twice")
                files[member.name] = tar.extractfile(member).read(MAX_BYTES + 1)
                if sum(map(len, files.values())) > MAX_BYTES:
                    raise ValueError("more than 64 MiB")
    except (TypeError, binascii.Error, tarfile.TarError, OSError, EOFError, zlib.error) as error:
        raise ValueError(f"not a library archive: {error}") from None
    return files


def take(template: Template, root: Path = ROOT) -> dict:
    """The template's text (the notebook a run executes) and the library under `root`, hashed
    and archived."""
    files = library_files(root)
    return {
        "template": {
            "name": template.name,
            "sha256": hashlib.sha256(template.text.encode()).hexdigest(),
            "text": template.text,
        },
        "library": {"sha256": tree_sha256(files), "files": len(files), "archive": archive(files)},
    }


def hashes(snapshot: dict) -> dict:
    """The snapshot without its contents, as a run's context records it."""
    return {
        "template": {
            "path": snapshot["template"]["name"],
            "sha256": snapshot["template"]["sha256"],
        },
        "code": {"library_sha256": snapshot["library"]["sha256"]},
    }


def code_id(snapshot: dict) -> str:
    """A short name for a snapshot's library and template together."""
    both = snapshot["library"]["sha256"] + snapshot["template"]["sha256"]
    return hashlib.sha256(both.encode()).hexdigest()[:12]


def code_folder(files: dict[str, bytes], name: str) -> Path:
    """A PYTHONPATH folder holding `files` (a library), .kernels/code/<name>/, written once:
    the code a kernel runs when it is not this checkout's (a report's, or the library with a
    user's model file beside it)."""
    folder = KERNELS / "code" / name
    if not folder.is_dir():
        folder.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
            for path, content in files.items():
                target = Path(tmp) / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(content)
            shutil.move(tmp, folder)
    return folder


def template_cells(text: str) -> list[str]:
    """A notebook's cells as readable text, for diffs."""
    cells = json.loads(text)["cells"]
    return [
        f"# --- cell {i} ({c['cell_type']}) ---\n{''.join(c['source'])}\n"
        for i, c in enumerate(cells)
    ]


def _lines(texts: list[str]) -> list[str]:
    """Every line of `texts`, each ending in a newline (as unified_diff expects)."""
    return [line.rstrip("\n") + "\n" for text in texts for line in text.splitlines()]


def _diff(a: list[str], b: list[str], name: str) -> str:
    return "".join(
        difflib.unified_diff(_lines(a), _lines(b), f"this checkout: {name}", f"the report: {name}")
    )


def json_diff(ours, theirs, name: str) -> str:
    """A unified diff of two JSON values (None: absent), keys sorted."""
    dump = [
        [json.dumps(v, indent=1, sort_keys=True)] if v is not None else [] for v in (ours, theirs)
    ]
    return _diff(*dump, name)


def differences(
    report: dict, local_files: dict[str, bytes], local_template: str | None
) -> tuple[list[str], str]:
    """(what differs, one line each; a unified diff from this checkout to the `report` snapshot).

    `local_files` are this checkout's library files; `local_template` its text of the report's
    template, None if it has none."""
    summary, diff = [], []
    name = report["template"]["name"]
    if local_template is None:
        summary.append(f"template {name} is not in this checkout")
        diff.append(_diff([], template_cells(report["template"]["text"]), name))
    elif local_template != report["template"]["text"]:
        summary.append(f"template {name} differs")
        diff.append(
            _diff(template_cells(local_template), template_cells(report["template"]["text"]), name)
        )
    if report["library"]["sha256"] != tree_sha256(local_files):
        theirs, ours = unarchive(report["library"]["archive"]), local_files
        for path in sorted(set(theirs) | set(ours)):
            if theirs.get(path) == ours.get(path):
                continue
            summary.append(
                f"{path} "
                + ("is new" if path not in ours else "is gone" if path not in theirs else "differs")
            )
            diff.append(
                _diff(
                    [_text(ours.get(path, b""))],
                    [_text(theirs.get(path, b""))],
                    path,
                )
            )
    return summary, "".join(diff)


def _text(content: bytes) -> str:
    try:
        return content.decode()
    except UnicodeDecodeError:
        return f"(binary, sha256 {hashlib.sha256(content).hexdigest()})\n"
