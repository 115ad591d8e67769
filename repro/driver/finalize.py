"""Turn an executed report into the run folder (driver side).

Everything is derived from `report.ipynb`: the kernel published its results as JSON outputs
(`repro.kernel.report.MIME`) and its plots as tagged PNGs. Each file is written atomically and
MANIFEST.sha256, written last, hashes all of them.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import csv
import io
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

import nbformat
from papermill.execute import ERROR_MARKER_TAG

from repro import MIME
from repro.driver import headline
from repro.driver.folders import seal, write, write_manifest
from repro.driver.integrity import mapping
from repro.driver.plan import RunPlan
from repro.errors import RunFailed, brief
from repro.kernel.capture import hardware_markdown
from repro.kernel.loadgen import ACCURACY_LOG, LOG_FILES
from repro.records import Environment, Metrics, RecordError, RerunRecord

BANNER_TAG = "repro-banner"  # the first cell: what ran where (repro.driver.execute.banner)
SUMMARY_TAG = "repro-summary"  # the first cell: the headline, warnings, status, environment
STOP_TAG = "repro-stopped"  # the banner cell saying why a run did not finish


PLOT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")  # plots/<name>.png: never a path


def published(notebook) -> tuple[dict, dict]:
    """The JSON results (by kind) and the named PNG plots that the kernel displayed; anything
    malformed (a report read from elsewhere) is left out."""
    results, plots = {}, {}
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = mapping(output.get("data"))
            result = data.get(MIME)
            if isinstance(result, dict) and isinstance(result.get("kind"), str):
                results[result["kind"]] = result.get("data")
            name = mapping(mapping(output.get("metadata")).get("repro")).get("plot")
            if isinstance(name, str) and PLOT_NAME.fullmatch(name) and "image/png" in data:
                with contextlib.suppress(binascii.Error, TypeError):  # not a PNG: left out
                    plots[name] = base64.b64decode(data["image/png"])
    return results, plots


def raw_csv(samples: dict) -> str:
    """One row per timed step of every process (1: the kernel's; its warm-up is the only one
    kept): process, phase, index, seconds, samples/s."""
    buffer = io.StringIO()
    rows = csv.writer(buffer)
    rows.writerow(["process", "phase", "step", "seconds", "batch_size", "samples_per_s"])
    batch = samples["batch_size"]
    each = samples.get("processes") or [samples]  # a report older than repeats: one process
    for n, process in enumerate(each, 1):
        phases = [
            ("first_call", [process["first_call_s"]]),
            ("warmup", samples["warmup_s"] if n == 1 else []),
            ("measured", process["step_s"]),
        ]
        for phase, times in phases:
            for i, seconds in enumerate(times):
                rows.writerow([n, phase, i, f"{seconds:.9f}", batch, f"{batch / seconds:.4f}"])
    return buffer.getvalue()


def loadgen_logs(results: dict) -> dict[str, str]:
    """The LoadGen logs a scenario run published (repro.kernel.loadgen), by their file names:
    only LoadGen's own names, only text (a report read from elsewhere may hold anything)."""
    logs = mapping(results.get("loadgen_logs"))
    names = (*LOG_FILES, ACCURACY_LOG)
    return {name: logs[name] for name in names if isinstance(logs.get(name), str)}


def run_script(plan: RunPlan, run_context: dict) -> str:
    if plan.lesson:  # a lesson runs in the kernel its framework picks
        args = ["lesson", plan.lesson, "--framework", plan.framework]
    else:
        args = ["run", plan.workload["name"], "--framework", plan.framework]
        pinned = ["--kernel", plan.kernel]
        args += ["--unpinned", "--python", plan.python] if plan.python else pinned
        args += ["--template", str(plan.template_file)] if plan.template_file else []
    args += [a for k, v in plan.params.items() if v is not None for a in ("-p", f"{k}={v}")]
    git = run_context["git"]
    own = (  # a template of one's own is a file on the machine that ran it
        f"# Its own template was {json.dumps(str(plan.template_file))} on the machine that ran "
        "it; the report "
        "holds the notebook as it ran.\n"
        if plan.template_file
        else ""
    )
    missing = (
        f"run.sh: repro not found; run this from a checkout of commit {git.get('commit')} after "
        "`make venv` (a run folder inside it finds its .venv), or set REPRO=path/to/repro"
    )
    return (
        "#!/usr/bin/env bash\n"
        f"# Reruns repro run {run_context['run_id']}. Recorded at git commit "
        f"{git.get('commit')}{' (dirty tree)' if git.get('dirty') else ''}:\n"
        "# from a checkout of that commit, with the project's environment (`make venv`), run:\n"
        f"{own}"
        "set -euo pipefail\n"
        "# repro: $REPRO, else the .venv of the checkout this folder is in, else repro on PATH\n"
        "repro=${REPRO:-}\n"
        'dir=$(cd "$(dirname "${BASH_SOURCE[0]:-$0}")" && pwd)\n'
        "while [[ -z $repro && $dir != / ]]; do\n"
        '  dir=$(dirname "$dir")\n'
        "  if [[ -x $dir/.venv/bin/repro ]]; then repro=$dir/.venv/bin/repro; fi\n"
        "done\n"
        "repro=${repro:-$(command -v repro || true)}\n"
        f"[[ -n $repro ]] || {{ echo {shlex.quote(missing)} >&2; exit 127; }}\n"
        f'exec "$repro" {shlex.join(args)}\n'
    )


def rerun_record(plan: RunPlan, lock: str | None, code: dict) -> RerunRecord:
    """What `repro rerun` needs, from the report alone: spec, parameters (seeds included), the
    kernel and its lock, the template and the library's code."""
    return RerunRecord(plan.workload, plan.framework, plan.kernel, plan.params, lock, code)


@dataclass
class Outcome:
    """How a run's execution ended: no error (ok), an error (failed), or interrupted by a signal."""

    error: str | None = None
    interrupted: bool = False

    @property
    def status(self) -> str:
        return "interrupted" if self.interrupted else "failed" if self.error else "ok"


def stop_banner(notebook, status: str, reason: str) -> None:
    """Put the one-line reason a run did not finish at the top of its report (papermill's own
    banner already says it when a cell raised)."""
    if any(ERROR_MARKER_TAG in c.metadata.get("tags", []) for c in notebook.cells):
        return
    cell = nbformat.v4.new_markdown_cell(
        f"## ⚠ Run {status}: {reason}\n\n"
        f'What follows is the report as far as the run got; `metrics.json` says "{status}".'
    )
    cell.metadata["tags"] = [STOP_TAG]
    notebook.cells.insert(0, cell)


def fold_defaults(notebook) -> None:
    """Fold away the template's default parameters where papermill injected this run's after
    them, so that the first parameter values a reader sees are this run's (collapsed in
    JupyterLab, a closed <details> in report.html; the cell itself stays as it ran)."""
    tags = [c.metadata.get("tags", []) for c in notebook.cells]
    if any("injected-parameters" in t for t in tags):
        for cell, cell_tags in zip(notebook.cells, tags, strict=True):
            if "parameters" in cell_tags:
                cell.metadata.setdefault("jupyter", {})["source_hidden"] = True


def head(notebook, metrics: Metrics, environment: Environment | None) -> None:
    """Lead the report with its result: the summary cell first (its title the headline, then
    every warning once: why the run stopped, a busy machine), the banner after it, then the
    template's cells, their default parameters folded away; and a title naming the run for
    report.html's <title>."""
    fold_defaults(notebook)
    cell = nbformat.v4.new_markdown_cell(headline.markdown(metrics, environment))
    cell.metadata["tags"] = [SUMMARY_TAG]
    notebook.cells.insert(0, cell)
    notebook.metadata["title"] = (
        f"{metrics.workload} in {metrics.framework} ({metrics.status}): repro run {metrics.run_id}"
    )


def environment_of(published) -> Environment | None:
    """The environment the kernel published, or None where it published none (or one that is
    not repro's: the file keeps what was published, and reading it back says what is wrong)."""
    try:
        return Environment.from_json(published, "the report's environment")
    except RecordError:
        return None


def finalize(
    plan: RunPlan,
    run_dir: Path,
    run_context: dict,
    code: dict,
    error: str | None = None,
    interrupted: bool = False,
) -> Metrics:
    """Write every file of the run folder from its report; return metrics.json's record.
    `error` is why the run stopped (`interrupted`: by a signal) and heads the report. A folder
    that cannot be written whole (its disk filled up meanwhile) loses what this wrote and is
    finalised as failed with what it must hold: the report (sealed, without the rerun record's
    code), metrics.json and the manifest. Where even that fails, RunFailed: the folder keeps what
    the run wrote (an unfinished run: no metrics.json), or goes if that is nothing."""
    report = run_dir / "report.ipynb"
    text = report.read_text() if report.is_file() else None  # as the run left it
    ran = set(run_dir.rglob("*"))
    try:
        return write_folder(plan, run_dir, run_context, code, text, error, interrupted)
    except OSError as failure:
        why = f"could not write the run folder: {brief(failure)}"
        why += f" (the run itself: {brief(error)})" if error else ""
    undo(run_dir, ran)
    try:
        return write_folder(plan, run_dir, run_context, code, text, why, interrupted, lean=True)
    except OSError:
        undo(run_dir, ran)
    if not any(p.is_file() and p.stat().st_size for p in ran):
        shutil.rmtree(run_dir, ignore_errors=True)
        raise RunFailed(f"{why}; nothing of the run was kept ({run_dir} removed)")
    raise RunFailed(f"{why}; {run_dir} keeps what the run wrote (its report as the run left it)")


def undo(run_dir: Path, ran: set[Path]) -> None:
    """Remove what finalising wrote into `run_dir`: all but `ran`, and all of it derived from
    the report."""
    for path in sorted(set(run_dir.rglob("*")) - ran, reverse=True):  # files before folders
        with contextlib.suppress(OSError):
            path.rmdir() if path.is_dir() else path.unlink()


def write_folder(
    plan: RunPlan,
    run_dir: Path,
    run_context: dict,
    code: dict,
    text: str | None,
    error: str | None,
    interrupted: bool,
    lean: bool = False,
) -> Metrics:
    """finalize's writing, from the report's `text`; `lean`: the report, metrics.json and the
    manifest only, the report without report.html or the rerun record's code."""
    notebook = nbformat.reads(text, as_version=4) if text is not None else None
    results, plots = published(notebook) if notebook else ({}, {})
    measured = dict(results.get("metrics", {}))
    samples = measured.pop("samples", None)
    if error is None and samples is None:
        error = "the report recorded no metrics"
    status = Outcome(error, interrupted).status
    if error and notebook is None:  # stopped before papermill saved anything
        notebook = nbformat.v4.new_notebook()
    papermill_meta = notebook.metadata.get("papermill", {}) if notebook else {}
    lock_check = run_context["lock"]
    metrics = Metrics(
        status=status,
        error=error,
        run_id=run_context["run_id"],
        workload=plan.workload["name"],
        framework=plan.framework,
        kernel=plan.kernel,
        kernel_reason=plan.kernel_reason,
        pinned=lock_check is not None,
        lock_ok=lock_check["ok"] if lock_check else None,
        params=plan.params,
        model=results.get("model"),
        summary=measured or None,
        samples=samples,
        started_at=papermill_meta.get("start_time"),
        finished_at=papermill_meta.get("end_time"),
        duration_s=papermill_meta.get("duration"),
        rerun=results.get("rerun"),
    )
    published_environment = results.get("environment")
    environment = environment_of(published_environment)
    if notebook:
        head(notebook, metrics, environment)
    lock = plan.lock_path.read_text() if plan.lock_path else None
    if not lean:  # the files beside the report, each derived from it or from the plan
        if isinstance(published_environment, dict):  # as published: nothing recorded is lost
            write(run_dir / "environment.json", json.dumps(published_environment, indent=1) + "\n")
        if environment:
            write(run_dir / "hardware.md", hardware_markdown(environment.to_json()))
        if samples:
            write(run_dir / "raw_metrics.csv", raw_csv(samples))
        for name, png in plots.items():
            write(run_dir / "plots" / f"{name}.png", png)
        for name, log in loadgen_logs(results).items():
            write(run_dir / name, log)
        if lock is not None:
            write(run_dir / "requirements.lock", lock)
        write(run_dir / "run.sh", run_script(plan, run_context))
        (run_dir / "run.sh").chmod(0o755)
    if notebook:
        rerun = {} if lean else {"rerun": rerun_record(plan, lock, code).to_json()}
        seal(
            notebook,
            run_dir,
            html=not lean,
            run=run_context,
            status=metrics.status,
            environment=published_environment,
            **rerun,
        )
    write(run_dir / "metrics.json", json.dumps(metrics.to_json(), indent=1) + "\n")
    write_manifest(run_dir)
    return metrics
