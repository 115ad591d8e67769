"""Make variables are data: whatever value any variable the Makefile names is given, on the command
line or in the environment, no code runs, no value is pasted into a shell command or becomes an
option, and nothing is written. The variables are read from the Makefile, so one added later is
covered too. Fast: `make -n` runs nothing but make itself, and the real targets stop before a
kernel."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import ROOT

MAKEFILE = re.sub(r"^#.*\n", "", (ROOT / "Makefile").read_text(), flags=re.M)  # comments out
TARGETS = re.findall(r"^([\w-]+):.*## ", MAKEFILE, re.M)  # those `make help` lists
NAME = r"[.A-Za-z_][.\w]*"


def listed(name: str) -> list[str]:
    """The words of a list the Makefile assigns (`override BOOL_VARS := A B \\ ...`)."""
    value = re.search(rf"^(?:override )?{name} := ((?:.*\\\n)*.*)", MAKEFILE, re.M).group(1)
    return value.replace("\\", " ").split()


def variables() -> list[str]:
    """Every variable the Makefile assigns, reads ($(NAME)), lists (*_VARS) or has a recipe read
    ($$NAME)."""
    names = set(re.findall(rf"^(?:override |export )*({NAME}) *[:?+]?=", MAKEFILE, re.M))
    names |= set(re.findall(rf"\$[({{]({NAME})[)}}]", MAKEFILE))
    names |= set(re.findall(r"\$\$\{?([A-Za-z_]\w*)", MAKEFILE))
    for words in map(listed, re.findall(r"^(?:override )?(\w+_VARS) :=", MAKEFILE, re.M)):
        names |= set(words) if all(re.fullmatch(r"[A-Za-z_]\w*", w) for w in words) else set()
    return sorted(names)


VARIABLES = variables()
USER_VARS, BOOL_VARS = listed("USER_VARS"), listed("BOOL_VARS")
SETTINGS = [v for v in VARIABLES if v in USER_VARS or v in listed("SETTINGS")]
# A value that is code to make (`$(shell)`) and to a shell (backticks, `$(...)`, `;`, a newline),
# and options to repro; {m} is a folder that must stay empty.
HOSTILE = (
    "--runs-dir={m}/runs $(shell touch {m}/make)`touch {m}/tick`;touch {m}/semicolon;"
    "$(touch {m}/substitution)\ntouch {m}/newline --help --template={m}/nb.ipynb"
)


def make_env(**values: str) -> dict[str, str]:
    """This environment without make's variables or any the Makefile names (an outer `make test`
    exports some), plus `values`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAKE") and k not in VARIABLES}
    return {**env, **values}


def make(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    env = env or make_env()
    return subprocess.run(["make", *args], cwd=ROOT, capture_output=True, text=True, env=env)


def test_the_makefile_names_its_variables():
    """The parsing above finds what it must, so the tests below cover every variable."""
    assert {"WORKLOAD", "TRUST", "PYTHON", "TEST_WORKERS", "JUPYTER_PATH", "VENV", "REPRO"} <= {
        *VARIABLES
    }
    assert {"SHELL", ".SHELLFLAGS", "USER_VARS", "MAKEFILE_LIST", "CURDIR", "v"} <= {*VARIABLES}
    assert {*BOOL_VARS} <= {*USER_VARS} <= {*SETTINGS} and {"run", "test"} <= {*TARGETS}


@pytest.mark.parametrize(
    ("route", "name"),
    [("environment", v) for v in VARIABLES] + [("command line", v) for v in SETTINGS],
)
def test_no_value_runs_or_is_pasted_into_a_command(route, name, tmp_path):
    """`make -n -B <every target> NAME=<hostile>` prints every recipe (or stops in one line):
    nothing ran, and the value appears in no command (recipes read it as "$NAME")."""
    value = HOSTILE.format(m=tmp_path)
    given = [f"{name}={value}"] if route == "command line" else []
    env = make_env(**({name: value} if route == "environment" else {}))
    done = make("-n", "-B", *TARGETS, *given, env=env)
    assert not list(tmp_path.iterdir()), "a value ran as code"
    assert str(tmp_path) not in done.stdout, "a value was pasted into a command"
    assert "Traceback" not in done.stdout + done.stderr
    if done.returncode:
        assert done.returncode == 2 and re.fullmatch(
            r"Makefile:\d+: \*\*\* .*Stop\.\n", done.stderr
        )
    else:
        assert done.stderr == "" and "bin/repro run" in done.stdout


def test_any_other_command_line_variable_stops_make_before_it_is_read(tmp_path):
    """A variable that is not a setting (VENV=, SHELL=, MAKEFILE_LIST=, a typo) would be ignored
    or would change the Makefile's or make's own: make stops in one line naming them all, before
    reading any (all at once: a hostile value would run as it is read)."""
    others = [v for v in VARIABLES if v not in SETTINGS] + ["WORKLAOD"]
    done = make("-n", "run", *(f"{v}={HOSTILE.format(m=tmp_path)}" for v in others))
    assert not list(tmp_path.iterdir()), "a value ran as code"
    assert done.returncode == 2 and done.stdout == ""
    [line] = done.stderr.splitlines()
    assert re.fullmatch(r"Makefile:\d+: \*\*\* not a setting of this Makefile: .*Stop\.", line)
    assert sorted(line.split(": ")[-1].split(" (")[0].split()) == sorted(others)
    assert "SHELL" in others and "VENV" in others and "MAKEFILE_LIST" in others


def test_every_value_reaches_repro_as_an_option_value_or_after_double_dash():
    """In every repro command, a value is `--option="$NAME"` or a positional after `--`, so no
    value (WORKLOAD=--template=x, RUNS="--runs-dir=/elsewhere a b") is parsed as an option."""
    values = [f"{v}={1 if v in BOOL_VARS else 'x'}" for v in USER_VARS]
    done = make("-n", "-B", *TARGETS, *values)
    assert done.returncode == 0, done.stderr
    commands = [c for c in done.stdout.replace("\\\n", " ").splitlines() if "bin/repro " in c]
    assert len(commands) >= len(TARGETS) - 6
    for command in commands:
        words = shlex.split(command)
        for i, word in enumerate(words):
            if "$" in word:
                assert re.match(r"--[\w-]+=\$", word) or "--" in words[:i], command
    used = " ".join(commands)
    assert all(f"${v}" in used or f"${{{v}" in used for v in set(USER_VARS) - set(BOOL_VARS))


@pytest.mark.parametrize("name", BOOL_VARS)
def test_a_yes_no_setting_means_what_it_says(name):
    """1/true/yes switch it on, 0/false/no/empty off (any case); anything else stops make in one
    line naming the variable and the values it takes."""
    flag = "--" + name.lower().replace("_", "-")
    for value, on in [("1", True), ("TRUE", True), ("Yes", True), ("0", False), ("false", False)]:
        for value_, on_ in [(value, on), ("No", False), ("", False)]:
            done = make("-n", *TARGETS, f"{name}={value_}")
            assert done.returncode == 0 and (flag in done.stdout.split()) is on_, value_
    for value in ("maybe", "1 0", "2", "-1", "$(shell true)"):
        done = make("-n", "run", f"{name}={value}")
        assert done.returncode == 2 and done.stdout == ""
        assert re.fullmatch(
            rf"Makefile:\d+: \*\*\* {name} takes 1, true or yes \(on\), or 0, false, no or "
            r"nothing \(off\)\.  Stop\.\n",
            done.stderr,
        )


def test_make_checks_the_values_it_uses_itself(tmp_path):
    """TEST_WORKERS is a small number (or auto); PYTHON is a command, run as one word: both in
    one line, before anything runs."""
    for value in ("2 3", "x", "-n", "100", "2; touch {m}/x"):
        done = make("-n", "test", f"TEST_WORKERS={value.format(m=tmp_path)}")
        assert done.returncode == 2 and done.stdout == "" and "TEST_WORKERS takes" in done.stderr
    assert make("-n", "test", "TEST_WORKERS=auto").returncode == 0
    # PYTHON in a copy of the Makefile with no .venv, where the venv recipe runs for real
    shutil.copy(ROOT / "Makefile", tmp_path)
    (tmp_path / "pyproject.toml").touch()
    for value in ("no-such; touch {m}/x", "`touch {m}/y`", "$(shell touch {m}/z)", "--version"):
        python = value.format(m=tmp_path)
        done = subprocess.run(
            ["make", "venv", f"PYTHON={python}"],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env=make_env(),
        )
        assert done.returncode == 2 and done.stderr.splitlines()[0] == (
            f"PYTHON={python}: no such command; give an interpreter, e.g. PYTHON=python3.12"
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "pyproject.toml"]


@pytest.mark.parametrize(
    ("given", "message"),
    [
        (["run", "WORKLOAD=--template={d}/nb.ipynb"], "unknown workload '--template={d}/nb.ipynb'"),
        (["lesson", "NAME=--runs-dir={d}/elsewhere"], "unknown lesson '--runs-dir={d}/elsewhere'"),
        (["compare", "RUNS=--runs-dir={d}/elsewhere {d}/a"], "--runs-dir={d}/elsewhere does not"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else "",
)
def test_a_value_that_looks_like_an_option_is_a_name(given, message, tmp_path):
    """A real target: the value is the name it stands for, an unknown one (one line, exit 2), not
    an option; nothing is written, here or in runs/."""
    runs = sorted((ROOT / "runs").glob("*"))
    args = [a.replace("{d}", str(tmp_path)) for a in given]
    done = make(*args, f"RUNS_DIR={tmp_path}/runs")
    [line] = [line for line in done.stderr.splitlines() if line.startswith("repro: ")]
    assert done.returncode == 2 and message.replace("{d}", str(tmp_path)) in line, done.stderr
    assert "Traceback" not in done.stderr and "usage:" not in done.stdout
    assert not list(tmp_path.iterdir()) and sorted((ROOT / "runs").glob("*")) == runs
    assert not Path(f"{tmp_path}/elsewhere").exists()
