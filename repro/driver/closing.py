"""What a command leaves when it ends (driver side): a run's closing block for people, and the
one JSON object `--json` prints on stdout for CI instead (the progress stays on stderr). Every
figure is the run's headline (repro.stats.Headline, read through repro.records)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager, redirect_stdout
from pathlib import Path

from repro.driver import headline
from repro.driver.run import Result, Stopped
from repro.driver.sweep import Outcome
from repro.records import Metrics
from repro.stats import Headline


def title(metrics: Metrics) -> str:
    """`resnet-tiny / torch → onnxruntime`: what ran."""
    runtime = metrics.params.get("runtime")
    served = f" → {runtime}" if runtime not in (None, "native") else ""
    return f"{metrics.workload} / {metrics.framework}{served}"


def block(metrics: Metrics, folder: Path) -> str:
    """The closing block of a run: its headline with the CI, its status, each warning once,
    then where its report and folder are."""
    head = metrics.headline
    lines = [f"{title(metrics)}: {head.quote() if head else 'nothing measured'}"]
    if head:
        lines.append(f"  {headline.step_time(head).replace('**', '')}")
    status = metrics.status + (f": {metrics.error}" if metrics.error else "")
    lines.append(f"  status: {status}")
    if metrics.rerun:
        lines.append(f"  rerun verdict: {metrics.verdict}")
    lines += [f"  warning: {w}" for w in headline.warnings(metrics) if w != f"Run {status}"]
    html = folder / "report.html"
    if html.is_file():
        lines.append(f"  report: {html}")
    lines.append(f"  folder: {folder}")
    return "\n".join(lines)


def figure(head: Headline | None) -> dict | None:
    """A headline as `--json` gives it: its fields, and the line people quote."""
    return {**head.to_dict(), "quote": head.quote()} if head else None


def record(metrics: Metrics, folder: Path) -> dict:
    """A run as `--json` gives it."""
    head, summary = metrics.headline, metrics.step_summary
    html = folder / "report.html"
    rerun = metrics.rerun or {}
    return {
        "status": metrics.status,
        "error": metrics.error,
        "run_id": metrics.run_id,
        "workload": metrics.workload,
        "framework": metrics.framework,
        "folder": str(folder.absolute()),
        "report_html": str(html.absolute()) if html.is_file() else None,
        "headline": figure(head),
        "warnings": headline.warnings(metrics),
        "busy": summary.busy if summary else None,
        **({"verdict": {"class": rerun.get("class"), "words": rerun["verdict"]}} if rerun else {}),
    }


def sweep_record(outcome: Outcome, report: Path | None) -> dict:
    """A sweep as `--json` gives it: each cell's label and status, and its run's record."""
    cells = [
        {
            **{k: c[k] for k in ("label", "status", "error", "folder")},
            "headline": figure(c["run"].metrics.headline) if c["run"] else None,
            "busy": c["run"].summary.busy if c["run"] else None,
        }
        for c in outcome.cells()
    ]
    return {
        "sweep": outcome.sweep.name,
        "folder": str(outcome.folder.absolute()),
        "report_html": str(report.absolute()) if report else None,
        "cells": cells,
    }


@contextmanager
def answering(as_json: bool) -> Iterator[Callable[[dict], None]]:
    """The block's `give`: with `as_json`, what the block prints goes to stderr, and the one
    object it gives is printed on stdout as JSON (nothing, if it fails before giving one)."""
    if not as_json:
        yield lambda data: None
        return
    out = sys.stdout
    with redirect_stdout(sys.stderr):
        yield lambda data: print(json.dumps(data, indent=1, default=str), file=out, flush=True)


def closed(start: Callable[[], Result], give: Callable[[dict], None]) -> Result:
    """The run `start()` makes, closed: its block printed, its record given, failed or not (a
    failed run's one-line error says where its folder is)."""
    try:
        result = start()
    except Stopped as stopped:
        give(record(stopped.result.metrics, stopped.result.folder))
        raise
    print(block(result.metrics, result.folder))
    give(record(result.metrics, result.folder))
    return result
