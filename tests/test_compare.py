"""repro compare: ratio of medians with a bootstrap CI and Mann-Whitney U, context checks, and
the --fail-if-slower regression gate."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import repro

pytestmark = pytest.mark.kernel


def slowed_copy(folder, tmp_path, factor):
    """A copy of a real run whose every measured step took `factor` times as long: a planted
    regression with the noise of a real run."""
    slow = shutil.copytree(folder, tmp_path / f"{folder.name}-slow")
    metrics = json.loads((slow / "metrics.json").read_text())
    metrics["samples"]["step_s"] = [t * factor for t in metrics["samples"]["step_s"]]
    (slow / "metrics.json").write_text(json.dumps(metrics))
    return slow


def test_identical_samples_pass_even_a_zero_threshold(small_runs, tmp_path):
    same = slowed_copy(small_runs["a"], tmp_path, 1.0)
    done = repro("compare", str(small_runs["a"]), str(same), "--fail-if-slower", "0%")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "step time x1.000" in done.stdout and "no significant difference" in done.stdout


def test_two_real_runs_are_compared_with_their_noise(small_runs):
    # Two runs of the same settings: the verdict depends on the machine's noise, so only the
    # statistics are checked here, not which way they fall.
    done = repro("compare", str(small_runs["a"]), str(small_runs["b"]))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "95% CI" in done.stdout and "Mann-Whitney p=" in done.stdout


def test_a_planted_slowdown_fails_the_gate(small_runs, tmp_path):
    slow = slowed_copy(small_runs["a"], tmp_path, 3.0)  # unmistakable even on a noisy machine
    done = repro("compare", str(small_runs["a"]), str(slow), "--fail-if-slower", "5%")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "slower by 200.0%" in done.stdout and "REGRESSION" in done.stdout
    # the same slowdown under a threshold it does not exceed passes
    assert (
        repro("compare", str(small_runs["a"]), str(slow), "--fail-if-slower", "250%").returncode
        == 0
    )


def test_runs_of_another_context_need_an_explicit_opt_in(small_runs):
    mixed = repro("compare", str(small_runs["a"]), str(small_runs["c"]))
    assert mixed.returncode == 2
    assert "context differs: batch_size: [2, 4]" in mixed.stdout
    assert "--allow-mixed" in mixed.stderr
    allowed = repro("compare", str(small_runs["a"]), str(small_runs["c"]), "--allow-mixed")
    assert allowed.returncode == 0 and "step time x" in allowed.stdout


def test_bad_arguments_exit_2_with_one_line(small_runs, tmp_path):
    done = repro("compare", str(small_runs["a"]), str(tmp_path), "--fail-if-slower", "5%")
    assert done.returncode == 2 and "not a complete run folder" in done.stderr
    done = repro("compare", str(small_runs["a"]), str(small_runs["b"]), "--fail-if-slower", "lots")
    assert done.returncode == 2 and "takes a percentage" in done.stderr
