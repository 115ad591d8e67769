"""runs/index.html: every run, lesson, comparison, sweep and history under a runs folder, newest
first, each with its headline and a link to its report (driver side; `repro index`, `make
index`, and refreshed after every run and comparison). Whatever it reads from a folder is
untrusted data: every value is escaped, and a folder whose records do not read says so."""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path
from urllib.parse import quote

from repro import records
from repro.driver.folders import write
from repro.errors import UserError, brief
from repro.paths import RUNS

INDEX = "index.html"
DEPTH = 4  # runs/sweep_<name>/cells/<cell>/<run>
SECTIONS = {  # kind: heading, in the page's order
    "run": "Runs",
    "lesson": "Lessons",
    "comparison": "Comparisons",
    "sweep": "Sweeps",
    "history": "Histories",
}
# What a malformed record (it read, but holds something else than its readers expect) raises.
MALFORMED = (UserError, KeyError, TypeError, ValueError, AttributeError, IndexError, OSError)


def kind(folder: Path) -> str | None:
    """What `folder` holds, by the record it keeps; None: none (a folder of folders)."""
    if (folder / "comparison.json").is_file():
        return "comparison"
    if (folder / "history.json").is_file():
        return "history"
    if (folder / "state.json").is_file() and (folder / "cells").is_dir():
        return "sweep"
    if (folder / "metrics.json").is_file() or (folder / "report.partial.ipynb").is_file():
        return "run"
    return None


def found(folder: Path, depth: int = DEPTH) -> list[tuple[str, Path]]:
    """(kind, folder) for everything under `folder`, `depth` levels down; a sweep's runs too."""
    entries = []
    for child in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        what = kind(child)
        if what:
            entries.append((what, child))
        if what in (None, "sweep") and depth > 1:
            entries += found(child, depth - 1)
    return entries


def run_line(folder: Path) -> tuple[str, str]:
    """(kind, headline) of a run folder: its result, a lesson's claims, or how it ended."""
    if not (folder / "metrics.json").is_file():
        return "run", "unfinished (no metrics.json: its driver was stopped)"
    metrics = records.Metrics.from_json(
        records.read(folder / "metrics.json"), f"{folder}/metrics.json"
    )
    lesson = records.section(metrics.summary, "lesson")
    if metrics.status != "ok":
        line = f"{metrics.status}: {metrics.error or 'no reason recorded'}"
    elif lesson:
        claims = list(lesson.get("claims") or [])
        held = sum(bool(c.get("held")) for c in claims)
        line = f"{held} of {len(claims)} claims held on this machine"
    else:  # the one figure every view quotes (Metrics.headline)
        head = metrics.headline
        line = head.quote() if head else "not measured"
    label = f"{metrics.workload} / {metrics.framework}: "
    return ("lesson" if lesson else "run"), label + line


def comparison_line(folder: Path) -> str:
    record = records.Comparison.from_json(
        records.read(folder / "comparison.json"), f"{folder}/comparison.json"
    )
    if record.status != "ok":
        return f"{record.status}: {record.error or 'no reason recorded'}"
    verdicts = [f"{p.get('new')}: {p.get('verdict')}" for p in record.pairs]
    return f"against {record.baseline}: " + "; ".join(verdicts)


def history_line(folder: Path) -> str:
    record = records.read(folder / "history.json")
    if record.get("status") != "ok":
        return f"{record.get('status')}: {record.get('error') or 'no reason recorded'}"
    data = records.section(record, "history")
    series = records.section(data, "series")
    runs = sum(len(points) for points in series.values())
    regressions = len(data.get("regressions") or [])
    return f"{runs} runs in {len(series)} series; {regressions} regressions"


def sweep_line(folder: Path) -> str:
    state = records.read(folder / "state.json")
    cells = list(records.section(state, "cells").values())
    done = sum(isinstance(c, dict) and c.get("status") == "done" for c in cells)
    failed = sum(isinstance(c, dict) and c.get("status") == "failed" for c in cells)
    return f"{done} of {len(cells)} cells done" + (f", {failed} failed" if failed else "")


LINES = {"comparison": comparison_line, "history": history_line, "sweep": sweep_line}


def entry(what: str, folder: Path) -> tuple[str, str]:
    """(kind, headline) of one folder; a record that does not read is said, not raised."""
    try:
        if what == "run":
            return run_line(folder)
        return what, LINES[what](folder)
    except MALFORMED as error:
        return what, f"unreadable: {brief(error)}"


def link(folder: Path, runs_dir: Path) -> str:
    """The folder's report.html (else the folder), relative to the index, escaped."""
    target = folder / "report.html" if (folder / "report.html").is_file() else folder
    return html.escape(quote(os.path.relpath(target, runs_dir)))


PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>repro: {title}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border-bottom:1px solid #ddd;padding:.3em .6em;text-align:left;vertical-align:top}}
td:first-child{{white-space:nowrap;font-family:monospace}}</style></head>
<body><h1>{title}</h1>
<p>Written by <code>repro index</code> (<code>make index</code>), and after every run and
comparison. Each name links to its report; verify one with <code>repro verify FOLDER</code>.</p>
{body}
</body></html>
"""


def render(runs_dir: Path) -> str:
    """The index page of everything under `runs_dir`."""
    rows: dict[str, list[str]] = {k: [] for k in SECTIONS}
    for what, folder in sorted(found(runs_dir), key=lambda e: e[1].name, reverse=True):
        shown, line = entry(what, folder)
        name = html.escape(folder.relative_to(runs_dir).as_posix())
        rows[shown].append(
            f'<tr><td><a href="{link(folder, runs_dir)}">{name}</a></td>'
            f"<td>{html.escape(line)}</td></tr>"
        )
    body = "\n".join(
        f"<h2>{heading} ({len(rows[k])})</h2>\n"
        + (f"<table>\n{chr(10).join(rows[k])}\n</table>" if rows[k] else "<p>none yet</p>")
        for k, heading in SECTIONS.items()
    )
    return PAGE.format(title=html.escape(f"runs in {runs_dir}"), body=body)


def write_index(runs_dir: Path) -> Path:
    """Write `runs_dir`/index.html; UserError if there is no such folder."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(f"{runs_dir} is not a folder of runs; make a run first (`make run`)")
    path = runs_dir / INDEX
    write(path, render(runs_dir))
    return path


def refresh(runs_dir: Path, log=sys.stderr) -> None:
    """Bring the index up to date after a command that added a folder: always in runs/, in
    another folder once `repro index` wrote one there. A failure to write it is said in one line
    and leaves the command's outcome alone."""
    runs_dir = Path(runs_dir)
    wanted = (runs_dir / INDEX).is_file() or runs_dir.resolve() == RUNS.resolve()
    try:
        if wanted and runs_dir.is_dir():
            write_index(runs_dir)
    except OSError as error:
        print(f"repro: {Path(runs_dir) / INDEX} not updated: {brief(error)}", file=log)
