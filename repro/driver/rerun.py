"""Rerun a report from the file alone, wherever it was copied (driver side).

The report's metadata carries the rerun record (`finalize.rerun_record`): workload spec,
parameters and seeds, kernel and lock, template and library code. A rerun first verifies the
report, reads it as untrusted data (`untrusted.read`), and shows and refuses whatever differs
from this checkout (code, lock, spec) unless the user trusts it; then it runs the plan as a
fresh run would, in a kernel built from the report's lock when that differs, and the new report
ends with a rerun verdict section.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import nbformat

from repro.driver import integrity, kernels, plan, snapshot, untrusted
from repro.driver.run import Addendum, Result, run
from repro.errors import LINE_LIMIT, ReproError, UserError, cut, cut_lines, option
from repro.kernel.verdict import TOLERANCE
from repro.lockfile import render
from repro.paths import ROOT
from repro.records import Metrics


def report_path(source: Path, scratch: Path) -> Path:
    """The report.ipynb inside a run folder or bundle, or `source` itself."""
    if source.is_dir():
        source = source / "report.ipynb"
    elif source.name.endswith((".tar.gz", ".tgz")) and source.is_file():
        source = integrity.unpack(source, scratch) / "report.ipynb"
    if source.suffix != ".ipynb" or not source.is_file():
        raise UserError(f"cannot rerun {source}: give a report.ipynb, a run folder or a bundle")
    return source


def verified(source: Path, trust: bool, log) -> list[str]:
    """What `repro verify` says of the report; stop unless that is nothing or the user trusts
    it anyway."""
    problems = integrity.check(source)
    for problem in problems:
        print(f"the report fails verification: {problem}", file=log)
    if problems and not trust:
        raise ReproError(
            f"the report changed after its run ({len(problems)} problems above), so its code and "
            f"lock are not what ran; check it with `repro verify`, and rerun with "
            f"{option('--trust', True)} only if you trust where it came from"
        )
    return problems


DIFF_LINES = 400  # of the diff shown before a rerun is refused (a changed library: thousands)


def same_as_checkout(report: untrusted.Report, trust: bool, log) -> untrusted.Differences:
    """Stop unless the report's code, lock and spec are this checkout's or the user trusts them:
    what differs is shown first (code as a diff, the lock as the packages it would install)."""
    differs = untrusted.differences(report)
    summary = cut("; ".join(differs.summary), LINE_LIMIT // 2)
    if summary and not trust:
        print(cut_lines(differs.diff, DIFF_LINES), file=log)
        raise UserError(
            f"the report differs from this checkout ({summary}); read the diff above, then "
            f"rerun with {option('--trust', True)} to install and run what it carries"
        )
    if summary:
        print(f"running what the report carries (trusted): {summary}", file=log)
    return differs


def report_code(code: dict) -> Path:
    """The PYTHONPATH folder of the report's own library, trusted by the gate, extracted under
    .kernels/code/<code id>/ (once per distinct code)."""
    return snapshot.code_folder(
        snapshot.unarchive(code["library"]["archive"]), snapshot.code_id(code)
    )


DECIDES = {  # mode: what decides its verdict (repro.kernel.verdict.deciding)
    "train-to-accuracy": "each process's time to the target accuracy (a process that missed "
    "the target has none: the verdict says which did)",
    "generate": "each process's median step time, a step being one request (the batch's whole "
    "generation: prefill and every decode step); the kernel's time to first token, time per "
    "output token, end-to-end p99 and tokens/s are listed for reading",
}
LOADGEN = (
    " LoadGen ran once, in the kernel's process: its result (VALID or INVALID), samples/s and "
    "p90/p99 latency are listed, and a result that changed is said in the verdict."
)


def verdict_cells(original_run: str, params: Mapping) -> tuple:
    """The section a rerun's report ends with (repro.kernel.verdict.show); `params`: the
    original's (its mode and scenario say what decides)."""
    decides = DECIDES.get(params.get("mode"), "each process's median step time")
    scenario = params.get("scenario") not in (None, "none")
    return (
        nbformat.v4.new_markdown_cell(
            "## Rerun verdict\n\n"
            f"This run reran the report of `{original_run}` with the code, parameters, seeds and "
            "lock it carries. Its metrics and environment are in this folder's `original/`. "
            f"What decides is {decides} (`repeats` processes per run): an "
            "equivalence test at the stated tolerance says *reproduced within ±X%* when the 90% "
            "CI of the ratio rerun / original lies inside it, *changed by Y%* when its 95% CI "
            "excludes no change and the ratio lies beyond the tolerance, and *inconclusive* "
            "otherwise, with the processes that would likely decide (one process per run always "
            "is). If the machine itself changed (its reference computation ran faster or slower "
            "beyond its noise, or other processes kept it busy), the verdict says so first. The "
            "other metrics, and the environment differences, are listed for reading."
            + (LOADGEN if scenario else "")
        ),
        nbformat.v4.new_code_cell(
            "from repro.kernel import verdict\n\n"
            'rerun = verdict.show(metrics, environment, "original")'
        ),
    )


def addendum(report: untrusted.Report, problems: list[str], tolerance: float) -> Addendum:
    """What a rerun adds to its run: the original's results and the verdict's settings in
    `original/` (what the verdict cells read), the verdict cells, and which run it reran."""
    original = {
        "metrics": report.metrics.to_json(),
        "environment": report.environment.to_json(),
        "integrity": problems,
        "verdict": {"tolerance": tolerance},
    }
    run_id = report.metrics.run_id
    return Addendum(
        files={f"original/{k}.json": json.dumps(v, indent=1) + "\n" for k, v in original.items()},
        cells=verdict_cells(run_id, report.params),
        context={"rerun_of": run_id},
    )


LONG = 10  # a rerun measuring this many times as long as a default run, and
LONG_S = 300  # at least this many seconds, asks for --yes first


def measuring_s(params: Mapping, step_s: float) -> float:
    """About how long a run of `params` measures, at `step_s` a step: each process's warm-up and
    measured steps, as warmup, warmup_time, steps and min_time bound them (train-to-accuracy:
    up to its caps), once per process."""
    if params["mode"] == plan.TRAIN_TO_ACCURACY:
        each = min(params["max_steps"] * step_s, params["max_seconds"])
    else:
        warmup = min(params["warmup"] * step_s, params["warmup_time"])
        each = warmup + max(params["steps"] * step_s, params["min_time"])
    return params["repeats"] * each


def affordable(request: plan.RunPlan, original: Metrics) -> None:
    """UserError where the rerun would measure far longer than a default run of its workload
    (LONG times, LONG_S at least), at the original's headline step time: a report may ask for
    any steps and repeats, and a rerun of it should not take hours unannounced."""
    step_s, mode = original.headline.step_ms / 1e3, request.params["mode"]  # the run's figure
    default = {n: p.default for n, p in plan.PARAMS.items()} | {"mode": mode}
    default["repeats"] = plan.REPEATS[mode]  # what repeats=0 picks on a CPU
    seconds, usual = measuring_s(request.params, step_s), measuring_s(default, step_s)
    if seconds > max(LONG * usual, LONG_S):
        tta = mode == plan.TRAIN_TO_ACCURACY
        asked = ("repeats", *(("max_steps", "max_seconds") if tta else ("steps", "min_time")))
        took = f"{seconds / 3600:.1f} h" if seconds >= 3600 else f"{seconds / 60:.0f} min"
        raise UserError(
            f"this rerun would measure for about {took} "
            f"({', '.join(f'{k}={request.params[k]}' for k in asked)} at the original's "
            f"{step_s * 1e3:.3g} ms a step), {seconds / usual:,.0f} times a default run of "
            f"{request.workload['name']}: rerun with {option('--yes', True)} to run it anyway"
        )


def rerun(
    source: str | Path,
    trust: bool = False,
    runs_dir: str | Path | None = None,
    tolerance: float = TOLERANCE,
    log=sys.stderr,
    force_memory: bool = False,
    yes: bool = False,
) -> Result:
    """Rerun the report in `source` (report.ipynb, run folder or bundle) into a new run folder;
    its verdict decides at `tolerance` (0.10: ±10%; repro.stats). `yes`: even a long one."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        notebook = integrity.read_notebook(report_path(Path(source), scratch), "report")
        problems = verified(Path(source), trust, log)
        report = untrusted.read(notebook)
        if report.kernel not in kernels.available():
            raise UserError(
                f"the report ran in kernel {report.kernel!r}, which this checkout does not have; "
                f"kernels here: {', '.join(kernels.available())}"
            )
        differs = same_as_checkout(report, trust, log)
        code = report_code(report.code) if differs.code else ROOT
        template = scratch / "template" / report.code["template"]["name"]
        template.parent.mkdir()  # the notebook that ran, as the report carries it, runs again
        template.write_bytes(report.code["template"]["text"].encode())
        lock = None  # this checkout's, unless the report pins other packages: then its pins,
        if differs.lock:  # rewritten from the validated data (only names, versions, hashes)
            lock = scratch / "requirements.lock"
            lock.write_text(render(report.pins))
        request = plan.resolve(
            report.workload["name"],
            report.framework,
            {**plan.FORMERLY, **report.params},  # a report older than a parameter: what it did
            kernel=report.kernel,
            kernel_reason="the kernel the report ran in",
            template=str(template),
            runs_dir=runs_dir,
            spec=report.workload,
            code=code if differs.code else None,
        )
        request = dataclasses.replace(request, lock=lock, code=code)
        if not yes:
            affordable(request, report.metrics)
        print(f"rerunning {report.metrics.run_id}", file=log)
        return run(
            request,
            argv=["rerun", str(source)],
            log=log,
            force_memory=force_memory,
            addendum=addendum(report, problems, tolerance),
        )
