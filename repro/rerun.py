"""Rerun a report from the file alone, wherever it was copied (driver side).

The report's metadata carries the rerun record (`finalize.rerun_record`): workload spec,
parameters and seeds, kernel and lock, template and library code. A rerun validates the
parameters as for a fresh run, builds a kernel from the report's lock when it differs from this
checkout's, and runs the report's code, after showing how that code differs from this checkout
and stopping unless the user trusts it. The new run ends with a rerun verdict section.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import nbformat

from repro import integrity, plan, snapshot
from repro.errors import UserError
from repro.finalize import published
from repro.paths import KERNELS, ROOT, TEMPLATES
from repro.run import Run, run
from repro.verdict import TOLERANCE


def report_path(source: Path, scratch: Path) -> Path:
    """The report.ipynb inside a run folder or bundle, or `source` itself."""
    if source.is_dir():
        source = source / "report.ipynb"
    elif source.name.endswith((".tar.gz", ".tgz")) and source.is_file():
        source = integrity.unpack(source, scratch) / "report.ipynb"
    if source.suffix != ".ipynb" or not source.is_file():
        raise UserError(f"cannot rerun {source}: give a report.ipynb, a run folder or a bundle")
    return source


def read(report: Path, tolerance: float) -> tuple[dict, dict]:
    """(the rerun record, the original's metrics/environment/integrity problems)."""
    try:
        notebook = nbformat.read(report, as_version=4)
    except Exception as error:  # not JSON, not a notebook: say so in one line
        raise UserError(f"cannot read {report} as a notebook: {error}") from None
    meta = notebook.metadata.get("repro", {})
    record = meta.get("rerun")
    if record is None:
        raise UserError(
            f"{report} carries no rerun record: only run reports made by repro can be rerun"
        )
    if meta.get("status") != "ok":
        raise UserError(f"{report} is a {meta.get('status')} run: it has no metrics to reproduce")
    if record["kernel"] == "unpinned":
        raise UserError(
            f"{report} ran unpinned: it has no lock to rebuild its kernel from; rerun it with "
            "`repro run --unpinned` and the parameters in its run.sh"
        )
    results, _ = published(notebook)
    metrics = dict(results["metrics"])
    original = {
        "metrics": {
            "run_id": meta["run"]["run_id"],
            "samples": metrics.pop("samples"),
            "summary": metrics,
        },
        "environment": meta["environment"],
        "integrity": integrity.notebook_problems(notebook),
        "verdict": {"tolerance": tolerance},
    }
    return record, original


def code_to_run(code: dict, trust: bool, log) -> tuple[Path, Path]:
    """(PYTHONPATH folder, template) to run: this checkout's when the report's code is the same,
    the report's own (extracted under .kernels/code/) when it differs and the user trusts it."""
    name = code["template"]["name"]
    template = TEMPLATES / name
    summary, diff = snapshot.differences(
        code, snapshot.library_files(), template.read_text() if template.is_file() else None
    )
    if not summary:
        return ROOT, template
    if not trust:
        print(diff, file=log)
        raise UserError(
            f"the report's code differs from this checkout ({'; '.join(summary)}); read the "
            "diff above, then rerun with --trust (make rerun TRUST=1) to execute the report's code"
        )
    print(f"running the report's own code (trusted): {'; '.join(summary)}", file=log)
    folder = KERNELS / "code" / snapshot.code_id(code)
    if not folder.is_dir():
        with tempfile.TemporaryDirectory(dir=KERNELS) as tmp:
            snapshot.extract(code, Path(tmp))
            (Path(tmp) / "templates").mkdir()
            (Path(tmp) / "templates" / name).write_text(code["template"]["text"])
            shutil.move(tmp, folder)
    return folder, folder / "templates" / name


def rerun(
    source: str | Path,
    trust: bool = False,
    runs_dir: str | Path | None = None,
    tolerance: float = TOLERANCE,
    log=sys.stderr,
) -> Run:
    """Rerun the report in `source` (report.ipynb, run folder or bundle) into a new run folder;
    its verdict counts a significant shift within `tolerance` (0.05: 5%) as reproduced."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        record, original = read(report_path(Path(source), scratch), tolerance)
        for problem in original["integrity"]:
            print(f"warning: the report fails verification: {problem}", file=log)
        code, template = code_to_run(record["code"], trust, log)
        lock = scratch / "requirements.lock"
        lock.write_text(record["lock"])
        params = {
            k: str(v).lower() if isinstance(v, bool) else str(v)
            for k, v in record["params"].items()
            if v is not None
        }
        request = plan.resolve(
            record["workload"]["name"],
            record["framework"],
            params,
            kernel=record["kernel"],
            template=str(template),
            runs_dir=runs_dir,
            spec=record["workload"],
            lock=lock,
            code=code,
            reference=original,
        )
        print(f"rerunning {original['metrics']['run_id']}", file=log)
        return run(request, argv=["rerun", str(source)], log=log)
