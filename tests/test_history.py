"""repro history: runs grouped into series (one line per workload, framework, settings and
machine context), ordered by time, commit or framework version, each point against the one
before with compare's test; without a kernel on real records (tests/fixtures/records/, changed),
then one real report over real runs."""

from __future__ import annotations

import html
import io
import json
import re
import subprocess
from pathlib import Path

import pytest
from conftest import FIXTURES, repro

from repro import records
from repro.driver import history as driver
from repro.kernel import history

RECORDS = FIXTURES / "records"


def planted(
    source: Path,
    folder: Path,
    started: str,
    slower: float = 1.0,
    cpu: str | None = None,
    version: str | None = None,
    git: dict | None = None,
    **params,
) -> Path:
    """A copy of `source`'s records started at `started`, every step `slower` times as long (its
    summary's throughput and p90 with them), on another `cpu` or framework `version`, or with
    another `git` state."""
    metrics = json.loads((source / "metrics.json").read_text())
    environment = json.loads((source / "environment.json").read_text())
    metrics["started_at"] = started
    metrics["run_id"] = f"{metrics['run_id']}-{folder.name}"  # another run, not a copy
    metrics["params"].update(params)
    samples, summary = metrics["samples"], metrics["summary"]
    for steps in (samples, *samples.get("processes", [])):
        steps["step_s"] = [t * slower for t in steps["step_s"]]
    throughput = summary["throughput"]
    throughput["samples_per_s"] /= slower
    throughput["ci95"] = [b / slower for b in throughput["ci95"]]
    summary["latency_ms"]["p90"] *= slower
    environment["cpu"]["model"] = cpu or environment["cpu"]["model"]
    environment["framework"]["version"] = version or environment["framework"]["version"]
    environment["run"]["git"] = git or environment["run"]["git"]
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(json.dumps(metrics))
    (folder / "environment.json").write_text(json.dumps(environment))
    return folder


def day(n: int) -> str:
    return f"2026-11-{n:02d}T00:00:00+00:00"


def test_series_keep_contexts_apart_and_flag_a_regression_with_compares_test(tmp_path):
    runs = [
        planted(RECORDS, tmp_path / "a", day(20)),
        planted(RECORDS, tmp_path / "b", day(21), 1.02, steps=50, seed=3),  # measuring longer
        planted(RECORDS, tmp_path / "c", day(22), 2.0),  # the regression
        planted(RECORDS, tmp_path / "d", day(21), cpu="Other CPU"),
        planted(RECORDS, tmp_path / "e", day(23), 0.5, precision="bf16"),
    ]
    lines = history.history([records.load(r) for r in runs], "time", 0.05)
    points = {name: [p["run"] for p in ps] for name, ps in lines.items()}
    model = records.load(runs[0]).environment.cpu["model"]
    assert points == {
        f"resnet-tiny · torch eager · bs2 fp32 inference, cpu={model}": ["a", "b", "c"],
        "resnet-tiny · torch eager · bs2 fp32 inference, cpu=Other CPU": ["d"],
        "resnet-tiny · torch eager · bs2 bf16 inference": ["e"],  # faster, but another line
    }
    [regression] = history.regressions(lines)
    assert regression["run"] == "c" and regression["versus_previous"]["previous"] == "b"
    assert regression["versus_previous"]["verdict"].startswith("slower by")
    first, second, _ = next(iter(lines.values()))
    assert first["versus_previous"] is None and not second["regression"]
    assert [p["x"] for ps in lines.values() for p in ps] == [0, 1, 2, 1, 3]  # one time axis
    tolerant = history.history([records.load(r) for r in runs], "time", 1.5)
    assert history.regressions(tolerant) == []  # 2x slower is not slower by more than 150%


def test_points_in_order_of_framework_version_or_commit(tmp_path):
    runs = [
        planted(RECORDS, tmp_path / "new", day(20), version="2.10.0"),
        planted(RECORDS, tmp_path / "old", day(21), version="2.9.1"),
        planted(RECORDS, tmp_path / "odd", day(22), version="nightly"),
    ]
    loaded = [records.load(r) for r in runs]
    [by_version] = history.history(loaded, "framework_version").values()
    assert [p["run"] for p in by_version] == ["old", "new", "odd"]  # 2.9.1 < 2.10.0, then text
    [by_commit] = history.history(loaded, "commit").values()
    assert [p["at"] for p in by_commit] == ["256a596d6a"] * 3  # one commit: in order of time
    assert [p["run"] for p in by_commit] == ["new", "old", "odd"]


def repository(folder: Path, commits: int) -> list[str]:
    """A throwaway git repository of `commits` empty commits; their names, oldest first."""
    folder.mkdir()
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(folder)], check=True)
    for i in range(commits):
        subprocess.run(
            ["git", "-C", str(folder), *identity, "commit", "-q", "--allow-empty", "-m", str(i)],
            check=True,
        )
    listed = ["git", "-C", str(folder), "rev-list", "--reverse", "HEAD"]
    return subprocess.run(listed, capture_output=True, text=True, check=True).stdout.split()


def test_commits_follow_the_repository_history_and_the_rest_the_order_they_first_ran(tmp_path):
    first, second, third = repository(tmp_path / "repo", 3)
    foreign, odd = "f" * 40, "HEAD; touch pwned"  # a commit it lacks; no commit at all
    given = [  # (name, day, commit, dirty), run in another order than the commits were made
        ("c3", 20, third, False),
        ("x", 21, foreign, False),
        ("c1", 22, first, False),
        ("c3-dirty", 23, third, True),
        ("odd", 24, odd, False),
        ("c2", 25, second, False),
        ("c1-again", 26, first, False),
    ]
    runs = [
        records.load(planted(RECORDS, tmp_path / n, day(d), git={"commit": c, "dirty": dirty}))
        for n, d, c, dirty in given
    ]
    commits, order = driver.commit_order(runs, tmp_path / "repo")
    assert commits == [first, second, third]
    assert order == (
        f"commits in the order of the history of {tmp_path / 'repo'} (git rev-list "
        "--topo-order), oldest first; the 2 commit(s) it does not hold follow, in the order "
        "they first ran"
    )
    assert not (tmp_path / "repo" / "pwned").exists()
    [points] = history.history(runs, "commit", commits=commits).values()
    assert [p["run"] for p in points] == ["c1", "c1-again", "c2", "c3", "c3-dirty", "x", "odd"]
    assert [p["x"] for p in points] == [0, 0, 1, 2, 3, 4, 5]
    [fallback] = history.history(runs, "commit").values()  # no repository: as they first ran
    assert [p["run"] for p in fallback] == ["c3", "c3-dirty", "x", "c1", "c1-again", "odd", "c2"]


def test_without_git_or_a_checkout_commits_keep_the_order_they_first_ran(tmp_path, monkeypatch):
    run = records.load(planted(RECORDS, tmp_path / "a", day(20)))
    commits, order = driver.commit_order([run], tmp_path)  # no checkout here
    assert commits == [] and order.startswith(
        f"commits in the order they first ran: git cannot read the history of {tmp_path} ("
    )
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    commits, order = driver.commit_order([run], tmp_path)
    assert commits == [] and order.startswith("commits in the order they first ran: git could not")
    short = records.load(planted(RECORDS, tmp_path / "b", day(21), git={"commit": "256a596"}))
    assert driver.commit_order([short], tmp_path) == (
        [],
        "commits in the order they first ran: no run records a full git commit",
    )


def test_a_time_axis_is_to_scale_in_utc(tmp_path):
    points = [{"time": t} for t in (day(20), "2026-11-20T06:00:00+05:00", "2026-11-22T12:00:00")]
    start, later, naive = history.moments(points)  # 00:00, 01:00 UTC, then 2.5 days on
    assert (later - start).total_seconds() == 3600
    assert naive.tzinfo is not None and (naive - start).total_seconds() == 2.5 * 86400
    assert history.moments([{"time": "yesterday"}]) is None


def test_runs_are_found_in_sweeps_and_what_does_not_load_is_listed(tmp_path):
    planted(RECORDS, tmp_path / "runs" / "a", day(20))
    planted(RECORDS, tmp_path / "runs" / "sweep_x" / "cells" / "c1" / "b", day(21))
    newer = planted(RECORDS, tmp_path / "runs" / "newer", day(22))
    metrics = json.loads((newer / "metrics.json").read_text())
    (newer / "metrics.json").write_text(json.dumps({**metrics, "schema": "repro.metrics/2"}))
    (tmp_path / "runs" / "sweep_x" / "state.json").write_text("{}")
    log = io.StringIO()
    runs, passed = driver.found([str(tmp_path / "runs")], log)
    assert [r.name for r in runs] == ["a", "b"]
    [line] = passed
    assert line.startswith(f"{newer}: ") and "repro.metrics/2" in line
    assert log.getvalue() == f"passed over: {line}\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["{tmp}/missing"], "{tmp}/missing does not exist"),
        (["--runs-dir", "{tmp}/none"], "history found no runs: {tmp}/none does not exist"),
        (["{tmp}"], "history found no finished run in {tmp}"),
        (["{tmp}", "--by", "date"], "--by takes one of time, commit, framework_version"),
        (["{tmp}", "--threshold", "lots"], "--threshold takes a percentage"),
    ],
)
def test_bad_input_is_one_line(tmp_path, args, message):
    done = repro("history", *(a.format(tmp=tmp_path) for a in args))
    assert done.returncode == 2, done.stdout + done.stderr
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("repro: " + message.format(tmp=tmp_path)), line


@pytest.mark.kernel
def test_the_history_report_of_real_runs(small_runs, tmp_path):
    runs = tmp_path / "runs"
    for name, started in (("a", 20), ("b", 21), ("jax", 20)):
        planted(small_runs[name], runs / name, day(started))
    # 3x: the test on process medians (3 each) must find it even when the CI machine is loaded
    # (at load ~9, a planted 1.5x was within the noise between processes once)
    planted(small_runs["b"], runs / "sweep_x" / "cells" / "c" / "slow", day(22), 3.0)
    # and a series of each mode (real records), beside those of the same workload
    mode_copy("train-to-accuracy", runs / "tta", day(20))
    mode_copy("train-to-accuracy", runs / "tta-missed", day(21), missed)
    mode_copy("generate", runs / "gen", day(20))
    mode_copy("offline", runs / "lg", day(20))
    mode_copy("offline", runs / "lg-invalid", day(21), invalid)
    done = repro("history", str(runs), "--runs-dir", str(tmp_path / "out"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "regression: resnet-tiny · torch eager · bs2 fp32 inference: slow: slower by" in (
        done.stdout
    )
    [folder] = (tmp_path / "out").iterdir()
    page = (folder / "report.html").read_text()
    text = html.unescape(re.sub(r"<[^>]+>", " ", page))
    assert "9 runs in 5 series, in order of time" in text
    assert re.search(r"slow\s+\S+\s+\S+\s+[\d.]+\s+\S+.*⚠ REGRESSION: slower by", text, re.S)
    code = r"\s+\S+\s+\S+\s+\S+\s+"  # repro, git commit, framework version
    assert re.search(rf"tta-missed\s+50.0%\s+—\s+—\s+0/2\s+30{code}⚠ REGRESSION: missed", text)
    invalid_row = rf"lg-invalid\s+INVALID\s+501.2\s+280.344{code}⚠ REGRESSION: "
    assert re.search(
        invalid_row + r"no significant difference; LoadGen result VALID → INVALID", text
    )
    assert "or a mode's own: a target missed, a VALID LoadGen result turned INVALID" in text
    alts = [html.unescape(a) for a in re.findall(r'<img[^>]*alt="([^"]*)"', page)]
    assert len(alts) == 4 and all(re.search(r"\d+ regressions marked", a) for a in alts)
    assert any("throughput (samples/s) (left) and p90 step time" in a for a in alts)
    assert any("time to target (s) (left)" in a and "from 2.4 to — s" in a for a in alts)
    assert any("INVALID LoadGen results marked with a black cross" in a for a in alts)
    record = json.loads((folder / "history.json").read_text())
    assert record["status"] == "ok" and len(record["history"]["regressions"]) >= 3
    plots = {p.name for p in (folder / "plots").iterdir()}
    assert plots == {
        f"history_{name}.png"
        for name in ("resnet-tiny", "resnet-tiny_time-to-accuracy", "gpt-mini_generation")
        + ("resnet-tiny_loadgen",)
    }


MODES = RECORDS / "modes"  # real runs of each mode (tests/test_verdict.py says which)


def mode_copy(name: str, folder: Path, started: str, change=None) -> Path:
    """`planted` from the mode's real record, its summary then changed by `change(summary)`."""
    planted(MODES / name, folder, started)
    if change:
        metrics = json.loads((folder / "metrics.json").read_text())
        change(metrics["summary"])
        (folder / "metrics.json").write_text(json.dumps(metrics))
    return folder


def twice_the_time(summary):
    spread = summary["time_to_accuracy"]["processes"]
    spread["times_s"] = [2 * t for t in spread["times_s"]]
    spread.update(median_s=2 * spread["median_s"], min_s=2 * spread["min_s"])
    spread["max_s"] *= 2


def missed(summary):
    spread = summary["time_to_accuracy"]["processes"]
    spread.update(times_s=[], reached=0, stopped_by=["max_steps"] * 2, median_s=None)


def invalid(summary):
    summary["loadgen"].update(result="INVALID", failed=["Min duration satisfied"])


def test_modes_are_series_of_their_own_with_their_headline_and_regressions(tmp_path):
    runs = [
        planted(RECORDS, tmp_path / "plain", day(20)),  # resnet-tiny, torch, bs2 inference
        mode_copy("offline", tmp_path / "lg", day(20)),  # the same, under LoadGen
        mode_copy("offline", tmp_path / "lg-invalid", day(21), invalid),
        mode_copy("train-to-accuracy", tmp_path / "tta", day(20)),
        mode_copy("train-to-accuracy", tmp_path / "tta-slow", day(21), twice_the_time),
        mode_copy("train-to-accuracy", tmp_path / "tta-missed", day(22), missed),
        mode_copy("generate", tmp_path / "gen", day(20)),
        planted(MODES / "generate", tmp_path / "gen-slow", day(21), 3.0),
    ]
    lines = history.history([records.load(r) for r in runs], "time", 0.05)
    assert {name: [p["run"] for p in ps] for name, ps in lines.items()} == {
        "resnet-tiny · torch eager · bs2 fp32 inference": ["plain"],
        "resnet-tiny · torch eager · bs2 fp32 inference LoadGen offline": ["lg", "lg-invalid"],
        "resnet-tiny · torch eager · bs32 fp32 train-to-accuracy": [
            "tta",
            "tta-slow",
            "tta-missed",
        ],
        "gpt-mini · torch eager · bs2 fp32 generate": ["gen", "gen-slow"],
    }
    plain, (lg, lg_invalid), (tta, slow, gone), (gen, gen_slow) = lines.values()
    assert plain[0]["kind"] == "step time" and "time_to_target_s" not in plain[0]
    assert tta["time_to_target_s"] == pytest.approx(2.358, abs=1e-3) and tta["reached"] == "2/2"
    assert slow["regression"] and slow["versus_previous"]["verdict"] == "slower by 100.0%"
    assert slow["versus_previous"]["basis"] == "2 and 2 processes"  # the times, not the steps
    assert gone["regression"] and gone["time_to_target_s"] is None and gone["reached"] == "0/2"
    assert gone["versus_previous"]["verdict"] == "missed the target (the point before reached it)"
    assert gen["tokens_per_s"] == pytest.approx(3684.6, abs=0.1) and gen["tpot_p50_ms"] > 0
    assert gen_slow["regression"]  # a request (a step) three times as long
    assert (lg["loadgen_result"], lg_invalid["loadgen_result"]) == ("VALID", "INVALID")
    assert lg["loadgen_samples_per_s"] == pytest.approx(501.208)
    assert lg_invalid["regression"] and lg_invalid["versus_previous"]["verdict"].endswith(
        "; LoadGen result VALID → INVALID"
    )
    tables = "\n".join(r for kind in history.COLUMNS for r in history.rows_of(lines, kind))
    assert "**Time to accuracy: the median time to target" in tables
    assert "| tta-missed | 50.0% | — | — | 0/2 | 30 |" in tables
    assert "| lg-invalid | **INVALID** | 501.2 | 280.344 |" in tables
    assert "| gen | 3684.6 | 0.437 / 0.832 | 0.779 |" in tables


def test_one_process_to_the_target_is_compared_but_not_tested(tmp_path):
    def one(seconds):
        def change(summary):
            summary["time_to_accuracy"]["processes"].update(
                n=1, times_s=[seconds], stopped_by=["target"], median_s=seconds
            )

        return change

    runs = [
        mode_copy("train-to-accuracy", tmp_path / n, day(d), one(s))
        for n, d, s in (("a", 20, 2.0), ("b", 21, 5.0))
    ]
    [[_, b]] = history.history([records.load(r) for r in runs]).values()
    assert not b["regression"] and b["versus_previous"]["time_ratio"] == pytest.approx(2.5)
    assert (
        b["versus_previous"]["verdict"] == "2.50× the time to target, from one process: not tested"
    )


def test_a_mode_record_that_does_not_hold_its_figures_is_passed_over_in_one_line(tmp_path):
    def garbled(summary):
        summary["generation"]["tpot_ms"]["p50"] = "fast"

    folder = mode_copy("generate", tmp_path / "runs" / "gen", day(20), garbled)
    done = repro("history", str(tmp_path / "runs"), "--runs-dir", str(tmp_path / "out"))
    assert done.returncode == 2 and not (tmp_path / "out").exists()
    [line] = done.stderr.strip().splitlines()
    assert line.endswith(
        f"(passed over: {folder}: {folder}/metrics.json summary generation tpot_ms: 'p50' is "
        "str, not int or float); make one with `make run`"
    )
