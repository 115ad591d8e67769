"""Hostile and careless inputs through the real CLI and Makefile (issue P15's check): counts the
tracebacks, the code that ran, the writes outside runs/ and .kernels/, the stray folders and the
hangs.

    .venv/bin/python benchmarks/hostile_inputs.py [--show] [--only CLASS]

Names and paths go after `--`, as the Makefile passes them (an option typed as an option is the
user's). Every input runs from the checkout with HOME and TMPDIR in a sandbox; `{m}` names a
folder that must stay empty (a value that is code touches a file there), `{r}` a finished run
folder, `{o}` a folder outside the checkout. REPRO_KERNELS_DIR points below a file, where no
kernel can be built or found: an input that gets past every check stops at the kernel, with one
line, instead of starting a run. After each input: no exit 70 and no "Traceback", nothing in
`{m}`, the checkout (without .git, .venv, .kernels, .jupyter, runs/ and caches) and `{o}`
unchanged, and no new folder in the runs directories from an input refused as bad (exit 2). A
finding prints its input.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from repro.driver.folders import write_manifest

ROOT = Path(__file__).resolve().parents[1]
# repro's own places: the kernels, their Jupyter registrations (.jupyter), the runs; and caches
SKIP = {
    ".git",
    ".venv",
    ".kernels",
    ".jupyter",
    "runs",
    ".pytest_cache",
    ".ruff_cache",
    "__pycache__",
}
CODE = ["$(touch {m}/dollar)", "`touch {m}/tick`", "x; touch {m}/semicolon", "x\ntouch {m}/nl"]
OPTIONS = ["--help", "--template={o}/nb.ipynb", "--runs-dir={o}/elsewhere", "--unpinned", "-p"]
TEXT = ["", " ", "x" * 100_000, "ÅÄÖ", "ßßß", "résnet-50", "\t", "../../../../etc/passwd"]
NUMBERS = ["٣", "１", "nan", "inf", "-inf", "1e400", "9" * 400, "-1", "0", "1_000", "0x10", "5.5"]
PARAMS = [
    "steps", "warmup", "batch_size", "repeats", "threads", "seed", "min_time", "warmup_time",
    "lr", "country", "precision", "device", "devices", "mode", "compile", "data", "new_tokens",
    "target_accuracy", "max_seconds", "omp_wait_policy",
]  # fmt: skip
ENVIRONMENT = ["REPRO_MIN_FREE_MB", "REPRO_MEMORY_LIMIT_MB", "REPRO_DATA_MAX_MB"]
RUNS_DIRS = ["/etc/passwd", "/proc/self/x", "{r}", "{r}/inside", "/dev/null/x", "x" * 5000]
SWEEPS = {
    "alias-bomb": "a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a]\n"
    "c: &c [*b, *b, *b, *b, *b, *b, *b, *b]\nname: [*c, *c, *c, *c, *c, *c, *c, *c]\n",
    "duplicate-keys": "workload: resnet-tiny\nworkload: vit-tiny\naxes: {steps: [5]}\n",
    "deep": "workload: resnet-tiny\naxes: " + "{a: " * 200 + "1" + "}" * 200 + "\n",
    "huge-concurrency": "workload: resnet-tiny\naxes: {steps: [5]}\nconcurrency: " + "9" * 400,
    "nan-gpus": "workload: resnet-tiny\naxes: {steps: [5]}\nnum_gpus: .nan\n",
    "runs-dir-escape": "workload: resnet-tiny\naxes: {steps: [5]}\nruns_dir: ../../../../{o}\n",
    "runs-dir-absolute": "workload: resnet-tiny\naxes: {steps: [5]}\nruns_dir: {o}\n",
    "shared-dir-etc": "workload: resnet-tiny\naxes: {steps: [5]}\nshared_dir: /etc\n",
    "template-passwd": "workload: resnet-tiny\naxes: {steps: [5]}\ntemplate: /etc/passwd\n",
    "list": "- just\n- a list\n",
    "binary": "\x00\x01\x02\xff",
    "empty": "",
    "no-axes": "workload: resnet-tiny\n",
    "empty-axes": "workload: resnet-tiny\naxes: {}\n",
    "unknown-key": "workload: resnet-tiny\naxes: {steps: [5]}\ncolour: red\n",
    "non-ascii-steps": "workload: resnet-tiny\naxes: {steps: ['٣']}\n",
    "code-in-name": "name: $(touch {m}/sweep)\nworkload: resnet-tiny\naxes: {steps: [5]}\n",
    "python-tag": "workload: !!python/object/apply:os.system ['touch {m}/yaml']\n",
    "too-many-cells": "workload: resnet-tiny\naxes: {steps: " + str(list(range(1, 200))) + ", "
    "seed: " + str(list(range(200))) + "}\n",
}


def inputs(sandbox: Path) -> list[tuple[str, list[str], dict]]:
    """(class, argv, extra environment) for every input."""
    hostile = CODE + OPTIONS + TEXT
    run = ["repro", "run", "resnet-tiny", "--runs-dir", "{s}/runs"]
    found = [("param", [*run, "-p", f"{p}={v}"], {}) for p in PARAMS for v in NUMBERS + CODE]
    found += [("param", [*run, "-p", v], {}) for v in hostile + ["=5", "steps", "steps=5=5"]]
    for command in ("run", "lesson", "verify", "rerun", "bundle", "data", "sweep"):
        found += [
            ("name", ["repro", command, "--runs-dir", "{s}/runs", "--", v], {}) for v in hostile
        ]
    for command in (["compare", "--no-report"], ["history", "--runs-dir", "{s}/runs"]):
        found += [("name", ["repro", *command, "--", "{r}", v], {}) for v in hostile]
    found += [("name", ["repro", "kernels", "--rebuild", v], {}) for v in hostile + ["..", "."]]
    found += [("name", ["repro", "lock", v], {}) for v in hostile + ["../kernelspecs/torch-cpu"]]
    for option in ("--out", "--have"):
        for v in [*hostile, "/etc/passwd", "{r}", "/"]:
            found.append(("path", ["repro", "wheelhouse", option, v], {}))
    for command in (["run", "resnet-tiny"], ["lesson", "threads"], ["history"], ["index"]):
        for v in RUNS_DIRS + CODE:
            found.append(("runs-dir", ["repro", *command, "--runs-dir", v], {}))
    found += [
        ("runs-dir", ["repro", "compare", "{r}", "{r2}", "--runs-dir", v], {}) for v in RUNS_DIRS
    ]
    found += [
        ("path", ["repro", "bundle", "{r}", "-o", v], {})
        for v in ["{r}/x.tar.gz", "/etc/passwd", "{m}"]
    ]
    found += [
        ("self", ["repro", "compare", "{r}", v, "--no-report"], {})
        for v in ["{r}", "{r}/", "{r}/."]
    ]
    for variable in ENVIRONMENT:
        for v in NUMBERS + ["abc", " ", "1e12"]:
            found.append(("environment", [*run], {variable: v}))
    for name, text in SWEEPS.items():
        path = sandbox / "sweeps" / f"{name}.yaml"
        path.parent.mkdir(exist_ok=True)
        path.write_text(text.replace("{m}", str(sandbox / "m")).replace("{o}", str(sandbox / "o")))
        found.append(("sweep", ["repro", "sweep", str(path), "--runs-dir", "{s}/runs"], {}))
    for variable in ["WORKLOAD", "FRAMEWORK", "PARAMS", "RUNS_DIR", "KERNEL", "TRUST", "PYTHON",
                     "TEST_WORKERS", "JUPYTER_PATH", "BY", "THRESHOLD", "VENV", "REPRO", "SHELL",
                     "USER_VARS", "REPORT", "RUNS", "NAME", "YES", "UNPINNED"]:  # fmt: skip
        for v in CODE + ["--runs-dir={o}/make", "0", "maybe"]:
            found.append(("make", ["make", "-n", "run", f"{variable}={v}"], {}))
            found.append(("make", ["make", "help"], {variable: v}))
    return found


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    """Every file under `folders` (SKIP left out): its modification time and size."""
    seen = {}
    for folder in folders:
        for path, dirs, files in os.walk(folder):
            dirs[:] = [d for d in dirs if d not in SKIP]
            for name in files:
                stat = os.lstat(os.path.join(path, name))
                seen[os.path.join(path, name)] = (stat.st_mtime_ns, stat.st_size)
    return seen


def folders(*places: Path) -> set[Path]:
    return {p for place in places if place.is_dir() for p in place.iterdir()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="one class of inputs (param, name, path, ...)")
    parser.add_argument("--show", action="store_true", help="print every input's first line")
    args = parser.parse_args()
    sandbox = Path(tempfile.mkdtemp(prefix="hostile-"))
    for name in ("m", "o", "home", "tmp", "runs"):
        (sandbox / name).mkdir()
    fixture = ROOT / "tests" / "fixtures" / "records"
    runs = {}
    for name in ("r", "r2"):  # finished run folders (a fixture's records, sealed by a manifest)
        folder = sandbox / "runs" / f"2026_{name}"
        folder.mkdir()
        metrics = json.loads((fixture / "metrics.json").read_text())
        metrics["run_id"] = f"hostile-{name}"
        (folder / "metrics.json").write_text(json.dumps(metrics))
        shutil.copy(fixture / "environment.json", folder)
        write_manifest(folder)
        runs[name] = folder
    values = {"{m}": sandbox / "m", "{o}": sandbox / "o", "{s}": sandbox, **runs}
    values = {k if k.startswith("{") else f"{{{k}}}": str(v) for k, v in values.items()}
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MAKE")},
        "HOME": str(sandbox / "home"),
        "TMPDIR": str(sandbox / "tmp"),
        "REPRO_KERNELS_DIR": "/dev/null/no-kernel-here",
        "PATH": f"{ROOT / '.venv' / 'bin'}:{os.environ['PATH']}",
    }
    cases = [c for c in inputs(sandbox) if not args.only or c[0] == args.only]
    counts = dict.fromkeys(["inputs", "tracebacks", "code ran", "writes", "strays", "hangs"], 0)
    start = time.perf_counter()
    for kind, argv, extra in cases:

        def filled(text: str) -> str:
            for key in sorted(values, key=len, reverse=True):  # {r2} before {r}
                text = text.replace(key, values[key])
            return text

        argv = [filled(a) for a in argv]
        argv = [sys.executable, "-m", "repro", *argv[1:]] if argv[0] == "repro" else argv
        before = snapshot(ROOT, sandbox / "o"), folders(sandbox / "runs", ROOT / "runs")
        try:
            done = subprocess.run(
                argv, cwd=ROOT, capture_output=True, text=True, timeout=120,
                env={**env, **{k: filled(v) for k, v in extra.items()}},
            )  # fmt: skip
            rc, said = done.returncode, done.stderr + done.stdout
        except subprocess.TimeoutExpired:
            rc, said = None, ""
        after = snapshot(ROOT, sandbox / "o"), folders(sandbox / "runs", ROOT / "runs")
        findings = {
            "hangs": rc is None,
            "tracebacks": rc == 70 or "Traceback" in said,
            "code ran": any((sandbox / "m").iterdir()),
            "writes": after[0] != before[0],
            "strays": rc == 2 and after[1] != before[1],  # refused, yet a folder was made
        }
        counts["inputs"] += 1
        shown = " ".join(argv[2:] if argv[0] == sys.executable else argv)[:160]
        for what, found in findings.items():
            if found:
                counts[what] += 1
                line = said.strip().splitlines()[-1][:200] if said.strip() else ""
                if what == "writes":  # which files
                    line += f" {sorted(set(after[0].items()) ^ set(before[0].items()))[:3]}"
                print(f"{what.upper()} [{kind}] {shown} {extra}: rc={rc}: {line}", flush=True)
        if args.show:
            print(f"  rc={rc} [{kind}] {shown[:100]}: {said.strip()[:120]!r}", flush=True)
        for folder in (sandbox / "m").iterdir():
            folder.unlink()
        for folder in after[1] - before[1]:
            shutil.rmtree(folder, ignore_errors=True)
    seconds = time.perf_counter() - start
    print(json.dumps({**counts, "seconds": round(seconds)}))
    shutil.rmtree(sandbox, ignore_errors=True)
    return 1 if any(counts[k] for k in counts if k != "inputs") else 0


if __name__ == "__main__":
    sys.exit(main())
