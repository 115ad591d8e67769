"""Every input has bounds (repro.bounds): numbers in ASCII digits, finite and in range; text of a
bounded length and alphabet; YAML without aliases or duplicate keys; model configs in range;
long values cut in messages (repro.errors). No kernel starts here."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
from conftest import repro, run_folders

from repro import bounds
from repro.driver import plan, sweep, untrusted
from repro.driver.rerun import same_as_checkout
from repro.errors import ReproError, UserError, cut, cut_lines, quoted, unknown
from repro.paths import ROOT

HUGE = "9" * 400


def short(value) -> str:
    """A test id of at most 30 characters (some values here are a megabyte)."""
    return str(value)[:30]


def refused(call, *args, **kwargs) -> str:
    with pytest.raises(UserError) as error:
        call(*args, **kwargs)
    message = str(error.value)
    assert "\n" not in message and len(message) < 600, message
    return message


@pytest.mark.parametrize(
    ("raw", "kind", "message"),
    [
        ("٣", int, "n must be an integer, got '٣' (ASCII digits 0-9 only)"),
        ("３", int, "(ASCII digits 0-9 only)"),  # fullwidth
        ("1٠", float, "(ASCII digits 0-9 only)"),
        ("1_000", int, "n must be an integer, got '1_000'"),
        ("2.5", int, "n must be an integer, got '2.5'"),
        ("nan", float, "n must be a finite number, got nan"),
        ("-inf", float, "n must be a finite number, got -inf"),
        ("1e999", float, "n must be a finite number, got inf"),
        (HUGE, float, "n must be a finite number, got inf"),
        (HUGE, int, "n must be <= 100, got 999"),
        ("9" * 5000, int, "n must be an integer, got '9999"),  # past Python's int() digits
        (10**400, float, "n must be <= 100, got 1000"),  # from YAML
        (float("nan"), float, "n must be a finite number, got nan"),
        (True, int, "n must be an integer, got True"),
        (1.0, int, "n must be an integer, got 1.0"),
        ("-1", int, "n must be >= 0, got -1"),
        ("101", int, "n must be <= 100, got 101"),
    ],
    ids=short,
)
def test_a_number_is_ascii_finite_and_in_range(raw, kind, message):
    assert message in refused(bounds.number, raw, "n", kind, 0, 100)


def test_a_number_in_range_is_typed():
    assert bounds.number(" 7 ", "n", int, 0, 100) == 7
    assert bounds.number("+.5e1", "n", float, 0, 100) == 5.0
    assert bounds.number(3, "n", float, 0, 100) == 3.0 and bounds.number(3, "n", int, 0, 9) == 3


def test_every_numeric_run_parameter_has_a_range():
    for param in plan.PARAMS.values():
        if param.type in (int, float):
            assert param.minimum is not None and param.maximum is not None, param.name


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"steps": "٣"}, "steps must be an integer, got '٣' (ASCII digits 0-9 only)"),
        ({"lr": "١e-3"}, "lr must be a number, got '١e-3' (ASCII digits 0-9 only)"),
        ({"seed": HUGE}, "seed must be <= 4294967295, got 9999"),
        ({"price_per_hour": HUGE}, "price_per_hour must be a finite number, got inf"),
        ({"country": "ÅÄÖ"}, "country must be a 3-letter ISO 3166 code such as USA or FRA"),
        ({"country": "ßßß"}, "country must be a 3-letter ISO 3166 code"),  # not SSSSSS
        ({"country": "U1A"}, "country must be a 3-letter ISO 3166 code"),
        ({"country": "A" * 10**6}, "country must be at most 256 characters, got 'AAAA"),
        ({"data": "d" * 5000}, "data must be at most 4,096 characters"),
        ({"precision": "x" * 10**6}, "precision must be at most 256 characters"),
        (
            {
                "scenario": "server",
                "target_qps": "0.0001",
                "min_duration_ms": "1",
                "min_query_count": "1",
            },
            "scenario=server runs until min_query_count=1 queries have come at "
            "target_qps=0.0001: 10,000 s, over the 3,600 s a LoadGen run may take",
        ),
        (
            {"scenario": "single-stream", "target_latency_ms": "1000", "min_query_count": "10000"},
            "10,000 s, over the 3,600 s a LoadGen run may take; lower target_latency_ms",
        ),
    ],
    ids=short,
)
def test_run_parameters_are_bounded(params, message):
    assert message in refused(plan.resolve, "resnet-tiny", "torch", params)


def test_a_country_is_ascii_and_upper_cased():
    assert plan.resolve("resnet-tiny", "torch", {"country": "fra"}).params["country"] == "FRA"
    fine = {"scenario": "server", "target_qps": "100", "min_query_count": "1000"}
    assert plan.resolve("resnet-tiny", "torch", fine).params["target_qps"] == 100.0


@pytest.mark.parametrize("variable", list(bounds.ENVIRONMENT))
@pytest.mark.parametrize("value", ["abc", "nan", "inf", "-5", "٣", HUGE])
def test_environment_numbers_are_bounded_before_a_run_is_planned(variable, value, monkeypatch):
    monkeypatch.setenv(variable, value)
    message = refused(plan.resolve, "resnet-tiny", "torch")
    assert message.startswith(f"{variable} must be ") and message.endswith(", or unset it")


def test_environment_numbers_in_range_are_read(monkeypatch):
    monkeypatch.setenv("REPRO_MIN_FREE_MB", "0")  # 0: no check, as documented
    monkeypatch.setenv("REPRO_MEMORY_LIMIT_MB", " 512 ")
    monkeypatch.delenv("REPRO_DATA_MAX_MB", raising=False)
    assert [bounds.setting(v) for v in bounds.ENVIRONMENT] == [0.0, 512.0, 2048.0]


def test_a_bad_memory_limit_is_one_line_and_leaves_no_run_folder(tmp_path):
    runs = tmp_path / "runs"
    env = {**os.environ, "REPRO_MEMORY_LIMIT_MB": "abc"}
    done = subprocess.run(
        [sys.executable, "-m", "repro", "run", "resnet-tiny", "--runs-dir", str(runs)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("repro: REPRO_MEMORY_LIMIT_MB must be a number, got 'abc'")
    assert not runs.exists() or run_folders(runs) == []


ALIAS_BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
name: [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (ALIAS_BOMB, "line 1: anchors and aliases (& and *) are not read; write the value out"),
        ("axes: {steps: &s [5]}\n", "line 1: anchors and aliases"),
        ("axes: {steps: [5]}\nconcurrency: 1\nconcurrency: 2\n", "line 3: key 'concurrency' is"),
        ("axes: {steps: [5], steps: [6]}\n", "line 1: key 'steps' is given twice; give it once"),
        ("axes: {steps: [5]}\nx: " + "[" * 1000, "line 2: nested more than 20 levels deep"),
        ("axes: {steps: [5]}\n#" + "x" * 2**18, "over 256 KB; a sweep file is a few hundred bytes"),
        ("axes: {steps: [5]}\nconcurrency: " + HUGE, "concurrency must be <= 1000, got 9999"),
        ("axes: {steps: [5]}\nnum_gpus: " + HUGE, "num_gpus must be <= 64, got 9999"),
        ("axes: {steps: [5]}\nconcurrency: '٣'", "concurrency must be an integer, got '٣'"),
        ("axes: {steps: ['٣']}", "steps must be an integer, got '٣'"),
        ("name: " + "n" * 10**5 + "\naxes: {steps: [5]}", "name must be up to 64 letters"),
        ("axes: {steps: [5]}\ntemplate: [a]", "template must be text, got ['a']"),
    ],
    ids=short,
)
def test_a_hostile_sweep_file_is_refused_in_one_short_line_at_once(text, message, tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(text)
    start = time.monotonic()
    with pytest.raises(UserError) as error:
        sweep.check(sweep.load(path, tmp_path / "runs"), remote=False)
    assert time.monotonic() - start < 0.5  # the alias bomb took 2 minutes and 3.4 GB
    assert message in str(error.value) and str(path) in str(error.value)
    assert "\n" not in str(error.value) and len(str(error.value)) < 600


def test_a_workload_file_goes_through_the_same_loader(tmp_path):
    spec = (plan.WORKLOADS / "resnet-tiny.yaml").read_text()
    path = tmp_path / "w.yaml"
    path.write_text(spec + "batch_size: 3\n")
    assert "key 'batch_size' is given twice" in refused(plan.load_workload, path)
    path.write_text(spec.replace("name:", "name: &n"))
    assert "anchors and aliases" in refused(plan.load_workload, path)


@pytest.mark.parametrize(
    ("workload", "config", "message"),
    [
        (
            "resnet-tiny",
            {"width": -16},
            "width must be a whole number from 1 to 1,048,576, got -16",
        ),
        ("resnet-tiny", {"width": 0}, "width must be a whole number from 1 to 1,048,576, got 0"),
        ("resnet-tiny", {"width": 2**40}, "width must be a whole number"),
        ("resnet-tiny", {"width": 16.0}, "width must be a whole number"),
        ("resnet-tiny", {"width": True}, "width must be a whole number"),
        ("resnet-tiny", {"width": "16"}, "width must be a whole number"),
        ("resnet-tiny", {"depths": []}, "depths must be a list of 1 to 16 entries"),
        ("resnet-tiny", {"depths": [1, 0, 1, 1]}, "depths must be a list of 1 to 16 entries"),
        ("resnet-tiny", {"depths": [1] * 17}, "depths must be a list of 1 to 16 entries"),
        ("resnet-tiny", {"depths": 3}, "depths must be a list"),
        (
            "gpt-mini",
            {"layer_norm_eps": 0},
            "layer_norm_eps must be a number above 0 and at most 1",
        ),
        ("gpt-mini", {"layer_norm_eps": float("nan")}, "layer_norm_eps must be a number above 0"),
        ("gpt-mini", {"heads": -2}, "heads must be a whole number"),
        ("gpt-mini", {"qkv_bias": 1}, "qkv_bias must be true or false, got 1"),
        ("gpt-mini", {"activation": "x" * 100}, "activation must be a name of 1 to 32 characters"),
        ("gpt-mini", {"activation": "relu"}, "activation"),  # GPT's own check: its choices
    ],
    ids=short,
)
def test_model_config_values_are_range_checked_at_the_plan_boundary(workload, config, message):
    """In a workload file or a (trusted) rerun's spec alike: refused before any kernel starts."""
    spec = plan.workloads()[workload]
    bad = {**spec, "model": {**spec["model"], "config": {**spec["model"]["config"], **config}}}
    assert message in refused(plan.check_spec, bad, "workload file w.yaml")
    assert message in refused(plan.resolve, workload, "torch", spec=bad)


def test_long_values_and_listings_are_cut():
    assert cut("x" * 150) == "x" * 100 + "… and 50 more characters"
    assert cut("short") == "short" and cut(12) == "12"
    assert quoted("y" * 10**6) == repr("y" * 100) + "… and 999,900 more characters"
    lines = cut_lines([f"line {i}" for i in range(17100)], 50)
    assert lines.splitlines()[-1] == "… and 17,050 more lines" and len(lines.splitlines()) == 51
    assert cut_lines("a\nb", 5) == "a\nb"
    assert len(unknown("workload", "z" * 10**6, ["resnet-50"])) < 300
    long = str(ReproError("\n".join(["x" * 5000] * 100)))  # any message: its lines, their length
    assert len(long.splitlines()) == 61 and "… and 4,000 more characters" in long


def test_a_long_diff_is_cut_before_a_rerun_is_refused(monkeypatch, capsys):
    diff = "".join(f"+line {i}\n" for i in range(17100))
    files = [f"repro/f{i}.py differs" for i in range(500)]
    differs = untrusted.Differences(files, [], [], diff)
    monkeypatch.setattr(untrusted, "differences", lambda report: differs)
    with pytest.raises(UserError) as error:
        same_as_checkout(None, False, sys.stderr)
    shown = capsys.readouterr().err.splitlines()
    assert len(shown) == 401 and shown[-1] == "… and 16,700 more lines"
    assert "more characters" in str(error.value) and len(str(error.value)) < 1000


def test_the_cli_never_echoes_a_long_value(tmp_path):
    country = "country=" + "Q" * 10**5  # a 1 MB one is refused as well, but argv holds 128 KB
    done = repro("run", "resnet-tiny", "--runs-dir", str(tmp_path / "runs"), "-p", country)
    assert done.returncode == 2 and len(done.stderr) < 600, done.stderr[:600]
    assert "country must be at most 256 characters" in done.stderr
    assert "… and 99,900 more characters" in done.stderr


def test_yaml_safe_load_is_read_only_through_repro_bounds():
    readers = [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "repro").rglob("*.py")
        if "yaml.safe_load" in p.read_text() or "yaml.load(" in p.read_text()
    ]
    assert readers == ["repro/bounds.py"]
