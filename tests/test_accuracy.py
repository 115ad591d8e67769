"""mode=train-to-accuracy: time to a held-out accuracy on real data (an image-folder tree here;
a tokenised text file in tests/test_text.py).

Without a kernel: the digits tree `repro data digits` writes, every bad `data=` refused in one
line before anything starts, the training loop's stopping rules (target, step cap, time cap) on a
stand-in model, the fixed held-out split and the seeded order. In the kernels: each framework
reaches 90% on the digits through the per-process code a run and its repeats share
(repro.kernel.accuracy.once, as repro.kernel.repeat runs it), and an image that does not decode
is one line naming it. The template through `repro run`, with two processes and their spread, is
tests/test_text.py's run on text.
"""

from __future__ import annotations

import json
import os
import subprocess
from itertools import islice
from pathlib import Path

import numpy as np
import pytest
from conftest import KERNEL_ENV, ROOT, repro, run_folders

from repro import imagefolder, records
from repro.driver import datasets, headline, kernels, plan
from repro.errors import UserError
from repro.kernel import accuracy, images, realdata

# the digits per class, 0 to 9, as scikit-learn's load_digits() counts them
DIGITS_PER_CLASS = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
TTA = {"mode": "train-to-accuracy", "batch_size": "32"}
PNG_HEADER_ONLY = b"\x89PNG\r\n\x1a\n" + bytes(40)  # what the driver checks; no image behind


@pytest.fixture(scope="module")
def digits(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("data") / "digits"
    done = repro("data", "digits", str(dest))
    assert done.returncode == 0, done.stderr
    return dest


def test_repro_data_digits_writes_the_digits_as_an_image_folder_tree_once(digits):
    folder = imagefolder.scan(digits)  # every file starts as a PNG
    assert folder.classes == tuple("0123456789")
    assert folder.counts() == DIGITS_PER_CLASS
    assert folder.held_out() == sum(round(n * imagefolder.HOLDOUT) for n in DIGITS_PER_CLASS)
    again = repro("data", "digits", str(digits))  # never overwritten
    assert again.returncode == 2 and again.stderr.count("\n") == 1
    assert "already exists" in again.stderr and folder == imagefolder.scan(digits)


def test_without_scikit_learn_the_digits_command_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(datasets.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(UserError, match=r"pip install -e '.\[data\]'"):
        datasets.write_digits(tmp_path / "digits")
    assert not (tmp_path / "digits").exists()


def tree(root: Path, classes: dict[str, int]) -> Path:
    """A tree of files that start as PNGs do (the header is all the driver reads)."""
    for name, count in classes.items():
        (root / name).mkdir(parents=True)
        for i in range(count):
            (root / name / f"{i}.png").write_bytes(PNG_HEADER_ONLY)
    return root


def refusal(data, params: dict | None = None, workload: str = "resnet-tiny") -> str:
    with pytest.raises(UserError) as error:
        plan.resolve(workload, "torch", {**TTA, "data": str(data), **(params or {})})
    message = str(error.value)
    assert "\n" not in message
    return message


def test_bad_data_is_refused_in_one_line_naming_the_fix(tmp_path, monkeypatch):
    good = tree(tmp_path / "good", {"a": 20, "b": 20})
    assert plan.resolve("resnet-tiny", "torch", {**TTA, "data": str(good)}).params["data"]
    assert "is not a directory" in refusal(tmp_path / "missing")
    assert "is not a directory" in refusal(good / "a" / "0.png")
    assert "1 class folder(s)" in refusal(tree(tmp_path / "one", {"a": 5}))
    assert "class 'b' has 1 image(s)" in refusal(tree(tmp_path / "few", {"a": 5, "b": 1}))
    odd = tree(tmp_path / "odd", {"a": 5, "b": 5})
    (odd / "a" / "notes.txt").write_text("x")
    assert "a/notes.txt is not an image file" in refusal(odd)
    fake = tree(tmp_path / "fake", {"a": 5, "b": 5})
    (fake / "b" / "3.png").write_bytes(b"GIF89a")
    assert "b/3.png is not a PNG image" in refusal(fake)
    linked = tree(tmp_path / "linked", {"a": 5, "b": 5})
    (linked / "a" / "9.png").symlink_to("/etc/passwd")
    assert "a/9.png is a link" in refusal(linked)
    (linked / "a" / "9.png").unlink()
    (linked / "c").symlink_to(linked / "a")
    assert "c is a link" in refusal(linked)
    nested = tree(tmp_path / "nested", {"a": 5, "b": 5})
    (nested / "a" / "deeper").mkdir()
    assert "a/deeper is not a regular file" in refusal(nested)
    assert "fewer than one batch" in refusal(good, {"batch_size": "33"})
    monkeypatch.setenv(imagefolder.MAX_BYTES_VARIABLE, "0.0001")
    assert "raise REPRO_DATA_MAX_MB" in refusal(good)
    monkeypatch.delenv(imagefolder.MAX_BYTES_VARIABLE)
    assert "needs data=PATH" in refusal("")
    assert "bert-mini is a sequence-classification workload" in refusal(good, workload="bert-mini")
    assert "use devices=1" in refusal(good, {"devices": "2"})
    with pytest.raises(UserError, match="data applies to mode=train-to-accuracy only"):
        plan.resolve("resnet-tiny", "torch", {"data": str(good)})
    with pytest.raises(UserError, match="max_steps applies to mode=train-to-accuracy only"):
        plan.resolve("resnet-tiny", "torch", {"max_steps": "5"})


def test_the_cli_refuses_bad_data_with_exit_2_and_creates_nothing(tmp_path, runs_dir):
    done = repro(
        "run", "resnet-tiny", "-p", "mode=train-to-accuracy", "-p", f"data={tmp_path / 'none'}",
        "--runs-dir", str(runs_dir),
    )  # fmt: skip
    assert done.returncode == 2 and done.stderr.startswith("repro: data=")
    assert done.stderr.count("\n") == 1 and run_folders(runs_dir) == []


def test_the_template_declares_every_parameter_a_run_injects(digits, tmp_path):
    import papermill

    p = plan.resolve("resnet-tiny", "jax", {**TTA, "data": str(digits)})
    path = tmp_path / "template.ipynb"
    path.write_text(p.template.text)
    assert p.template.name == "train-to-accuracy.ipynb" and p.params["repeats"] == 3
    assert set(papermill.inspect_notebook(str(path))) == set(p.notebook_parameters({}))


def test_min_time_and_warmup_time_are_null_here_and_an_older_reports_rerun_resolves(digits):
    params = {**TTA, "data": str(digits)}
    assert plan.resolve("resnet-tiny", "jax", params).params["min_time"] is None
    older = plan.resolve("resnet-tiny", "jax", {**plan.FORMERLY, **params}).params  # as rerun
    assert older["min_time"] is None and older["warmup_time"] is None
    only = r"min_time applies to mode=inference\|training\|generate only"
    with pytest.raises(UserError, match=only):
        plan.resolve("resnet-tiny", "jax", {**params, "min_time": "2"})


class Stand:
    """A framework and model stand-in: the held-out images are their own labels, and the model
    predicts each right once it has trained `learn` steps per percent of them."""

    def __init__(self, learn: float = 0.1) -> None:
        self.steps, self.learn = 0, learn

    to_native = staticmethod(np.asarray)
    sync = staticmethod(lambda out: None)
    to_float = staticmethod(float)

    def train(self, x, y) -> float:
        self.steps += 1
        return 1.0 / self.steps

    def predict(self, x) -> np.ndarray:
        known = min(1.0, self.steps * self.learn / 100)
        labels = x[:, 0, 0, 0].astype(int)
        return np.where(np.arange(len(x)) < known * len(x), labels, -1)


def stand_data(n: int = 100) -> realdata.Dataset:
    labels = np.arange(n) % 4
    x = np.broadcast_to(labels[:, None, None, None], (n, 1, 1, 3)).astype(np.float32)
    return realdata.Dataset(x, labels, x, labels, "0" * 64, ("a", "b", "c", "d"), {}, {})


def loop(stand: Stand, clock=None, **settings) -> dict:
    options = dict(batch_size=100, target=0.9, eval_every=5, max_steps=1000, max_seconds=60)
    options |= {"seed": 0, **settings}
    kwargs = {"clock": clock} if clock else {}
    log = open(os.devnull, "w")  # noqa: SIM115 (closed with the test's process)
    return accuracy.train_to_target(
        stand.train, stand.predict, stand, stand_data(), **options, log=log, **kwargs
    )


def test_training_stops_at_the_evaluation_that_reaches_the_target_or_at_a_cap():
    reached = loop(Stand(learn=10))  # 10% more right per step: 90% at step 9, seen at step 10
    assert reached["reached"] and reached["stopped_by"] == "target"
    assert reached["steps"] == 10 and [c["step"] for c in reached["curve"]] == [5, 10]
    assert reached["time_to_target_s"] == reached["curve"][-1]["seconds"] > 0
    assert reached["samples"] == 1000 and reached["epochs"] == 10 and len(reached["step_s"]) == 10

    capped = loop(Stand(learn=1), max_steps=12)  # 12% right at the cap: evaluated there too
    assert not capped["reached"] and capped["stopped_by"] == "max_steps"
    assert capped["time_to_target_s"] is None and capped["final_accuracy"] == 0.12
    assert [c["step"] for c in capped["curve"]] == [5, 10, 12]

    ticks = iter(range(10**6))  # a clock that moves one second per reading
    timed = loop(Stand(learn=1), clock=lambda: float(next(ticks)), max_seconds=30)
    assert timed["stopped_by"] == "max_seconds" and not timed["reached"]
    assert timed["wall_s"] >= 30 and timed["steps"] < 30

    per_epoch = loop(Stand(learn=10), batch_size=25, eval_every=0)  # 0: once per epoch
    assert per_epoch["eval_every"] == 4 and per_epoch["steps"] == 12

    spread = accuracy.spread([reached, capped, {**reached, "time_to_target_s": 3.0}])
    assert spread["n"] == 3 and spread["reached"] == 2 and spread["max_s"] == 3.0


def test_the_held_out_split_is_fixed_and_the_order_follows_the_seed():
    labels = np.repeat(np.arange(3), [10, 6, 2])
    held = images.split(labels)
    assert [int(held[labels == c].sum()) for c in range(3)] == [2, 1, 1]
    assert (images.split(labels) == held).all()  # the same whatever the run's seed
    data = stand_data(12)
    first = [y.tolist() for _, y in islice(data.batches(4, seed=1), 3)]
    again = [y.tolist() for _, y in islice(data.batches(4, seed=1), 3)]
    other = [y.tolist() for _, y in islice(data.batches(4, seed=2), 3)]
    assert first == again != other
    assert sorted(sum(first, [])) == sorted(data.train_y.tolist())  # one epoch: each once


NO_METER = {"codecarbon": {"status": "unavailable", "reason": "not run"}, "gpu": {}}


def section(outcomes: list[dict], price_per_hour: float = 0.0) -> dict:
    """The loop's outcomes as metrics.json keeps them (repro.kernel.accuracy.results): the first
    process's figures, its cost and energy, and the spread over all."""
    first = {k: v for k, v in outcomes[0].items() if k not in ("step_s", "losses")}
    spent = accuracy.cost_and_energy(first, NO_METER, price_per_hour)
    data = {**first, **spent, "processes": accuracy.spread(outcomes), "data": {"sha256": "0" * 64}}
    return json.loads(json.dumps(data))


def recorded(outcomes: list[dict]) -> records.TimeToAccuracy:
    """`section`, read back through its record."""
    return records.TimeToAccuracy.from_json(section(outcomes), "time_to_accuracy")


def test_the_headline_says_the_time_to_target_or_that_the_cap_came_first():
    capped = loop(Stand(learn=1), max_steps=50)  # 50% right at the cap
    assert "**NOT reached** within the caps (3 process(es)); best 50.00%" in (
        headline.time_to_accuracy(recorded([capped] * 3))
    )
    reached = loop(Stand(learn=10))
    times = [8.5, 7.1, 10.4]
    record = recorded([{**reached, "time_to_target_s": t, "steps": 50} for t in times])
    assert headline.time_to_accuracy(record) == (
        "time to 90.0% held-out accuracy **8.50 s** (median of 3 of 3 processes that reached "
        "it; range 7.10–10.40 s), 50 steps"
    )


def per_process(framework: str, digits: Path) -> dict:
    """One process's time to accuracy in `framework`'s kernel, as a repeat measures it."""
    request = {
        "framework": framework, "device": "cpu", "threads": 2, "seed": 0, "precision": "fp32",
        "deterministic": False, "model": plan.workloads()["resnet-tiny"]["model"],
        "attention": "fused", "mode": "train-to-accuracy", "compile": "auto", "lr": 1e-3,
        "batch_size": 32, "warmup": 50, "steps": 0, "data": str(digits),
        "target_accuracy": 0.9, "eval_every": 10, "max_steps": 300, "max_seconds": 300.0,
        "omp_wait_policy": "passive",
    }  # fmt: skip
    request["compile"] = {"torch": "eager", "tensorflow": "function", "jax": "jit"}[framework]
    python = kernels.ensure(f"{framework}-cpu").python
    done = subprocess.run(
        [python, "-m", "repro.kernel.repeat", json.dumps(request)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=KERNEL_ENV,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])["time_to_accuracy"]


@pytest.mark.kernel
@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_each_framework_reaches_90_percent_on_the_digits(framework, digits):
    outcome = per_process(framework, digits)
    assert outcome["reached"] and outcome["final_accuracy"] >= 0.9 and outcome["steps"] < 300


@pytest.mark.kernel
def test_an_image_that_does_not_decode_is_one_line_naming_it(tmp_path):
    bad = tree(tmp_path / "bad", {"a": 2, "b": 2})  # PNG headers, nothing decodable behind them
    script = f"from repro.kernel import images\nimages.load({str(bad)!r}, 8)"
    python = kernels.ensure("torch-cpu").python
    done = subprocess.run(
        [python, "-c", script], capture_output=True, text=True, cwd=ROOT, env=KERNEL_ENV
    )
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 1
    assert last.startswith("repro.kernel.images.DataError: data: a/0.png cannot be decoded")


@pytest.mark.kernel
def test_a_rerun_of_a_time_to_accuracy_run_is_decided_by_its_time_to_target(digits, runs_dir):
    """A short run (50% on the digits, two processes) and its rerun: the time to target of each
    process decides, and the report says so."""
    params = (
        f"mode=train-to-accuracy data={digits} batch_size=32 target_accuracy=0.5 eval_every=10 "
        "max_steps=200 max_seconds=120 repeats=2 threads=1"
    )
    done = repro(
        "run", "resnet-tiny", "-f", "torch", "--runs-dir", str(runs_dir), "--params", params
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [original] = run_folders(runs_dir)
    again = repro("rerun", str(original), "--runs-dir", str(runs_dir), "--tolerance", "50%")
    assert again.returncode == 0, again.stderr[-3000:]
    [folder] = [f for f in run_folders(runs_dir) if f != original]
    before, metrics = (json.loads((f / "metrics.json").read_text()) for f in (original, folder))
    verdict = metrics["rerun"]
    assert verdict["shift"]["quantity"] == "the time to target of each process that reached it"
    assert verdict["shift"]["processes"] == [2, 2] and verdict["class"] != "changed"
    rows = {r["metric"]: r for r in verdict["metrics"]}
    times = [m["summary"]["time_to_accuracy"]["processes"] for m in (before, metrics)]
    tta = rows["time to target, median over processes (s)"]
    assert (tta["original"], tta["rerun"]) == (times[0]["median_s"], times[1]["median_s"])
    assert verdict["shift"]["ratio"] == pytest.approx(
        np.exp(np.mean(np.log(times[1]["times_s"])) - np.mean(np.log(times[0]["times_s"])))
    )
    assert rows["steps to target, median over processes"]["ratio"] == 1.0  # seeded: the same
    report = (folder / "report.ipynb").read_text()
    assert "What decides is each process's time to the target accuracy" in report
    assert "How: the time to target of each process that reached it (2 original, 2 rerun)" in report
