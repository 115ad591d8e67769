"""Rerun a report from the file alone, wherever it was copied (driver side).

The report's metadata carries the rerun record (`finalize.rerun_record`): workload spec,
parameters and seeds, kernel and lock, template and library code. A rerun first verifies the
report, reads it as untrusted data (`untrusted.read`), and shows and refuses whatever differs
from this checkout (code, lock, spec) unless the user trusts it; then it runs the plan as a
fresh run would, in a kernel built from the report's lock when that differs, and the new report
ends with a rerun verdict section.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from repro import integrity, kernels, plan, snapshot, untrusted
from repro.errors import ReproError, UserError
from repro.lockfile import read_lock, render
from repro.paths import KERNELS, KERNELSPECS, ROOT, TEMPLATES
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


def verified(source: Path, trust: bool, log) -> None:
    """Stop unless the report passes `repro verify` or the user trusts it anyway."""
    problems = integrity.check(source)
    for problem in problems:
        print(f"the report fails verification: {problem}", file=log)
    if problems and not trust:
        raise ReproError(
            f"the report changed after its run ({len(problems)} problems above), so its code and "
            "lock are not what ran; check it with `repro verify`, and rerun with --trust only "
            "if you trust where it came from"
        )


def same_as_checkout(report: untrusted.Report, trust: bool, log) -> None:
    """Stop unless the report's code, lock and spec are this checkout's or the user trusts them:
    what differs is shown first (code as a diff, the lock as the packages it would install)."""
    summary, diff = untrusted.differences(report)
    if summary and not trust:
        print(diff, file=log)
        raise UserError(
            f"the report differs from this checkout ({'; '.join(summary)}); read the diff "
            "above, then rerun with --trust (make rerun TRUST=1) to install and run what it "
            "carries"
        )
    if summary:
        print(f"running what the report carries (trusted): {'; '.join(summary)}", file=log)


def code_to_run(code: dict) -> tuple[Path, Path]:
    """(PYTHONPATH folder, template) to run: this checkout's when the report's code is the same,
    the report's own (extracted under .kernels/code/) when it differs (trusted by the gate)."""
    name, text = code["template"]["name"], code["template"]["text"]
    template = TEMPLATES / name
    local = snapshot.tree_sha256(snapshot.library_files())
    if code["library"]["sha256"] == local and snapshot.template_text(template) == text:
        return ROOT, template
    folder = KERNELS / "code" / snapshot.code_id(code)
    if not folder.is_dir():
        KERNELS.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=KERNELS) as tmp:
            snapshot.extract(code, Path(tmp))
            (Path(tmp) / "templates").mkdir()
            (Path(tmp) / "templates" / name).write_text(text)
            folder.parent.mkdir(exist_ok=True)
            shutil.move(tmp, folder)
    return folder, folder / "templates" / name


def lock_to_use(report: untrusted.Report, scratch: Path) -> Path | None:
    """None (this checkout's lock) when the report pins the same packages; else its pins,
    rewritten from the validated data so that nothing but names, versions and hashes reach pip."""
    local = KERNELSPECS / report.kernel / "requirements.lock"
    if read_lock(local.read_text()) == report.pins:
        return None
    lock = scratch / "requirements.lock"
    lock.write_text(render(report.pins))
    return lock


def rerun(
    source: str | Path,
    trust: bool = False,
    runs_dir: str | Path | None = None,
    tolerance: float = TOLERANCE,
    log=sys.stderr,
    force_memory: bool = False,
) -> Run:
    """Rerun the report in `source` (report.ipynb, run folder or bundle) into a new run folder;
    its verdict counts a significant shift within `tolerance` (0.05: 5%) as reproduced."""
    with tempfile.TemporaryDirectory() as tmp:
        scratch = Path(tmp)
        notebook = integrity.read_notebook(report_path(Path(source), scratch), "report")
        verified(Path(source), trust, log)
        report = untrusted.read(notebook)
        if report.kernel not in kernels.available():
            raise UserError(
                f"the report ran in kernel {report.kernel!r}, which this checkout does not have; "
                f"kernels here: {', '.join(kernels.available())}"
            )
        same_as_checkout(report, trust, log)
        code, template = code_to_run(report.code)
        request = plan.resolve(
            report.workload["name"],
            report.framework,
            report.params,
            kernel=report.kernel,
            template=str(template),
            runs_dir=runs_dir,
            spec=report.workload,
            lock=lock_to_use(report, scratch),
            code=code,
            reference={
                **report.original,
                "integrity": integrity.notebook_problems(notebook),
                "verdict": {"tolerance": tolerance},
            },
        )
        print(f"rerunning {report.original['metrics']['run_id']}", file=log)
        return run(request, argv=["rerun", str(source)], log=log, force_memory=force_memory)
