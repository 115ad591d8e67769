"""The `repro` command (driver side). A user error prints one line, `repro: <what to fix>`, and
exits non-zero (2: bad input); anything else is a bug in repro: its traceback, then a line saying
so (exit 70)."""

from __future__ import annotations

import argparse
import errno
import re
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from repro import paths
from repro.bounds import number
from repro.driver import datasets, kernels, plan, sources
from repro.driver.talk import talking
from repro.errors import (
    INTERNAL,
    INTERRUPTED,
    ReproError,
    UserError,
    brief,
    make_vars,
    option,
    quoted,
)
from repro.paths import RUNS


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one `repro: ...` line (exit 2) instead of usage + message; where
    make ran repro, the arguments are named by their make variables (`option`)."""

    def error(self, message: str) -> NoReturn:
        if make_vars():  # "argument -f/--framework: ..." -> "FRAMEWORK: ..."
            message = re.sub(r"argument (?:\S+/)?(\S+): ", lambda m: f"{option(m[1])}: ", message)
            message = re.sub(
                r"(required: )(.+)",
                lambda m: m[1] + ", ".join(option(name) for name in m[2].split(", ")),
                message,
            )
        see = "make help" if make_vars() else f"{self.prog} --help"
        print(f"repro: {message} (see `{see}`)", file=sys.stderr)
        raise SystemExit(UserError.exit_code)


MAX_RETRIES = 100  # --retries: times a failed sweep cell is tried again


def given(text: str) -> str:
    """An argument that must not be empty (`make run WORKLOAD=` passes an empty one)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def _params_help() -> str:
    lines = ["parameters (-p name=value; defaults from the workload spec where not shown):"]
    for p in plan.PARAMS.values():
        default = "" if p.default is None else f", default {p.default}"
        valid = f" {p.valid}" if p.valid else ""
        lines.append(f"  {p.name:<11} {p.type.__name__}{valid}: {p.help}{default}")
    return "\n".join(lines)


def workload_table() -> str:
    """Every workload with its task, preset size and analytic parameter count."""
    from repro.kernel import models

    lines = [f"{'workload':<15} {'task':<24} {'preset':<6} {'parameters':>15}  seq"]
    for name, spec in plan.workloads().items():
        params = models.config(spec["model"]).num_params()  # a source's: known once resolved
        shown = "from the file" if spec["model"]["arch"] in models.SAVED else "-"
        shown = f"{params:,}" if params else shown
        seq = spec.get("sequence_length") or "-"
        lines.append(
            f"{name:<15} {spec['task']:<24} {spec.get('preset', '?'):<6} {shown:>15}  {seq}"
        )
    return "\n".join(lines)


def parse_percentage(text: str, flag: str) -> float:
    """ "5%" or "0.05" -> 0.05, or UserError naming `flag`."""
    percent = text.endswith("%")
    try:
        value = number(text.removesuffix("%"), flag, float, 0, 1000 if percent else 10)
    except UserError:
        raise UserError(
            f"{option(flag)} takes a percentage such as 5% (0% to 1000%), got {quoted(text)}"
        ) from None
    return value / 100 if percent else value


def compare_runs(args, give) -> int:
    """Print each run against the baseline and write the comparison report; with
    --fail-if-slower, exit 1 on a significant regression beyond the threshold. `give` takes
    the runs, their verdicts and the report's path (--json)."""
    from repro import records, stats
    from repro.driver.closing import record

    runs_dir = None if args.no_report else paths.runs_dir(args.runs_dir)  # before any output
    found, skipped = records.gather(args.runs, repeats=False)
    if len(found) < 2:  # what was skipped, inside the one line
        raise UserError(
            f"compare needs at least two finished runs, got {len(found)}"
            + (f"; skipping {len(skipped)}: {'; '.join(skipped)}" if skipped else "")
        )
    for line in skipped:
        print(f"skipping {line}", file=sys.stderr)
    base, *runs = found
    differences = records.context_differences([base, *runs])
    for field, values in differences.items():
        print(f"context differs: {field}: {values}")
    if differences and not args.allow_mixed:
        raise UserError(
            f"the runs' context differs ({', '.join(differences)}); compare them "
            f"anyway with {option('--allow-mixed', True)}"
        )
    threshold = (
        parse_percentage(args.fail_if_slower, "--fail-if-slower") if args.fail_if_slower else None
    )
    failed, pairs = False, []
    for run in [base, *runs]:
        print(
            f"{run.name}: {run.headline.quote()}" + (" [busy machine]" if run.summary.busy else "")
        )
    for run in runs:
        r = records.judge(base, run)
        fails = r["judged"] and stats.slower(r, threshold or 0.0)
        failed |= threshold is not None and fails
        pairs.append({**r, "regression": threshold is not None and fails})
        ratio = (
            f"step time x{stats.figure(r['time_ratio'], r['ci95'])} "
            f"(95% CI {stats.bounds(r['ci95'], '-')}, p={r['p_value']:.3g}; {r['basis']}): "
            if r["judged"]
            else ""
        )
        print(
            f"{r['new']} vs {r['base']}: {ratio}{r['verdict']}"
            + (" -> REGRESSION" if threshold is not None and fails else "")
        )
    report = None
    if not args.no_report:
        from repro.driver.compare import write_report

        with talking(sys.stderr) as log:
            folder = write_report([base, *runs], runs_dir, args.allow_mixed, log)
        report = folder / "report.html"
        print(f"comparison report: {report}")
        refresh_index(runs_dir)
    give(
        {
            "runs": [record(run.metrics, run.folder) for run in [base, *runs]],
            "pairs": pairs,
            "report_html": report and str(report.absolute()),
        }
    )
    return 1 if failed else 0


def history(args) -> int:
    """Write the history report over the finished runs under the given folders (runs/)."""
    from repro.driver.history import regressions, write_history

    runs_dir = paths.runs_dir(args.runs_dir)
    threshold = parse_percentage(args.threshold, "--threshold")
    if not args.runs and not runs_dir.is_dir():
        raise UserError(
            f"history found no runs: {runs_dir} does not exist; make one with `make run`"
        )
    with talking(sys.stderr) as log:
        folder = write_history(args.runs or [str(runs_dir)], args.by, threshold, runs_dir, log)
    for r in regressions(folder):
        print(f"regression: {r['series']}: {r['run']}: {r['versus_previous']['verdict']}")
    print(f"history report: {folder / 'report.html'}")
    refresh_index(runs_dir)
    return 0


JSON_HELP = "print one JSON object on stdout for CI (everything else goes to stderr)"


def parser() -> argparse.ArgumentParser:
    top = Parser(prog="repro", description="Reproducible framework benchmarks.")
    sub = top.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="run a workload notebook in a pinned kernel",
        epilog=_params_help(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "workload",
        nargs="?",
        type=given,
        help="a workload (`repro list`) or a workload file (.yaml); "
        f"default {plan.DEFAULT_WORKLOAD}",
    )
    run.add_argument(
        "--model",
        type=given,
        metavar="SOURCE",
        help="your own model instead of a workload: hf:<hub id or directory> (transformers) or "
        "module:<file.py>:<function> (your code returning a torch model); batch_size 1, fp32, "
        "inference unless -p says otherwise",
    )
    run.add_argument(
        "-f",
        "--framework",
        default=plan.DEFAULT_FRAMEWORK,
        type=given,
        help=f"one of {', '.join(plan.FRAMEWORKS)} (default {plan.DEFAULT_FRAMEWORK})",
    )
    run.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    run.add_argument(
        "--params",
        default="",
        metavar="'NAME=VALUE ...'",
        help="parameters as one space-separated list (how `make run PARAMS=...` passes them)",
    )
    run.add_argument(
        "--kernel",
        default="auto",
        help="kernelspecs/ folder to use; auto (default): <framework>-cuda where nvidia-smi "
        "sees a GPU, else <framework>-cpu",
    )
    run.add_argument(
        "--unpinned",
        action="store_true",
        help="run in an existing interpreter instead of a pinned kernel",
    )
    run.add_argument("--python", help="the interpreter for --unpinned (default: this one)")
    run.add_argument(
        "--allow-drift",
        action="store_true",
        help="run even if the kernel differs from its lock (shown in the report)",
    )
    run.add_argument(
        "--force-memory",
        action="store_true",
        help="run even if the memory estimate says it will not fit",
    )
    run.add_argument(
        "--template", help="a notebook to run as it is, instead of the task's template (advanced)"
    )
    run.add_argument("--runs-dir", help="where run folders go (default runs/)")
    run.add_argument("--json", action="store_true", help=JSON_HELP)

    lesson = sub.add_parser(
        "lesson", help="run a lesson: one benchmarking pitfall, measured on this machine"
    )
    lesson.add_argument("name", nargs="?", type=given, help="the lesson (none: list them)")
    lesson.add_argument("-f", "--framework", type=given, help="default: the lesson's first")
    lesson.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    lesson.add_argument("--params", default="", metavar="'NAME=VALUE ...'")
    lesson.add_argument("--runs-dir", help="where run folders go (default runs/lessons/)")

    kern = sub.add_parser("kernels", help="build, register and verify the pinned kernels")
    kern.add_argument(
        "names",
        nargs="*",
        help="default: those for this machine (CUDA kernels only where nvidia-smi sees a GPU)",
    )
    kern.add_argument("--rebuild", action="store_true", help="rebuild even if up to date")

    lock = sub.add_parser("lock", help="recompile the kernel locks with uv")
    lock.add_argument("names", nargs="*")
    lock.add_argument(
        "--upgrade", action="store_true", help="newest versions (default: keep the locked pins)"
    )

    sub.add_parser("list", help="list workloads, frameworks, kernels and parameters")

    house = sub.add_parser(
        "wheelhouse", help="offline wheels of repro's runtime for a machine with no network"
    )
    house.add_argument("--out", default=".device", help="output folder (default .device)")
    house.add_argument("--python-version", default="3.12", help="the target's Python (3.12)")
    house.add_argument(
        "--have", help="`pip list --format=freeze` taken on the target: what it need not get"
    )

    data = sub.add_parser("data", help="write a small real data set for mode=train-to-accuracy")
    data.add_argument(
        "name",
        choices=list(datasets.WRITERS),
        help="; ".join(f"{name}: {about}" for name, (_, _, about) in datasets.WRITERS.items()),
    )
    data.add_argument("dest", type=given, help="the folder or file to create (must not exist)")

    verify = sub.add_parser("verify", help="check a run folder, bundle or report for edits")
    verify.add_argument(
        "report", type=given, help="a run folder, a .tar.gz bundle, or a report.ipynb"
    )

    bundle = sub.add_parser("bundle", help="pack a run folder into one .tar.gz to share")
    bundle.add_argument("run", type=given, help="the run folder")
    bundle.add_argument("-o", "--output", help="archive path (default: <run folder>.tar.gz)")

    rerun = sub.add_parser(
        "rerun", help="rerun a report from the file alone and judge whether it reproduced"
    )
    rerun.add_argument(
        "report", type=given, help="a report.ipynb, a run folder or a .tar.gz bundle"
    )
    rerun.add_argument(
        "--trust",
        action="store_true",
        help="run the report's own code even where it differs from this checkout (shown first)",
    )
    rerun.add_argument(
        "--tolerance",
        default="10%",
        metavar="PCT",
        help="the equivalence margin: a rerun whose median step time is shown within ±PCT of "
        "the original's is reproduced (default 10%%)",
    )
    rerun.add_argument(
        "--force-memory",
        action="store_true",
        help="rerun even if the memory estimate says it will not fit",
    )
    rerun.add_argument(
        "--yes",
        action="store_true",
        help="rerun even if it would measure far longer than a default run (said first)",
    )
    rerun.add_argument("--runs-dir", help="where the new run folder goes (default runs/)")
    rerun.add_argument("--json", action="store_true", help=JSON_HELP)

    compare = sub.add_parser(
        "compare", help="compare runs against the first, with statistics and a report"
    )
    compare.add_argument(
        "runs",
        nargs="+",
        type=given,
        help="run folders (or folders of runs); the first run is the baseline",
    )
    compare.add_argument(
        "--fail-if-slower",
        metavar="PCT",
        help="exit 1 if a run is significantly slower than the base by more than PCT (e.g. 5%%)",
    )
    compare.add_argument(
        "--allow-mixed",
        action="store_true",
        help="compare runs whose context differs (listed in the output)",
    )
    compare.add_argument(
        "--no-report", action="store_true", help="print the statistics only (quick CI gate)"
    )
    compare.add_argument("--runs-dir", help="where the comparison folder goes (default runs/)")
    compare.add_argument("--json", action="store_true", help=JSON_HELP)

    hist = sub.add_parser(
        "history", help="throughput and latency of every run over time, regressions flagged"
    )
    hist.add_argument(
        "--by",
        default="time",
        help="order each series' points by time (the default), commit or framework_version",
    )
    hist.add_argument(
        "runs",
        nargs="*",
        type=given,
        help="run folders or folders of them, sweeps' included (default: the runs folder)",
    )
    hist.add_argument(
        "--threshold",
        default="5%",
        metavar="PCT",
        help="flag a point significantly slower than the one before by more than PCT (5%%)",
    )
    hist.add_argument("--runs-dir", help="where the history folder goes (default runs/)")

    listing = sub.add_parser(
        "index", help="write runs/index.html: every run, comparison, sweep, history and lesson"
    )
    listing.add_argument("--runs-dir", help="the folder to index (default runs/)")

    lab = sub.add_parser(
        "lab", help="open JupyterLab on the checkout (kernels are built on their first start)"
    )
    lab.add_argument("--port", help="the port to listen on (default: Jupyter's, 8888 or next)")
    lab.add_argument("--ip", help="the address to listen on (default: Jupyter's, localhost)")
    lab.add_argument("--token", help="the token to log in with (default: a random one, printed)")

    sweep = sub.add_parser(
        "sweep", help="run a matrix of runs (a sweep file) on Ray, then compare them"
    )
    sweep.add_argument(
        "sweep", type=given, help="the sweep file, e.g. sweeps/frameworks-small.yaml"
    )
    sweep.add_argument(
        "--address",
        help="a running Ray cluster to submit to (default: RAY_ADDRESS, else an embedded one)",
    )
    sweep.add_argument(
        "--retries",
        default="1",
        help="times a failed cell is tried again by a later invocation (default 1)",
    )
    sweep.add_argument(
        "--runs-dir", help="where the sweep folder goes (default: the file's runs_dir, or runs/)"
    )
    sweep.add_argument("--json", action="store_true", help=JSON_HELP)
    return top


def refresh_index(runs_dir: str | Path) -> None:
    """Keep runs/index.html current after a command that added a folder (repro.driver.index)."""
    from repro.driver.index import refresh

    refresh(Path(runs_dir))


def execute_run(
    request: plan.RunPlan, argv: list[str], force_memory: bool = False, give=lambda data: None
):
    """Run `request`, print its closing block and `give` its record (--json); the Result."""
    from repro.driver.closing import closed  # papermill and nbconvert: only for a valid request
    from repro.driver.run import run

    return closed(lambda: run(request, argv=argv, force_memory=force_memory), give)


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command == "run":
            if args.python and not args.unpinned:
                raise UserError(
                    f"--python applies to --unpinned runs only; add {option('--unpinned', True)}"
                )
            spec = None
            if args.model:  # the user's model: a workload spec of its own
                if args.workload:
                    raise UserError(
                        f"give a workload or {option('--model')}, not both ({args.workload})"
                    )
                spec = plan.check_spec(sources.spec_for(args.model), option("--model"))
            request = plan.resolve(
                spec["name"] if spec else args.workload or plan.DEFAULT_WORKLOAD,
                args.framework,
                plan.parse_assignments([*args.param, *args.params.split()]),
                kernel=args.kernel,
                unpinned_python=(args.python or sys.executable) if args.unpinned else None,
                allow_drift=args.allow_drift,
                template=args.template,
                runs_dir=paths.runs_dir(args.runs_dir),
                spec=spec,
            )
            from repro.driver.closing import answering

            with answering(args.json) as give:
                execute_run(
                    request, sys.argv[1:] if argv is None else argv, args.force_memory, give
                )
                refresh_index(request.runs_dir)
        elif args.command == "lesson":
            from repro.driver import lessons

            if not args.name:
                print(lessons.listing())
                return 0
            request = lessons.resolve(
                args.name,
                args.framework,
                plan.parse_assignments([*args.param, *args.params.split()]),
                paths.runs_dir(args.runs_dir, RUNS / "lessons"),
            )
            result = execute_run(request, sys.argv[1:] if argv is None else argv)
            lesson = (result.metrics.summary or {}).get("lesson") or {}
            held = sum(c["held"] for c in lesson.get("claims", []))
            print(f"lesson {args.name}: {held} of {len(lesson.get('claims', []))} claims held here")
            refresh_index(args.runs_dir or RUNS)
        elif args.command == "rerun":
            from repro.driver.closing import answering, closed
            from repro.driver.rerun import rerun

            tolerance = parse_percentage(args.tolerance, "--tolerance")
            runs_dir = paths.runs_dir(args.runs_dir)
            with answering(args.json) as give:
                closed(
                    lambda: rerun(
                        args.report,
                        trust=args.trust,
                        runs_dir=runs_dir,
                        tolerance=tolerance,
                        force_memory=args.force_memory,
                        yes=args.yes,
                    ),
                    give,
                )
                refresh_index(runs_dir)
        elif args.command == "kernels":
            names = args.names
            if (
                not names
            ):  # CUDA kernels only where a GPU is; each only on the Python it was locked for
                names, skipped = kernels.defaults(plan.has_nvidia_gpu())
                for line in skipped:
                    print(f"skipping kernel {line}", file=sys.stderr)
            for name in names:  # every name checked before any kernel is built
                kernels.spec_lock(name)
            with kernels.terminable():
                for name in names:
                    kernel = kernels.build(name) if args.rebuild else kernels.ensure(name)
                    kernels.register(kernel)
                    check = kernels.verify(kernel)
                    print(
                        f"{kernel.spec_name}: {kernel.python} "
                        f"({check['files_checked']:,} files match the lock)"
                    )
        elif args.command == "lock":
            for name in args.names or kernels.lockable():
                kernels.compile_lock(name, upgrade=args.upgrade)
        elif args.command == "list":
            print(workload_table())
            print("\nframeworks:", ", ".join(plan.FRAMEWORKS))
            print("kernels:", ", ".join(kernels.available()))
            print(_params_help())
        elif args.command == "wheelhouse":
            from repro.driver import wheelhouse

            have = Path(args.have) if args.have else None
            wheelhouse.build(Path(args.out), args.python_version, have)
        elif args.command == "data":
            unit, write, _ = datasets.WRITERS[args.name]
            paths.outside_records(args.dest, "the data set's folder")
            print(f"{write(args.dest):,} {unit} -> {args.dest}")
        elif args.command == "verify":
            from repro.driver.integrity import check

            problems = check(args.report)
            for problem in problems:
                print(f"CHANGED: {problem}")
            print(f"{args.report}: " + ("intact" if not problems else f"{len(problems)} changes"))
            return 1 if problems else 0
        elif args.command == "bundle":
            from repro.driver.integrity import bundle

            print(bundle(args.run, args.output))
        elif args.command == "compare":
            from repro.driver.closing import answering

            with answering(args.json) as give:
                return compare_runs(args, give)
        elif args.command == "history":
            return history(args)
        elif args.command == "index":
            from repro.driver.index import write_index

            print(write_index(paths.runs_dir(args.runs_dir)))
        elif args.command == "lab":
            from repro.driver import lab

            lab.open_lab(args.port, args.ip, args.token)
        elif args.command == "sweep":
            from repro.driver.closing import answering, sweep_record
            from repro.driver.sweep import sweep

            retries = number(args.retries, option("--retries"), int, 0, MAX_RETRIES)
            with answering(args.json) as give:
                outcome = sweep(args.sweep, args.address, retries, args.runs_dir)
                report = outcome.comparison / "report.html" if outcome.comparison else None
                print(outcome.table())
                print(f"sweep folder: {outcome.folder}")
                if report:
                    print(f"comparison report: {report}")
                give(sweep_record(outcome, report))
                outcome.check()
    except ReproError as error:
        print(f"repro: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt as stop:  # a run in progress handles its own (run.py): before or after
        print(f"repro: {str(stop) or 'interrupted'}", file=sys.stderr)  # errors.Terminated: 143
        return getattr(stop, "exit_code", INTERRUPTED)
    except Exception as error:  # not the user's fault: keep the traceback for the bug report
        if isinstance(error, OSError) and error.errno == errno.ENAMETOOLONG:  # a name given
            print(
                f"repro: a name or path given is too long: {quoted(error.filename)}",
                file=sys.stderr,
            )
            return UserError.exit_code
        traceback.print_exc()
        print(
            "repro: internal error (a bug in repro, please report it with the traceback above): "
            f"{type(error).__name__}: {brief(error)}",
            file=sys.stderr,
        )
        return INTERNAL
    return 0
