"""The trust boundary (driver side): what a shared report carries is data until checked here.

A report, run folder or bundle may come from anyone, and `repro rerun` would install its lock and
execute its code. So the rerun reads a report only through `read()`, which validates it as data:
names against strict patterns, parameters and the workload spec as plain values, the template
and library archive matching the sha256 they claim, the lock only `name==version` lines with
sha256 hashes (no pip options, no URLs). `differences()` then compares what passed with this
checkout: the code that would run (template and library), the packages that would be installed
(lock) and the workload spec. The rerun shows every difference and refuses it without --trust.
"""

from __future__ import annotations

import ast
import contextlib
import math
import re
from dataclasses import dataclass

import nbformat

from repro.driver import integrity, plan, snapshot, templates
from repro.driver.finalize import published
from repro.errors import UserError
from repro.kernel.models.source import is_source
from repro.lockfile import Pin, lock_changes, read_lock
from repro.paths import KERNELSPECS
from repro.records import Environment, Metrics, RerunRecord, Summary, positive

NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}"  # workloads, kernels, run ids: never a path
TEMPLATE_NAME = NAME + r"\.ipynb"


@dataclass(frozen=True)
class Report:
    """A report's rerun record and original results, validated as data."""

    workload: dict  # the workload spec it ran
    framework: str
    kernel: str
    params: dict[str, str]  # every parameter as text, for plan.resolve to validate
    pins: dict[str, Pin]  # its lock
    code: dict  # snapshot.take()'s shape: template {name, sha256, text}, library {sha256, ...}
    metrics: Metrics  # the original's, as its metrics.json held them: what the verdict compares
    environment: Environment


def bad(what: str) -> UserError:
    return UserError(f"the report is not a valid repro report: {what}")


def field(record: dict, key: str, kind: type, where: str = "rerun record"):
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, kind):
        raise bad(f"{where} has no valid {key!r}")
    return value


def name(value, pattern: str, what: str) -> str:
    if not (isinstance(value, str) and re.fullmatch(pattern, value)):
        raise bad(f"{what} {str(value)[:60]!r} is not a plain name")
    return value


def parameter_text(key: str, value) -> str:
    """A recorded parameter as the text `make run` would give; JSON scalars only."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int | str) or (isinstance(value, float) and math.isfinite(value)):
        return str(value)
    raise bad(f"parameter {key!r} holds {type(value).__name__} {str(value)[:40]!r}")


def checked_code(meta: dict, code: dict) -> dict:
    """The template and library the report carries: a plain-named notebook, and both matching
    the sha256 recorded for them (integrity.embedded_problems, as `verify` checks them)."""
    template = field(code, "template", dict, "code")
    name(field(template, "name", str, "template"), TEMPLATE_NAME, "template")
    try:
        nbformat.validate(nbformat.reads(field(template, "text", str, "template"), as_version=4))
    except (ValueError, nbformat.ValidationError) as error:
        raise bad(f"its template is not a notebook ({str(error)[:100]})") from None
    problems = integrity.embedded_problems(meta)
    if problems:
        raise bad(problems[0])
    return code


def original_results(notebook, meta: dict, record: RerunRecord) -> tuple[Metrics, Environment]:
    """The original's metrics and environment, read as its metrics.json and environment.json
    (repro.records) and checked to hold what the verdict computes on."""
    results, _ = published(notebook)
    measured = dict(field(results, "metrics", dict, "the report's results"))
    samples = measured.pop("samples", None)
    model = results.get("model")
    metrics = Metrics.from_json(
        {
            "schema": Metrics.schema,
            "status": "ok",
            "run_id": name(field(meta, "run", dict, "metadata").get("run_id"), NAME, "run id"),
            "workload": record.workload.get("name"),
            "framework": record.framework,
            "kernel": record.kernel,
            "params": record.params,
            "model": model if isinstance(model, dict) else None,
            "summary": measured,
            "samples": samples,
        },
        "the report's metrics",
    )
    summary = Summary.from_json(measured, "the report's metrics")
    if not positive([samples.get("first_call_s")]):  # its steps: Metrics.check_samples
        raise bad("its first call time is not a positive number")
    reference = summary.machine.get("reference")
    if reference is not None and not (
        isinstance(reference, dict)
        and all(isinstance(reference.get(side), dict) for side in ("before", "after"))
        and all(
            isinstance(timing, dict) and positive([timing.get("median"), timing.get("min")])
            for side in ("before", "after")
            for timing in reference[side].values()
        )
    ):
        raise bad("its machine reference is not timings in positive numbers")
    environment = Environment.from_json(meta.get("environment"), "the report's environment")
    return metrics, environment


def injected(notebook) -> dict:
    """What the notebook ran with: the assignments papermill wrote into its injected-parameters
    cell (sealed with the other cells), read as literals, never run."""
    cells = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    try:
        body = ast.parse(cells[0].source).body if cells else []
    except (SyntaxError, ValueError):
        return {}
    values = {}
    for node in body:
        if isinstance(node, ast.Assign) and [type(t) for t in node.targets] == [ast.Name]:
            with contextlib.suppress(ValueError, TypeError, SyntaxError, RecursionError):
                values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def as_ran(notebook, record: RerunRecord) -> None:
    """UserError unless the rerun record names what the notebook ran (its workload, framework and
    parameters): a rerun of another workload would be judged against this one's numbers."""
    ran = injected(notebook)
    if "workload" not in ran:
        raise bad("its notebook does not say what it ran (no injected parameters)")
    named = {"workload": record.workload.get("name"), "framework": record.framework}
    for key, value in {**named, **record.params}.items():
        if key in ran and integrity.canonical(ran[key]) != integrity.canonical(value):
            raise bad(
                f"its rerun record names {key}={repr(value)[:40]}, but its notebook ran "
                f"{key}={repr(ran[key])[:40]}"
            )


def read(notebook) -> Report:
    """The report in `notebook`, validated as data, or UserError saying what is wrong."""
    meta = notebook.metadata.get("repro")
    if not isinstance(meta, dict) or meta.get("rerun") is None:
        raise UserError(
            "the report carries no rerun record: only run reports made by repro can be rerun"
        )
    if meta.get("status") != "ok":
        raise UserError(f"the report is a {meta.get('status')} run: it has nothing to reproduce")
    record = RerunRecord.from_json(meta["rerun"], "the report's rerun record")
    kernel = name(record.kernel, NAME, "kernel")
    if kernel == "unpinned" or record.lock is None:
        raise UserError(
            "the report ran unpinned: it has no lock to rebuild its kernel from; rerun it with "
            "`repro run --unpinned` and the parameters in its run.sh"
        )
    spec = plan.check_spec(record.workload, "the report's workload spec")
    name(spec["name"], NAME, "workload")
    as_ran(notebook, record)
    try:
        pins = read_lock(record.lock)
    except ValueError as error:
        raise bad(f"its lock is refused: {error}") from None
    metrics, environment = original_results(notebook, meta, record)
    return Report(
        workload=spec,
        framework=record.framework,
        kernel=kernel,
        params={k: parameter_text(k, v) for k, v in record.params.items() if v is not None},
        pins=pins,
        code=checked_code(meta, record.code),
        metrics=metrics,
        environment=environment,
    )


@dataclass(frozen=True)
class Differences:
    """How a report differs from this checkout, one line per difference, and the diff to show."""

    code: list[str]  # template and library: code that would run
    lock: list[str]  # packages that would be installed
    spec: list[str]  # the workload spec
    diff: str

    @property
    def summary(self) -> list[str]:
        return self.code + self.lock + self.spec


def differences(report: Report) -> Differences:
    """What in `report` differs from this checkout: the code that would run, the packages that
    would be installed and the workload spec (the kernel is one this checkout has)."""
    template = templates.checkout_text(report.code["template"]["name"])
    code, diff = snapshot.differences(report.code, snapshot.library_files(), template)
    local_lock = KERNELSPECS / report.kernel / "requirements.lock"
    changes = lock_changes(report.pins, read_lock(local_lock.read_text()))
    lock = [f"the lock differs ({len(changes)} packages)"] if changes else []
    if changes:
        diff += (
            f"--- this checkout: {local_lock.relative_to(KERNELSPECS.parent)}\n"
            "+++ the report's lock: what a rerun would install\n" + "\n".join(changes) + "\n"
        )
    workload = report.workload["name"]
    local = plan.workloads().get(workload)
    theirs, ours, spec = integrity.canonical(report.workload), integrity.canonical(local), []
    own = local is None and is_source(report.workload["model"]["arch"])  # a user's model:
    if theirs != ours and not own:  # its spec is data, its pins checked again by the probe
        spec = [f"workload {workload} " + ("differs" if local else "is not in this checkout")]
        diff += snapshot.json_diff(ours, theirs, f"workload {workload}")
    return Differences(code, lock, spec, diff)
