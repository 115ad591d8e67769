"""What a finished run folder records (its metrics.json and environment.json), read back as
untrusted data: `load` checks a folder before anything reads it, so a comparison needs no
framework, and `expand` finds the finished runs among paths given on the command line."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from repro.errors import UserError, brief


@dataclass(frozen=True)
class Run:
    folder: Path
    metrics: dict
    environment: dict

    @property
    def name(self) -> str:
        return self.folder.name

    @property
    def label(self) -> str:
        """Short and unique: framework and compile mode, workload, batch size, explicit attention
        where it ran, and the run id's random suffix."""
        m, p = self.metrics, self.metrics["params"]
        explicit = " explicit-attn" if p.get("attention") == "explicit" else ""
        return (
            f"{m['framework']} {p.get('compile', '')} {m['workload']} bs{p['batch_size']}"
            f"{explicit} #{self.name.rsplit('_', 1)[-1]}"
        )

    @property
    def samples(self) -> dict:
        return self.metrics["samples"]

    @property
    def step_s(self) -> np.ndarray:
        return np.asarray(self.metrics["samples"]["step_s"])

    def context(self) -> dict:
        """What must match for two runs' numbers to be compared as like for like."""
        env, params = self.environment, self.metrics["params"]
        gpus = env.get("gpu", {}).get("nvidia_smi", {}).get("query", [])
        return {
            "cpu": env.get("cpu", {}).get("model"),
            "gpu": [g.get("name") for g in gpus] or None,
            "driver": (env.get("gpu", {}).get("nvml") or {}).get("driver_version"),
            "precision": params["precision"],
            "mode": params["mode"],
            "batch_size": params["batch_size"],
            "sequence_length": params.get("sequence_length"),
            "workload": self.metrics["workload"],
            "model": (self.metrics.get("model") or {}).get("config"),
        }


def load(folder: str | Path) -> Run:
    """A finished run folder, or UserError saying why it cannot be compared."""
    folder = Path(folder)
    try:
        metrics = json.loads((folder / "metrics.json").read_text())
        environment = json.loads((folder / "environment.json").read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{folder} is not a complete run folder: {brief(error)}") from None
    if not isinstance(metrics, dict) or "status" not in metrics:
        raise UserError(f"{folder}/metrics.json is not a repro run's (it has no status)")
    if metrics["status"] != "ok":
        raise UserError(f"{folder} is a {metrics['status']} run: it has no measurements")
    run = Run(folder, metrics, environment)
    try:  # what comparing reads: the context, the label and every measured step time
        run.context(), run.label
        steps = run.step_s.astype(float)
    except (KeyError, TypeError, AttributeError, ValueError) as error:
        raise UserError(f"{folder} lacks what a comparison reads: {brief(error)}") from None
    if steps.ndim != 1 or steps.size == 0 or not np.all(np.isfinite(steps) & (steps > 0)):
        raise UserError(f"{folder}/metrics.json has no valid step times (samples.step_s)")
    return run


RUN_FILES = ("metrics.json", "report.ipynb", "report.partial.ipynb", "comparison.json")


def not_finished(path: Path) -> str | None:
    """Why `path` is not a finished run folder that can be compared, or None if it is one."""
    if not path.is_dir():
        bundle = " (a bundle: unpack it first)" if ".tar" in path.name else ""
        return f"a file, not a run folder{bundle}"
    if (path / "comparison.json").is_file():
        return "a comparison, not a run"
    if not (path / "metrics.json").is_file():
        if (path / "report.ipynb").is_file() or (path / "report.partial.ipynb").is_file():
            return "an unfinished run (no metrics.json: its driver was killed)"
        return "not a run folder"
    try:
        metrics = json.loads((path / "metrics.json").read_text())
    except (OSError, ValueError) as error:
        return f"an unreadable metrics.json ({brief(error)})"
    if not isinstance(metrics, dict) or "status" not in metrics:
        return "a metrics.json that is not a repro run's (no status)"
    status = metrics["status"]
    if status == "ok":
        return None
    return f"{'an' if str(status)[:1] in 'aeiou' else 'a'} {status} run"


def expand(paths: list[str | Path], log=None) -> list[Path]:
    """Finished run folders from `paths`: each a run folder, or a folder of them (in name order).
    Anything else (unfinished, failed or interrupted runs, comparisons, bundles, stray files) is
    skipped and listed on `log`; the caller decides whether enough runs remain."""
    folders, skipped = [], []
    for path in map(Path, paths):
        if not path.exists():
            raise UserError(f"{path} does not exist")
        if path.is_dir() and not any((path / name).exists() for name in RUN_FILES):
            candidates = sorted(path.iterdir())  # a folder of runs
            if not any(not_finished(c) is None for c in candidates):
                skipped.append(f"{path}: holds no finished run folders")
        else:
            candidates = [path]
        for candidate in candidates:
            why = not_finished(candidate)
            if why:
                skipped.append(f"{candidate}: {why}")
            else:
                folders.append(candidate)
    if log and skipped:
        print(f"skipping {len(skipped)} that are not finished runs:", file=log)
        for line in skipped:
            print(f"  {line}", file=log)
    return folders


def context_differences(runs: list[Run]) -> dict[str, list]:
    """The context fields whose values differ between runs (lock: only within one kernel)."""
    contexts = [r.context() for r in runs]
    diffs = {
        k: [c[k] for c in contexts]
        for k in contexts[0]
        if len({json.dumps(c[k]) for c in contexts}) > 1
    }
    by_kernel: dict[str, set] = {}
    for r in runs:
        by_kernel.setdefault(r.metrics["kernel"], set()).add(
            (r.environment.get("run", {}).get("lock") or {}).get("lock_sha256")
        )
    if any(len(shas) > 1 for shas in by_kernel.values()):
        diffs["lock"] = [
            (r.environment.get("run", {}).get("lock") or {}).get("lock_sha256") for r in runs
        ]
    return diffs


def environment_facts(env: dict) -> dict[str, dict]:
    """What a run ran on and with, grouped as a rerun verdict reports it."""
    gpu, run = env.get("gpu", {}), env.get("run", {})
    packages = dict(p.split("==", 1) for p in env.get("packages", []) if "==" in p)
    return {
        "hardware": {
            "CPU": env.get("cpu", {}).get("model"),
            "logical cores": env.get("cpu", {}).get("logical_cores"),
            "memory (GiB)": round((env.get("memory", {}).get("total_bytes") or 0) / 2**30, 1),
            "GPU": [g.get("name") for g in gpu.get("nvidia_smi", {}).get("query", [])] or None,
        },
        "driver": {
            "NVIDIA driver": (gpu.get("nvml") or {}).get("driver_version"),
            "CUDA (framework)": env.get("framework", {}).get("cuda"),
            "OS kernel": env.get("system", {}).get("kernel"),
        },
        "packages": packages,
        "code": {
            "repro library sha256": (run.get("code") or {}).get("library_sha256"),
            "template sha256": (run.get("template") or {}).get("sha256"),
            "lock sha256": (run.get("lock") or {}).get("lock_sha256"),
            "git commit": (run.get("git") or {}).get("commit"),
        },
        "settings": {k: v for k, v in env.get("settings", {}).items() if k != "affinity"},
    }


def environment_differences(before: dict, after: dict) -> dict[str, dict[str, list]]:
    """{group: {fact: [before, after]}} for every fact that differs between two environments."""
    a, b = environment_facts(before), environment_facts(after)
    return {
        group: {
            k: [a[group].get(k), b[group].get(k)]
            for k in sorted(set(a[group]) | set(b[group]))
            if a[group].get(k) != b[group].get(k)
        }
        for group in a
    }
