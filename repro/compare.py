"""Compare runs with their noise: ratio of medians with a bootstrap CI and a Mann-Whitney U test.

Works on run folders (their metrics.json and environment.json), so a comparison needs no
framework. `gate()` is the CI regression check behind `repro compare --fail-if-slower`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from repro.errors import UserError

ALPHA = 0.05  # significance level of the Mann-Whitney U test


@dataclass(frozen=True)
class Run:
    folder: Path
    metrics: dict
    environment: dict

    @property
    def name(self) -> str:
        return self.folder.name

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
        raise UserError(f"{folder} is not a complete run folder: {error}") from None
    if metrics.get("status") != "ok":
        raise UserError(f"{folder} is a {metrics.get('status')} run: it has no measurements")
    return Run(folder, metrics, environment)


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


def versus(base: Run, new: Run, seed: int = 0) -> dict:
    """How `new`'s step time compares with `base`'s: ratio of medians (> 1: slower), its
    bootstrap 95% CI, the Mann-Whitney U p-value, and a verdict in words."""
    a, b = new.step_s, base.step_s
    ratio = float(np.median(a) / np.median(b))
    ci = stats.bootstrap(
        (a, b),
        lambda x, y: np.median(x) / np.median(y),
        vectorized=False,
        n_resamples=2000,
        method="percentile",
        rng=np.random.default_rng(seed),
    ).confidence_interval
    p = float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
    low, high = float(ci.low), float(ci.high)
    if p < ALPHA and low > 1:
        verdict = f"slower by {ratio - 1:.1%}"
    elif p < ALPHA and high < 1:
        verdict = f"faster by {1 - ratio:.1%}"
    else:
        verdict = "no significant difference"
    return {
        "base": base.name,
        "new": new.name,
        "time_ratio": ratio,
        "ci95": [low, high],
        "p_value": p,
        "verdict": verdict,
    }


def gate(base: Run, new: Run, threshold: float) -> tuple[bool, dict]:
    """(fails, comparison): fails only when `new` is significantly slower by more than
    `threshold` (0.05 for 5%), i.e. the whole CI lies above 1 and the median slowdown exceeds it."""
    result = versus(base, new)
    fails = (
        result["p_value"] < ALPHA and result["ci95"][0] > 1 and result["time_ratio"] > 1 + threshold
    )
    return fails, result


def parse_threshold(text: str) -> float:
    """ "5%" or "0.05" -> 0.05."""
    try:
        value = float(text.rstrip("%")) / (100 if text.endswith("%") else 1)
    except ValueError:
        raise UserError(f"--fail-if-slower takes a percentage such as 5%, got {text!r}") from None
    if not 0 <= value < 10:
        raise UserError(f"--fail-if-slower must be between 0% and 1000%, got {text!r}")
    return value
