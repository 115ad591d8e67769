"""`repro sweep`: a matrix of ordinary runs on Ray, then one comparison report (driver side).

A sweep file (YAML, untrusted: every key and type checked) names fixed settings and axes; the
product of the axes is the cells, each resolved with `plan.resolve` before any work starts. The
sweep folder, <runs>/sweep_<name>_<digest of the cells>/, is found again by rerunning the same
command: state.json records each cell's status, so done cells are skipped, failed ones retried
up to --retries and interrupted ones resumed. Each cell is a Ray task that calls the ordinary
`run()` in the worker; its run folders go to cells/<cell>/, its output to logs/. Ray's embedded
local cluster is the default; --address (or RAY_ADDRESS) submits to a running cluster, whose
nodes have the project's checkout. A cell on another node than the driver's runs into a temporary
folder there and sends its run folder back as a bundle (`repro bundle`'s format), which the
driver unpacks as untrusted input and verifies; a sweep whose `shared_dir` every node sees is
written there directly instead.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from repro import paths, records
from repro.bounds import number, read_yaml, text
from repro.driver import integrity, memory, plan
from repro.driver.execute import signals_interrupt
from repro.driver.folders import write
from repro.driver.scratch import scratch
from repro.driver.talk import Talk, talking
from repro.driver.untrusted import NAME as PLAIN_NAME
from repro.errors import ReproError, RunFailed, UserError, brief, option, quoted, unknown
from repro.markdown import escape
from repro.paths import RUNS

FIXED_KEYS = ("workload", "framework")
TOP_KEYS = (
    "name",
    *FIXED_KEYS,
    "params",
    "axes",
    "concurrency",
    "num_gpus",
    "template",
    "runs_dir",
    "shared_dir",
)
STATUSES = ("pending", "running", "done", "failed", "interrupted")
SCALAR = (str, int, float, bool)
MAX_CELLS = 1000  # a typo in an axis should not queue a month of runs
MAX_GPUS = 64  # GPUs one cell asks Ray for (a fraction shares one)
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_BUNDLE = 256 * 2**20  # a run folder packs to about 0.5 MB; a node sends back no more than this
MAX_LOG = 2**20  # the end of a cell's log that a node sends back
INSTALL = "Ray is not installed: run `make sweep`, or `pip install -e '.[sweep]'` in repro's venv"


@dataclass(frozen=True)
class Sweep:
    name: str
    file: Path
    cells: list[dict]  # each {"workload", "framework", "params": {name: text}, "axes": {...}}
    axes: dict[str, list]
    concurrency: int
    num_gpus: float
    template: str | None
    runs_dir: Path
    shared_dir: Path | None  # runs_dir, on a file system every node sees: nothing sent back

    @property
    def digest(self) -> str:
        """What identifies the sweep's results: its cells and how they ran (not concurrency)."""
        what = [self.name, self.cells, self.template, self.num_gpus]
        return hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:8]

    @property
    def folder(self) -> Path:
        return self.runs_dir / f"sweep_{self.name}_{self.digest}"


def label(cell: dict) -> str:
    """`framework=torch batch_size=2`: the cell's values of the sweep's axes."""
    return " ".join(f"{k}={v}" for k, v in cell["axes"].items())


def key(index: int, cell: dict) -> str:
    """The cell's folder and state name: its index and its axis values, file-system safe."""
    values = "_".join(f"{k}={v}" for k, v in cell["axes"].items())
    return f"{index:02d}_" + re.sub(r"[^A-Za-z0-9.=_-]", "-", values)[:80]


def scalar(value, where: str) -> str:
    """A YAML scalar as the text `plan.resolve` parses (true -> "true")."""
    if not isinstance(value, SCALAR):
        raise UserError(f"{where} must be a single value (text or number), got {quoted(value)}")
    return str(value).lower() if isinstance(value, bool) else str(value)


def mapping(value, where: str) -> dict:
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise UserError(f"{where} must be a mapping of names to values")
    return value


def read_axes(axes, where: str) -> dict[str, list[str]]:
    """The `axes` mapping checked: known names, each a non-empty list of distinct scalars."""
    if not axes:
        raise UserError(f"{where}: no axes; name at least one, e.g. axes: {{batch_size: [2, 4]}}")
    valid = (*FIXED_KEYS, *plan.PARAMS)
    checked = {}
    for axis, values in mapping(axes, f"{where}: axes").items():
        if axis not in valid:
            raise UserError(f"{where}: {unknown('axis', axis, list(valid))}")
        if not isinstance(values, list) or not values:
            raise UserError(f"{where}: axes.{axis} must be a non-empty list, e.g. [a, b]")
        checked[axis] = [scalar(v, f"{where}: axes.{axis}") for v in values]
        if len(set(checked[axis])) < len(values):
            raise UserError(f"{where}: axes.{axis} lists a value twice; list each once")
    return checked


def expand(fixed: dict[str, str], axes: dict[str, list[str]]) -> list[dict]:
    """Every cell of the axes' product, in order (the last axis varies fastest)."""
    cells = []
    for values in itertools.product(*axes.values()):
        varied = dict(zip(axes, values, strict=True))
        params = {**fixed, **varied}
        cells.append(
            {
                "workload": params.pop("workload", plan.DEFAULT_WORKLOAD),
                "framework": params.pop("framework", plan.DEFAULT_FRAMEWORK),
                "params": params,
                "axes": varied,
            }
        )
    return cells


def load(path: str | Path, runs_dir: str | Path | None = None) -> Sweep:
    """The sweep file at `path`, its keys and value types checked, expanded into cells (not yet
    resolved: `check`); UserError naming the file and what to fix otherwise."""
    path = Path(path)
    where = f"sweep file {path}"
    data = mapping(read_yaml(path, "sweep file"), where)
    extra = sorted(set(data) - set(TOP_KEYS))
    if extra:
        raise UserError(f"{where}: {unknown('key', extra[0], list(TOP_KEYS))}")
    name = data.get("name", path.stem)
    if not isinstance(name, str) or not NAME.fullmatch(name):
        raise UserError(
            f"{where}: name must be up to 64 letters, digits, '.', '_' or '-', got {quoted(name)}"
        )
    fixed = {
        k: scalar(v, f"{where}: params.{k}")
        for k, v in mapping(data.get("params", {}), f"{where}: params").items()
    }
    axes = read_axes(data.get("axes"), where)
    for name_ in FIXED_KEYS:
        if name_ in data:
            fixed[name_] = scalar(data[name_], f"{where}: {name_}")
    both = sorted(set(fixed) & set(axes))
    if both:
        raise UserError(f"{where}: {both[0]} is both fixed and an axis; give it in one place")
    count = math.prod(len(values) for values in axes.values())
    if count > MAX_CELLS:
        raise UserError(f"{where}: {count:,} cells; at most {MAX_CELLS:,}, so split the sweep")
    concurrency = number(data.get("concurrency", 1), f"{where}: concurrency", int, 1, MAX_CELLS)
    given = {k: text(data[k], f"{where}: {k}") for k in ("template", "runs_dir") if k in data}
    template = given.get("template")
    shared = shared_folder(data, runs_dir, where)
    folder = shared or paths.runs_dir(runs_dir or file_runs_dir(given.get("runs_dir"), where))
    return Sweep(
        name=name,
        file=path,
        cells=expand(fixed, axes),
        axes=axes,
        concurrency=concurrency,
        num_gpus=number(data.get("num_gpus", 0), f"{where}: num_gpus", float, 0, MAX_GPUS),
        template=str(Path(template).absolute()) if template else None,  # a worker's cwd differs
        runs_dir=folder,
        shared_dir=shared,
    )


def shared_folder(data: dict, runs_dir, where: str) -> Path | None:
    """The file's shared_dir: an absolute path to a folder (a mount every node has), which is
    then where the sweep goes; None if it names none."""
    shared = data.get("shared_dir")
    if shared is None:
        return None
    if not (isinstance(shared, str) and Path(text(shared, f"{where}: shared_dir")).is_absolute()):
        raise UserError(
            f"{where}: shared_dir must be an absolute path every node sees, got {quoted(shared)}"
        )
    if runs_dir or data.get("runs_dir"):
        raise UserError(
            f"{where}: shared_dir is where the sweep goes (on every node); drop runs_dir "
            "or --runs-dir"
        )
    if not Path(shared).is_dir():
        raise UserError(
            f"{where}: shared_dir {shared} is not a folder here; mount the shared file system "
            "there, or drop shared_dir to have other nodes send their run folders back"
        )
    paths.runs_dir(shared, fix=f"fix shared_dir in {where}")  # kept as given: every node's path
    return Path(shared)


def file_runs_dir(value, where: str) -> Path:
    """A sweep file's runs_dir: a folder under runs/ (the default), never outside it. The file
    is data that may come from anyone; where on this machine a sweep goes is the user's call,
    given with --runs-dir."""
    if value is None:
        return RUNS
    folder = RUNS / value if isinstance(value, str) and value else None
    if folder is None or not paths.inside(folder, RUNS):
        raise UserError(
            f"{where}: runs_dir must name a folder under {RUNS} (such as nightly), got "
            f"{value!r}; give any other place with {option('--runs-dir')}"
        )
    return folder


def resolve_cell(sweep: Sweep, cell: dict, runs_dir: Path | None = None) -> plan.RunPlan:
    """The cell's RunPlan, as `repro run` would resolve it. A cell given no GPU runs on the CPU
    (device=auto would pick a CUDA kernel on a GPU node)."""
    params = dict(cell["params"])
    if not sweep.num_gpus and params.get("device", "auto") == "auto":
        params["device"] = "cpu"
    return plan.resolve(
        cell["workload"],
        cell["framework"],
        params,
        template=sweep.template,
        runs_dir=runs_dir or sweep.runs_dir,
    )


def check(sweep: Sweep, remote: bool, log=sys.stderr) -> Sweep:
    """Resolve every cell before anything runs: UserError naming the first bad cell. On a
    cluster, device=gpu is checked by the worker, whose node has the GPU. Cells that resolve to
    the same run (scaling on one device) run once: the sweep of the distinct cells."""
    distinct: dict[str, dict] = {}
    for cell in sweep.cells:
        params = cell["params"]
        try:
            if params.get("device") == "gpu" and not sweep.num_gpus:
                raise UserError("device=gpu needs num_gpus >= 1 in the sweep file")
            if remote and params.get("device") == "gpu":
                cell = {**cell, "params": {**params, "device": "auto"}}
            request = resolve_cell(sweep, cell)
            if not remote:  # where it will run: this machine
                memory.check(request.workload, request.params)
        except UserError as error:
            raise UserError(f"sweep file {sweep.file}: cell {label(cell)}: {error}") from None
        same = json.dumps(
            [request.workload["name"], request.framework, request.params],
            sort_keys=True,
            default=str,
        )
        if same in distinct:
            log.write(
                f"cell {label(cell)} is the same run as {label(distinct[same])}: it runs once\n"
            )
        else:
            distinct[same] = cell
    return dataclasses.replace(sweep, cells=list(distinct.values()))


# --- in the Ray worker -----------------------------------------------------------------------


def run_cell(
    sweep: Sweep, cell: dict, cell_dir: str, log_path: str, context: dict, driver_node: str
) -> dict:
    """One cell, in a Ray worker. On the driver's node, or where the sweep is in a shared_dir,
    it writes into its cell's folder; on another node it runs in a temporary folder there and
    sends its run folder back (`send_back`). Returns the outcome and the node's id."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    context = {**context, "node": node}
    if node != driver_node and not sweep.shared_dir:
        return send_back(sweep, cell, Path(cell_dir).name, context)
    if node != driver_node and not (sweep.folder / "sweep.yaml").is_file():
        error = (
            f"node {node[:8]} does not see the sweep folder {sweep.folder} (shared_dir): mount "
            "it there, or drop shared_dir to have run folders sent back"
        )
        return {"status": "failed", "folder": None, "error": error, "node": node}
    return {**attempt(sweep, cell, cell_dir, log_path, context), "node": node}


def send_back(sweep: Sweep, cell: dict, name: str, context: dict) -> dict:
    """Run the cell in a temporary folder on this node, and return its outcome with the end of
    its log and its run folder packed as a bundle (the bytes of `repro bundle`'s .tar.gz). A run
    folder that cannot be packed is kept on the node, and the error says where."""
    scratch = Path(tempfile.mkdtemp(prefix="repro-cell-"))
    keep = False
    try:
        log = scratch / f"{name}.log"
        outcome = attempt(sweep, cell, str(scratch / name), str(log), context)
        sent = {**outcome, "folder": None, "node": context["node"], "log": tail(log)}
        try:
            sent["bundle"] = packed(Path(outcome["folder"])) if outcome["folder"] else None
        except UserError as error:
            keep = True
            kept = f"{error}; it is kept on node {context['node'][:8]} at {outcome['folder']}"
            errors = [e for e in (outcome["error"], kept) if e]
            return {**sent, "bundle": None, "status": "failed", "error": "; ".join(errors)}
        return sent
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)


def packed(folder: Path) -> bytes:
    """The run folder as a bundle's bytes; UserError if it is unfinished or too large to send."""
    archive = integrity.bundle(folder)
    data = archive.read_bytes()
    archive.unlink()
    if len(data) > MAX_BUNDLE:
        raise UserError(f"its run folder packs to {mb(len(data))}, more than {mb(MAX_BUNDLE)}")
    return data


def mb(size: int) -> str:
    return f"{size / 2**20:,.2f} MiB"


def tail(log: Path) -> str:
    """The last MAX_LOG bytes of a log, as text."""
    try:
        with log.open("rb") as file:
            file.seek(max(0, log.stat().st_size - MAX_LOG))
            return file.read().decode(errors="replace")
    except OSError:
        return ""


def attempt(sweep: Sweep, cell: dict, cell_dir: str, log_path: str, context: dict) -> dict:
    """The ordinary `run()` of one cell into `cell_dir`, its output in `log_path`. Returns the
    outcome (status done, failed or interrupted) and the run folder it left, if any."""
    from repro.driver.run import Addendum, run

    if not sweep.num_gpus:  # Ray no longer hides the GPUs from a task that asked for none
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    with contextlib.suppress(OSError):  # Ray starts workers at niceness 15: a cell is measured
        os.setpriority(os.PRIO_PROCESS, 0, 0)
    write(Path(log_path).with_suffix(".pid"), str(os.getpid()))
    folder = Path(cell_dir)
    before = folders_in(folder)
    status, error = "done", None
    with (
        interruptible(),
        open(log_path, "a") as log,
        contextlib.redirect_stdout(log),
        contextlib.redirect_stderr(log),
    ):
        try:
            request = resolve_cell(sweep, cell, folder)
            argv = ["sweep", str(sweep.file), "--cell", label(cell)]
            run(request, argv=argv, log=log, addendum=Addendum(context={"sweep": context}))
        except KeyboardInterrupt as stop:
            status, error = "interrupted", str(stop) or "interrupted"
        except ReproError as failure:
            status, error = "failed", str(failure)
        except Exception as failure:  # a bug: its traceback in the cell's log
            traceback.print_exc(file=log)
            status, error = "failed", f"internal error: {type(failure).__name__}: {failure}"
    left = newest(folder, before)
    if left and status == "failed" and run_status(Path(left)) == "interrupted":
        status = "interrupted"
    outcome = {"status": status, "folder": left, "error": error}
    write(outcome_file(log_path), json.dumps(outcome))  # for a driver that cancelled the task
    return outcome


def folders_in(folder: Path) -> set[Path]:
    return set(folder.iterdir()) if folder.is_dir() else set()


def newest(folder: Path, before: set[Path]) -> str | None:
    """The run folder an attempt left in its cell's folder (the newest not in `before`)."""
    new = sorted(folders_in(folder) - before)
    return str(new[-1]) if new else None


def outcome_file(log_path: str | Path) -> Path:
    return Path(log_path).with_suffix(".outcome.json")


@contextlib.contextmanager
def interruptible():
    """Ray's workers block SIGINT: let it in, as Ctrl-C, while a cell runs (the driver's stop()
    sends it; run() finishes an interrupted run folder)."""
    handler = signal.signal(signal.SIGINT, signal.default_int_handler)
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        signal.signal(signal.SIGINT, handler)


def run_status(folder: Path) -> str | None:
    try:
        return json.loads((folder / "metrics.json").read_text()).get("status")
    except (OSError, ValueError, AttributeError):
        return None


# --- state ---------------------------------------------------------------------------------


def new_state(sweep: Sweep) -> dict:
    return {
        "sweep": sweep.name,
        "file": str(sweep.file),
        "digest": sweep.digest,
        "axes": sweep.axes,
        "max_concurrent": 0,
        "comparison": None,
        "cells": {
            key(i, c): {
                "label": label(c),
                "status": "pending",
                "attempts": 0,
                "folder": None,
                "error": None,
                "node": None,  # the Ray node it ran on
                "bundle_bytes": None,  # the size of the bundle it came back in, from another node
            }
            for i, c in enumerate(sweep.cells)
        },
    }


def read_state(sweep: Sweep) -> dict:
    """The sweep folder's state.json checked as data, or a new state; UserError if it is not
    a state of this sweep."""
    path = sweep.folder / "state.json"
    fresh = new_state(sweep)
    if not path.exists():
        return fresh
    fix = f"move {sweep.folder} aside to start the sweep again"
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"cannot read {path}: {brief(error)}; {fix}") from None
    if not valid_state(state, fresh):
        raise UserError(f"{path} is not a state file of this sweep; {fix}")
    cells = state["cells"]
    for name, entry in cells.items():
        entry["label"] = fresh["cells"][name]["label"]
    return state


def valid_state(state, fresh: dict) -> bool:
    """Whether `state`, read from a file, has the shape `new_state` gives, for the same cells."""

    def text(value) -> bool:
        return value is None or isinstance(value, str)

    def entry(e) -> bool:
        return (
            isinstance(e, dict)
            and e.get("status") in STATUSES
            and type(e.get("attempts")) is int
            and text(e.get("folder", 0))
            and text(e.get("error", 0))
        )

    if not isinstance(state, dict) or state.get("digest") != fresh["digest"]:
        return False
    cells, comparison = state.get("cells"), state.get("comparison", 0)
    return (
        isinstance(cells, dict)
        and set(cells) == set(fresh["cells"])
        and all(entry(e) for e in cells.values())
        and type(state.get("max_concurrent")) is int
        and (
            comparison is None
            or isinstance(comparison, dict)
            and isinstance(comparison.get("folder"), str)
            and isinstance(comparison.get("runs"), list)
        )
    )


def save(sweep: Sweep, state: dict) -> None:
    write(sweep.folder / "state.json", json.dumps(state, indent=1) + "\n")


def still_done(sweep: Sweep, entry: dict) -> bool:
    """A done cell whose run folder is still inside the sweep folder and finished."""
    folder = Path(entry["folder"] or "")
    return paths.inside(folder, sweep.folder / "cells") and records.not_finished(folder) is None


# --- the driver ------------------------------------------------------------------------------


class Progress:
    """One line per cell event on stderr: done / running / failed of the total, and an ETA from
    the cells finished so far."""

    def __init__(self, sweep: Sweep, state: dict, log) -> None:
        self.sweep, self.state, self.log = sweep, state, log
        self.durations: list[float] = []

    def line(self, event: str) -> None:
        cells = self.state["cells"].values()
        count = {s: sum(e["status"] == s for e in cells) for s in STATUSES}
        left = count["pending"] + count["running"] + count["interrupted"]
        eta = "?"
        if self.durations:
            eta = (
                f"{sum(self.durations) / len(self.durations) * left / self.sweep.concurrency:.0f}s"
            )
        print(
            f"sweep {self.sweep.name}: {event} [{count['done']} done, {count['running']} running, "
            f"{count['failed']} failed of {len(self.state['cells'])}; ETA {eta}]",
            file=self.log,
            flush=True,
        )


def start_ray(address: str | None, sweep: Sweep, temp_dir: Path) -> str:
    """Connect to the cluster at `address`, or start the embedded one; say which. Either failing
    is one line with its cause (Ray's own retries, a line a second, go to a file)."""
    import logging

    try:
        import ray
    except ImportError:
        raise UserError(INSTALL) from None
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no report home unless asked for
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}  # each cell has its log
    said = temp_dir / "ray-init.log"
    if address:
        token_mode_as_ray_start()
        try:
            with stderr_to(said):
                ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as error:
            if "InvalidAuthToken" in said.read_text(errors="replace") + str(error):
                raise UserError(
                    f"the Ray cluster at {address} asks for its auth token (InvalidAuthToken): "
                    "set RAY_AUTH_TOKEN to the one `ray get-auth-token` prints on its head"
                ) from None
            cause = brief(error.__cause__ or error)
            raise UserError(f"cannot reach the Ray cluster at {address}: {cause}") from None
        return f"the Ray cluster at {address}"
    try:
        with stderr_to(said):
            ray.init(
                num_cpus=max(sweep.concurrency, os.cpu_count() or 1),
                include_dashboard=False,
                object_store_memory=100 * 2**20,  # cells return a path, not data
                _temp_dir=str(temp_dir),
                **quiet,
            )
    except TypeError:  # our call, not the machine: a bug
        raise
    except Exception as error:  # a start that timed out or a process that died: Ray says which
        raise ReproError(
            f"could not start the embedded Ray cluster: {brief(error)}; retry (a busy machine "
            f"slows its start), or start one with `ray start --head` and give "
            f"{option('--address', 'HOST:PORT')}"
        ) from None
    return "an embedded Ray cluster on this machine"


def token_mode_as_ray_start() -> None:
    """`ray start --head` turns token authentication on where a token exists (RAY_AUTH_TOKEN,
    or ~/.ray/auth_token, which an embedded start writes), but a driver given an address does not
    (Ray 2.60): follow `ray start`'s rule, so --address reaches such a head on this machine.
    RAY_AUTH_MODE, where set, decides."""
    from ray._private.authentication import authentication_token_setup as setup

    was = setup.logger.disabled
    setup.logger.disabled = True  # its warning is for a cluster's owner, not a driver
    try:
        setup.maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
    finally:
        setup.logger.disabled = was


@contextlib.contextmanager
def stderr_to(path: Path):
    """File descriptor 2 (Ray's C++ core writes there) into `path` for the duration."""
    sys.stderr.flush()
    saved = os.dup(2)
    with path.open("w") as file:
        os.dup2(file.fileno(), 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def todo(sweep: Sweep, state: dict, retries: int, progress: Progress) -> list[int]:
    """The cells to run now: not done, and failed no more than `retries` times."""
    chosen = []
    for i, cell in enumerate(sweep.cells):
        entry = state["cells"][key(i, cell)]
        if entry["status"] == "done" and still_done(sweep, entry):
            continue
        if entry["status"] == "failed" and entry["attempts"] > retries:
            progress.line(
                f"{entry['label']}: failed {entry['attempts']} times, not retried "
                f"({option('--retries', str(retries))}; raise it to try again); "
                f"see {entry['folder'] or 'its log'}"
            )
            continue
        if entry["status"] in ("done", "running"):  # its folder is gone, or the driver was killed
            entry["status"] = "interrupted"
        chosen.append(i)
    return chosen


def execute(
    sweep: Sweep, state: dict, chosen: list[int], engine: str, retries: int, log: Talk
) -> None:
    """Run the chosen cells on Ray, at most `concurrency` at once, recording each outcome;
    `log` names the cells running while it waits."""
    import ray

    progress = Progress(sweep, state, log)
    task = ray.remote(run_cell).options(
        num_cpus=1,
        num_gpus=sweep.num_gpus,
        max_retries=retries,  # retries: a worker that died
    )
    context = {"name": sweep.name, "concurrency": sweep.concurrency, "engine": engine}
    driver_node = ray.get_runtime_context().get_node_id()
    waiting, running = list(chosen), {}
    (sweep.folder / "logs").mkdir(exist_ok=True)
    try:
        while waiting or running:
            while waiting and len(running) < sweep.concurrency:
                i = waiting.pop(0)
                name = key(i, sweep.cells[i])
                entry = state["cells"][name]
                entry.update(status="running", attempts=entry["attempts"] + 1, error=None)
                logfile = sweep.folder / "logs" / f"{name}.{entry['attempts']}.log"
                cell_dir = sweep.folder / "cells" / name
                ref = task.remote(
                    sweep,
                    sweep.cells[i],
                    str(cell_dir),
                    str(logfile),
                    {**context, "cell": entry["label"]},
                    driver_node,
                )
                running[ref] = (name, time.monotonic(), logfile, folders_in(cell_dir))
                state["max_concurrent"] = max(state["max_concurrent"], len(running))
                save(sweep, state)
                progress.line(f"{entry['label']}: started")
            labels = [state["cells"][name]["label"] for name, *_ in running.values()]
            log.now(f"running {'; '.join(labels)}")
            [ref], _ = ray.wait(list(running), num_returns=1)
            name, began, logfile, before = running.pop(ref)
            outcome = landed(sweep, collect(ray, ref), name, logfile, before)
            entry = state["cells"][name]
            if outcome["status"] == "interrupted":
                entry["attempts"] -= 1  # stopped by the user: not a failed attempt
            entry.update(outcome)
            save(sweep, state)
            progress.durations.append(time.monotonic() - began)
            why = f" ({brief(entry['error'])}; log {logfile})" if entry["error"] else ""
            progress.line(f"{entry['label']}: {entry['status']}{why}{arrival(entry)}")
    except KeyboardInterrupt:
        stop(ray, sweep, state, running, engine.startswith("an embedded"), log)
        raise


def landed(sweep: Sweep, outcome: dict, name: str, logfile: Path, before: set[Path]) -> dict:
    """What to record of a finished task's `outcome`: {status, folder, error, node, bundle_bytes}.
    A run folder sent back from another node is unpacked into the cell's folder first; every
    done or sent-back run folder is verified (`repro verify`'s check) on arrival."""
    if "bundle" in outcome:
        outcome = received(sweep, name, outcome, logfile)
    else:
        outcome = {**outcome, "bundle_bytes": None}
        outcome["folder"] = outcome["folder"] or newest(sweep.folder / "cells" / name, before)
    if outcome["folder"] and (outcome["status"] == "done" or outcome["bundle_bytes"]):
        problems = integrity.check(outcome["folder"])
        if problems:
            outcome.update(status="failed", error=f"changed on arrival: {problems[0]}")
    return {"node": None, **outcome}


def arrival(entry: dict) -> str:
    """`, sent back from node 1a2b3c4d as a bundle of 0.4 MiB`, for a cell from another node."""
    if not entry.get("bundle_bytes"):
        return ""
    return f", sent back from node {entry['node'][:8]} as a bundle of {mb(entry['bundle_bytes'])}"


def received(sweep: Sweep, name: str, sent: dict, logfile: Path) -> dict:
    """What a cell on another node sent back, read as untrusted data: its log written to
    `logfile`, its run folder unpacked from the bundle into the cell's folder."""
    status, error, node = sent.get("status"), sent.get("error"), sent.get("node")
    log, data = sent.get("log"), sent.get("bundle")
    if not (
        status in ("done", "failed", "interrupted")
        and isinstance(error, str | None)
        and isinstance(node, str)
        and re.fullmatch(r"[0-9a-f]{1,128}", node)
        and isinstance(log, str)
        and isinstance(data, bytes | None)
    ):
        error = "its node sent back an outcome that is not one (a different repro version?)"
        return {"status": "failed", "folder": None, "error": error, "bundle_bytes": None}
    write(logfile, log)
    outcome = {"status": status, "folder": None, "error": error and error[:2000], "node": node}
    outcome["bundle_bytes"] = len(data) if data else None
    if data:
        try:
            shown = f"the bundle from node {node[:8]}"
            outcome["folder"] = str(unbundle(data, sweep.folder / "cells" / name, shown))
        except UserError as refused:
            outcome.update(status="failed", error=f"its run folder was refused: {refused}")
    return outcome


def unbundle(data: bytes, cell_dir: Path, shown: str) -> Path:
    """A bundle's bytes unpacked into `cell_dir` as an ordinary run folder, through the checks
    `repro verify` and `rerun` apply to a bundle (integrity.unpack: files only, no path out,
    size limits), and a plain name no other run folder has; UserError otherwise."""
    if len(data) > MAX_BUNDLE:
        raise UserError(f"{shown} holds {mb(len(data))}, more than {mb(MAX_BUNDLE)}")
    cell_dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".arriving-", dir=cell_dir))
    try:
        archive, into = scratch / "bundle.tar.gz", scratch / "run"
        archive.write_bytes(data)
        into.mkdir()
        folder = integrity.unpack(archive, into, shown)
        if list(into.iterdir()) != [folder] or not re.fullmatch(PLAIN_NAME, folder.name):
            raise UserError(f"{shown} does not hold one plainly named run folder")
        target = cell_dir / folder.name
        if target.exists():
            raise UserError(f"{target} exists already")
        folder.rename(target)
        return target
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def collect(ray, ref) -> dict:
    """A task's outcome; a task Ray lost (its node died, retries spent) is a failed cell."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        return {"status": "interrupted", "folder": None, "error": "cancelled"}
    except ray.exceptions.RayError as error:
        return {"status": "failed", "folder": None, "error": f"Ray: {brief(error)}"}


def stop(ray, sweep: Sweep, state: dict, running: dict, embedded: bool, log) -> None:
    """Ctrl-C: interrupt the running cells (SIGINT to their workers, here; ray.cancel on a
    cluster), give each up to a minute to finish its run folder as interrupted, as a run's
    Ctrl-C does, and leave every unfinished cell to be resumed."""
    print(f"sweep {sweep.name}: stopping {len(running)} running cells", file=log, flush=True)
    ours = set(memory.descendants(os.getpid()))  # the embedded cluster's processes
    for ref, (_, _, logfile, _) in running.items():
        pid = worker_pid(logfile)
        if embedded and pid in ours:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGINT)
        else:
            ray.cancel(ref)
    deadline = time.monotonic() + 60
    for ref, (name, _, logfile, before) in running.items():
        entry = state["cells"][name]
        if returned(ray, None if embedded else ref, logfile, deadline):
            entry.update(landed(sweep, collect(ray, ref), name, logfile, before))
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            outcome = json.loads(outcome_file(logfile).read_text())
            entry.update(folder=str(outcome["folder"]), error=str(outcome["error"]))
        if entry["status"] != "done":
            entry.update(status="interrupted", attempts=entry["attempts"] - 1)
    save(sweep, state)


def returned(ray, ref, logfile: Path, deadline: float) -> bool:
    """Wait until the interrupted cell wrote its outcome file or (`ref`, on a cluster, where a
    cell on another node sends its outcome back instead) its task returned: whether it did."""
    while not outcome_file(logfile).exists() and time.monotonic() < deadline:
        with contextlib.suppress(ray.exceptions.RayError):
            if ref is not None and ray.wait([ref], timeout=0)[0]:
                return True
        time.sleep(0.2)
    return False


def worker_pid(logfile: Path) -> int | None:
    try:
        return int(logfile.with_suffix(".pid").read_text())
    except (OSError, ValueError):
        return None


def compare(sweep: Sweep, state: dict, engine: str, log) -> Path | None:
    """One comparison report over the done cells (the first is the baseline), unless the last
    one covered the same cells."""
    from repro.driver.compare import write_report

    done = [e for e in state["cells"].values() if e["status"] == "done"]
    folders = [e["folder"] for e in done]
    previous = state["comparison"]
    mine = previous and paths.inside(previous["folder"], sweep.folder / "comparisons")
    if mine and previous.get("runs") == folders and Path(previous["folder"]).is_dir():
        return Path(previous["folder"])  # state.json is data: only a folder of this sweep's
    if len(done) < 2:
        print(f"sweep {sweep.name}: {len(done)} cell done, no comparison report", file=log)
        return None
    at_once = state["max_concurrent"]
    caveat = (
        "" if at_once == 1 else ": cells run at once on one machine disturb each other's timings"
    )
    note = (
        f"Sweep `{sweep.name}` ({len(done)} of {len(state['cells'])} cells done) over "
        f"{' × '.join(sweep.axes)}, run on {escape(engine)}: **at most {at_once} "
        f"{'cell' if at_once == 1 else 'cells'} ran at once** (concurrency "
        f"{sweep.concurrency}){caveat}."
    )
    runs = [records.load(f) for f in folders]
    folder = write_report(runs, sweep.folder / "comparisons", allow_mixed=True, log=log, note=note)
    state["comparison"] = {"folder": str(folder), "runs": folders}
    save(sweep, state)
    return folder


@dataclass(frozen=True)
class Outcome:
    sweep: Sweep
    state: dict
    comparison: Path | None

    @property
    def folder(self) -> Path:
        return self.sweep.folder

    def cells(self) -> list[dict]:
        """Each cell's label, status, run folder and error, and its finished run (`records.Run`)
        where it is done."""
        shown = []
        for entry in self.state["cells"].values():
            run = None
            if entry["status"] == "done":
                with contextlib.suppress(ReproError):  # a run folder moved or changed since
                    run = records.load(entry["folder"])
            shown.append(
                {**{k: entry[k] for k in ("label", "status", "folder", "error")}, "run": run}
            )
        return shown

    def table(self) -> str:
        """The cells' headlines, one line each."""
        cells = self.cells()
        width = max(len(c["label"]) for c in cells)
        return "\n".join(
            f"{c['label']:<{width}}  "
            + (
                c["run"].headline.quote()
                if c["run"] and c["run"].headline
                else f"{c['status']}: {brief(c['error'] or 'no headline')}"
            )
            for c in cells
        )

    def check(self) -> None:
        """RunFailed unless every cell is done."""
        failed = [e["label"] for e in self.state["cells"].values() if e["status"] != "done"]
        if failed:
            raise RunFailed(
                f"sweep {self.sweep.name}: {len(failed)} of {len(self.sweep.cells)} cells not "
                f"done ({'; '.join(failed)}); see {self.folder / 'state.json'}, and rerun the "
                "same command to retry them"
            )


def sweep(
    path: str | Path,
    address: str | None = None,
    retries: int = 1,
    runs_dir: str | Path | None = None,
    log=sys.stderr,
) -> Outcome:
    """Run the sweep file at `path` (resuming its folder); its Outcome says which cells are done
    (`check`)."""
    with talking(log, "running the sweep") as log:
        return resume(load(path, runs_dir), address, retries, log)


def resume(sweep: Sweep, address: str | None, retries: int, log: Talk) -> Outcome:
    """Run what the sweep has not done yet, then compare what it has."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    sweep = check(sweep, remote=bool(address), log=log)  # its runs_dir was checked by load
    state = read_state(sweep)
    progress = Progress(sweep, state, log)
    chosen = todo(sweep, state, retries, progress)
    engine = f"the Ray cluster at {address}" if address else "an embedded Ray cluster"
    if chosen:
        with scratch() as temp:  # Ray's session: its sockets' paths stay short
            try:
                with log.phase("starting Ray"):
                    engine = start_ray(address, sweep, temp)
                sweep.folder.mkdir(parents=True, exist_ok=True)  # once Ray runs: no half folder
                write(sweep.folder / "sweep.yaml", sweep.file.read_bytes())
                # after ray.init, which sets SIGTERM's handler
                with signals_interrupt(stop_children=False), log.phase("running the cells"):
                    progress.line(f"{len(chosen)} cells to run on {engine} in {sweep.folder}")
                    execute(sweep, state, chosen, engine, retries, log)
            finally:
                shutdown()
    else:
        progress.line(f"nothing to run in {sweep.folder}")
    with log.phase("comparing the cells"):
        return Outcome(sweep, state, compare(sweep, state, engine, log))


def shutdown() -> None:
    with contextlib.suppress(ImportError):
        import ray

        if ray.is_initialized():
            ray.shutdown()
