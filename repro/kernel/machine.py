"""How fast and how busy the machine was around a measurement (in-kernel side: numpy and /proc).

A new process, or a neighbour on a shared machine, moves a whole step-time distribution, so a run
records two facts a reader (and later a rerun or comparison) can check before blaming the
workload:
- a reference: fixed single-threaded numpy work (sorting 64 Ki float32 values, copying 32 MiB)
  timed just before and just after the measured phase; the two agree when the machine held its
  speed. Single-threaded because a multi-threaded BLAS call of a millisecond mostly times its
  thread pool: a 256x256 matmul chain on a 16-core GPU host read 0.6 to 24 ms in one run;
- the load over the measured window: CPU time used by other processes (all CPUs' busy time in
  /proc/stat minus this process's own), the busiest of them, CPU steal (a VM's neighbours taking
  its cores) and the 1-minute load average.
Linux only for the load; elsewhere it is "unavailable" with the reason.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

REFERENCE_REPEATS = 7
REFERENCES = {"sort_ms": "sort", "copy_ms": "memory copy"}  # timing: what it times
BUSY_CORES = 0.5  # other processes using more than half a core on average: a busy machine
STEAL_FRACTION = 0.05  # more than 5% of CPU time taken by the hypervisor: a busy host
DRIFT = 0.10  # the reference's fastest time more than 10% slower or faster after the window,
# beyond twice the reference's own spread on both sides (median over fastest): on this 2-core VM,
# idle, two references in a row moved the fastest copy by up to 35% with once the spread alone
LOAD_PERIOD_S = 0.5
COMMAND_CHARS = 60  # of a busy process's command line: enough to tell `pytest` from `yes`
TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def reference() -> dict:
    """Median and fastest milliseconds of the fixed computations (each repeated)."""
    rng = np.random.default_rng(0)
    values = rng.standard_normal(2**16).astype(np.float32)
    src, dst = np.ones(8 * 2**20, np.float32), np.empty(8 * 2**20, np.float32)  # 32 MiB

    def sort():
        np.sort(values, kind="stable")

    def copy():
        np.copyto(dst, src)

    out = {}
    for name, fn in (("sort_ms", sort), ("copy_ms", copy)):
        fn()  # first touch: page faults and cold caches are not the machine's speed
        times = []
        for _ in range(REFERENCE_REPEATS):
            start = time.perf_counter()
            fn()
            times.append((time.perf_counter() - start) * 1e3)
        out[name] = {"median": float(np.median(times)), "min": float(min(times))}
    return out


def drift(before: dict, after: dict) -> dict:
    """Per reference: the change of its fastest time across the window, and the threshold it
    must exceed to count (DRIFT plus twice both sides' spread, median over fastest)."""
    out = {}
    for name in before:
        spread = sum(side[name]["median"] / side[name]["min"] - 1 for side in (before, after))
        out[name] = {
            "change": after[name]["min"] / before[name]["min"] - 1,
            "threshold": DRIFT + 2 * spread,
        }
    return out


def cpu_busy_s() -> tuple[float, float, float]:
    """Seconds of busy, stolen and total CPU time of all CPUs since boot (/proc/stat)."""
    fields = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, idle, iowait, irq, softirq, steal = fields
    busy = user + nice + system + irq + softirq
    return busy / TICK, steal / TICK, (busy + idle + iowait + steal) / TICK


def own_cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def process_cpu_s() -> dict[int, tuple[str, int, float]]:
    """pid -> (name, parent pid, CPU seconds) of every process readable in /proc."""
    out = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, rest = text[text.index("(") + 1 : text.rindex(")")], text.rsplit(")", 1)[1].split()
        out[int(stat.parent.name)] = (name, int(rest[1]), (int(rest[11]) + int(rest[12])) / TICK)
    return out


def command(pid: int, name: str) -> str:
    """What process `pid` runs, as a reader would recognise it: the program's file name and its
    first arguments (`python -m pytest -n 2 tests`), cut at COMMAND_CHARS; `name` (its comm)
    once it has gone or hides its command line (a kernel thread)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return name
    argv = [a for a in argv if a]
    if not argv:
        return name
    text = " ".join(" ".join([Path(argv[0]).name, *argv[1:]]).split())  # `-c` code: one line
    return text if len(text) <= COMMAND_CHARS else text[: COMMAND_CHARS - 1] + "…"


def family(procs: dict[int, tuple[str, int, float]], root: int) -> set[int]:
    """`root` and its descendants (torch.compile's compile workers, say): this run's own work."""
    found, todo = {root}, [root]
    while todo:
        parent = todo.pop()
        children = [pid for pid, (_, ppid, _) in procs.items() if ppid == parent]
        found.update(children)
        todo.extend(children)
    return found


def busy_warning(load: dict, when: str = "this run was measured") -> str:
    """One warning for a busy measured window: how busy, by whom (their command lines), and what
    to change: a quiet machine; in torch or MXNet, OpenMP threads that sleep rather than spin
    (spinning ones collapsed beside busy loops: README, "Threads on a busy machine"); a longer
    measurement."""
    names = ", ".join(
        f"`{p.get('command', p['name'])}` {p['cores']:.1f}" for p in load["busiest_others"]
    )
    threads = int(os.environ.get("OMP_NUM_THREADS") or len(os.sched_getaffinity(0)))
    policy = os.environ.get("OMP_WAIT_POLICY", "unset").lower()
    spinning = policy != "passive" and threads > 1
    spinning = spinning and any(m in sys.modules for m in ("torch", "mxnet"))  # JAX, TF: Eigen
    return (
        f"The machine was busy while {when}: other processes used "
        f"{load['other_cores']:.1f} of its {load['cores']} cores on average"
        + (f" (busiest: {names})" if names else "")
        + (
            f", and {load['steal_fraction']:.0%} of CPU time was stolen by the host"
            if load["steal_fraction"] > STEAL_FRACTION
            else ""
        )
        + ". These figures are likely below this machine's normal; do not compare them with a "
        "run measured on a quiet machine. To change that: rerun on a quiet machine (once the "
        "processes named here have finished, or elsewhere)"
        + (
            f"; set `omp_wait_policy=passive` or `threads=1` (this run: {policy}, {threads} "
            "threads): spinning OpenMP threads wait for each other's share of a busy core"
            if spinning
            else ""
        )
        + "; measure longer (more `steps`) if their load comes and goes."
    )


class Check:
    """Context manager around the measured phase: the reference before and after it, the load
    during it. `result()` gives both, with plain-language warnings."""

    def __init__(self) -> None:
        self.before = self.after = None
        self._start = self._end = None
        self._loads: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reason: str | None = None
        self._commands: dict[int, str] = {}

    def __enter__(self) -> Check:
        self.before = reference()
        try:
            self._start = (time.perf_counter(), own_cpu_s(), cpu_busy_s(), process_cpu_s())
            self._loads.append(os.getloadavg()[0])
        except (OSError, ValueError, IndexError) as e:
            self._reason = f"/proc is not readable here ({type(e).__name__}: {e})"
            return self
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(LOAD_PERIOD_S):
            self._loads.append(os.getloadavg()[0])

    def __exit__(self, *exc) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._end = (time.perf_counter(), own_cpu_s(), cpu_busy_s(), process_cpu_s())
            # read now: a short-lived neighbour may be gone by the time result() is asked for
            self._commands = {pid: command(pid, name) for pid, (name, _, _) in self._end[3].items()}
        self.after = reference()

    def load(self) -> dict:
        if self._reason or self._end is None:
            return {"status": "unavailable", "reason": self._reason or "not measured"}
        (t0, own0, (busy0, steal0, total0), procs0), (t1, own1, (busy1, steal1, total1), procs1) = (
            self._start,
            self._end,
        )
        wall = max(t1 - t0, 1e-9)
        ours = family(procs1, os.getpid())
        used = {pid: cpu - procs0.get(pid, ("", 0, 0.0))[2] for pid, (_, _, cpu) in procs1.items()}
        children = sum(used[pid] for pid in ours if pid != os.getpid())
        others = sorted(
            ((used[pid], name, pid) for pid, (name, _, _) in procs1.items() if pid not in ours),
            reverse=True,
        )
        return {
            "status": "measured",
            "window_s": wall,
            "cores": os.cpu_count(),
            "other_cores": max(0.0, ((busy1 - busy0) - (own1 - own0) - children) / wall),
            "steal_fraction": (steal1 - steal0) / max(total1 - total0, 1e-9),
            "load_average_1m": {"start": self._loads[0], "max": max(self._loads)},
            "busiest_others": [
                {
                    "name": name,
                    "command": self._commands.get(pid, name),
                    "pid": pid,
                    "cores": round(cpu / wall, 2),
                }
                for cpu, name, pid in others[:3]
                if cpu / wall >= 0.05
            ],
        }

    def result(self) -> dict:
        load, warnings = self.load(), []
        busy = load["status"] == "measured" and (
            load["other_cores"] > BUSY_CORES or load["steal_fraction"] > STEAL_FRACTION
        )
        if busy:
            warnings.append(busy_warning(load))
        changes = drift(self.before, self.after)
        for name, d in changes.items():
            if abs(d["change"]) > d["threshold"]:
                what = REFERENCES[name]
                warnings.append(
                    f"The reference {what} took {abs(d['change']):.0%} "
                    f"{'longer' if d['change'] > 0 else 'less'} after the measured phase than "
                    f"before it (beyond its noise, {d['threshold']:.0%}): the machine's speed "
                    "changed during the run."
                )
        return {
            "reference": {"before": self.before, "after": self.after, "drift": changes},
            "load": load,
            "busy": busy,
            "warnings": warnings,
        }
