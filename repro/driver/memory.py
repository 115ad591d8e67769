"""Host memory (driver side): refuse a run that clearly cannot fit, and stop one that is about to
exhaust the machine before the kernel is killed by the system with nothing said.

Linux only (/proc); elsewhere the check and the watchdog do nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from pathlib import Path

from repro.bounds import setting
from repro.errors import UserError

ALLOWANCE = 2**30  # the framework's runtime and the activations of a small batch
RESERVE_FRACTION = 0.05  # the watchdog keeps this much of the machine free (at least 0.5 GiB)
LIMIT_VARIABLE = "REPRO_MEMORY_LIMIT_MB"  # a hard cap on the kernel's RSS, for tests and users


def gib(n: float) -> str:
    return f"{n / 2**30:.{2 if n < 2**30 else 1}f} GiB"


def meminfo() -> dict[str, int]:
    """/proc/meminfo in bytes (empty where there is none)."""
    try:
        lines = Path("/proc/meminfo").read_text().splitlines()
    except OSError:
        return {}
    return {k: int(v.split()[0]) * 1024 for k, v in (line.split(":", 1) for line in lines)}


def estimate(workload: dict, params: dict) -> tuple[int, str]:
    """Bytes of host memory a run needs at least, and how that was counted: fp32 weights
    (4 bytes a parameter), a half-precision copy under bf16/fp16 (+2), gradients and AdamW's two
    moments in training (+12), plus ALLOWANCE for the runtime and activations."""
    from repro.kernel import models

    cfg = models.config(workload["model"])
    n = cfg.num_params()
    if n is None:  # a saved model: at most its weights file's fp32 values
        n = cfg.stored_params()
    per = 4 + (2 if params["precision"] in ("bf16", "fp16") else 0)
    per += 12 if params["mode"] != "inference" else 0
    how = f"{n / 1e9:.2f} B parameters x {per} bytes ({params['mode']}, {params['precision']})"
    return n * per + ALLOWANCE, f"{how} + {gib(ALLOWANCE)}"


def check(workload: dict, params: dict, available: int | None = None) -> None:
    """UserError when the estimate exceeds the memory available now (MemAvailable)."""
    available = meminfo().get("MemAvailable") if available is None else available
    if available is None:
        return
    need, how = estimate(workload, params)
    if need > available:
        raise UserError(
            f"{workload['name']} in {params['mode']} needs about {gib(need)} of memory ({how}) "
            f"but only {gib(available)} is available: choose a smaller workload, batch or mode, "
            "or go ahead with --force-memory (make FORCE_MEMORY=1)"
        )


def oom_kills() -> int | None:
    """How many processes the system's out-of-memory killer has killed since boot (None where
    the system does not say)."""
    try:
        for line in Path("/proc/vmstat").read_text().splitlines():
            if line.startswith("oom_kill "):
                return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def descendants(root: int) -> list[int]:
    """The processes below `root` (the kernel and whatever it started)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_kernel(pids: list[int] | None = None) -> None:
    """SIGKILL the kernel's process tree (this process's descendants)."""
    for pid in descendants(os.getpid()) if pids is None else pids:
        with contextlib.suppress(OSError):  # gone already
            os.kill(pid, signal.SIGKILL)


def rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class Watchdog(threading.Thread):
    """Samples the RSS of this process's children (the kernel's process tree) every `interval`
    seconds; kills them, and says why in `reason`, when they pass the REPRO_MEMORY_LIMIT_MB cap
    or when the machine's available memory falls below its reserve while they hold more."""

    def __init__(self, interval: float = 0.5) -> None:
        super().__init__(daemon=True, name="repro-memory-watchdog")
        self.interval = interval
        self.total = meminfo().get("MemTotal", 0)
        self.reserve = max(2**29, int(self.total * RESERVE_FRACTION))
        cap = setting(LIMIT_VARIABLE)
        self.limit = int(cap * 2**20) if cap else None
        self.peak = 0
        self.lowest_available: int | None = None
        self.oom_kills = oom_kills()
        self.reason: str | None = None
        self._done = threading.Event()

    def run(self) -> None:
        if not self.total:
            return
        while not self._done.wait(self.interval) and self.reason is None:
            self.sample()

    def sample(self) -> None:
        pids = descendants(os.getpid())
        used = sum(map(rss, pids))
        available = meminfo().get("MemAvailable", self.total)
        self.peak = max(self.peak, used)
        self.lowest_available = min(available, self.lowest_available or available)
        if self.limit is not None and used > self.limit:
            why = f"limit {gib(self.limit)} ({LIMIT_VARIABLE})"
        elif available < self.reserve and used > self.reserve:
            why = f"{gib(available)} left available, limit: keep {gib(self.reserve)} free"
        else:
            return
        self.reason = f"stopped: out of memory — kernel RSS {gib(used)} of {gib(self.total)}, {why}"
        stop_kernel(pids)

    def stop(self) -> None:
        self._done.set()

    def death(self, returncode: int | None = None) -> str:
        """The one-line reason for a kernel that died (`returncode`: its process's, where
        known): the watchdog's own stop, the system's out-of-memory killer (its count of kills
        rose meanwhile), or else what the process's end says, a signal or an exit code."""
        if self.reason:
            return self.reason
        peak = f"peak RSS {gib(self.peak)} of {gib(self.total)}"
        low = f", lowest available {gib(self.lowest_available)}" if self.lowest_available else ""
        now, before = oom_kills(), self.oom_kills
        if returncode in (None, -signal.SIGKILL) and None not in (now, before) and now > before:
            return f"kernel died: out of memory, killed by the system's OOM killer — {peak}"
        if returncode is not None and returncode < 0:
            try:
                name = signal.Signals(-returncode).name
            except ValueError:
                name = f"signal {-returncode}"
            whose = " (not by repro's memory watchdog)" if -returncode == signal.SIGKILL else ""
            return f"kernel died: killed by {name}{whose} — {peak}{low}"
        if returncode:
            return f"kernel died: exit code {returncode} — {peak}{low}"
        return f"kernel died — {peak}{low}"
