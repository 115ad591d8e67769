"""Data-parallel training gives what one device gives, in every framework (CPU, real kernels).

Each framework's kernel runs tests/parallel_check.py on gpt-mini (LayerNorm, no BatchNorm: a
BatchNorm model normalises each device's part with its own statistics, so its loss on N devices
legitimately differs): two training steps on one global batch of 4, on one device with the
adapter's own step and on 2 devices with repro.kernel.parallel (torch: 2 DDP processes over gloo;
JAX: 2 forced host devices; TensorFlow: 2 logical CPUs under MirroredStrategy).

A run with devices=2 goes through the template, the report and metrics.json (torch: the
fastest kernel to start).

What must hold: both steps' losses within LOSS_RTOL, and every weight afterwards within
WEIGHT_FRACTION of the largest change the steps made to any weight. AdamW's update hardly depends
on the gradient's scale (up to eps), so the weights catch replicas out of step and a batch split
wrongly, not a gradient summed instead of averaged; that is caught elsewhere: torch reports the
loss apart from DDP's averaging, so its averaged gradients are compared too (GRAD_RTOL of the
largest); TensorFlow's reported loss is the sum of the replicas' scaled losses it differentiates,
so a wrong scale shows in the loss; JAX's is one program over the mesh, differentiated whole.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import SMALL, in_kernel, read_metrics, repro, run_folders

from repro.driver import plan
from repro.errors import UserError
from repro.kernel.frameworks import parallel_batches

CHECK = Path(__file__).with_name("parallel_check.py")
MODEL = json.dumps(plan.workloads()["gpt-mini"]["model"])
DEVICES = 2
LOSS_RTOL = 1e-5  # measured: 2e-7 (torch, jax, tensorflow)
WEIGHT_FRACTION = 0.02  # measured: torch 0.07%, tensorflow 0.05%, jax 0.6% of the largest update
GRAD_RTOL = 1e-5  # measured: 5e-7 of the largest gradient (torch)


def test_weak_scaling_puts_batch_size_on_each_device_and_strong_splits_it():
    assert parallel_batches(4, 2, "weak") == (4, 8)
    assert parallel_batches(4, 2, "strong") == (2, 4)
    assert parallel_batches(4, 1, None) == (4, 4)  # one device: recorded without a scaling
    with pytest.raises(ValueError, match="batch_size=6 evenly over devices=4"):
        parallel_batches(6, 4, "strong")


@pytest.mark.parametrize(
    ("given", "recorded"),
    [
        ({"devices": "2"}, "weak"),  # the default
        ({"devices": "2", "scaling": "strong"}, "strong"),
        ({"devices": "1", "scaling": "strong"}, None),  # one device: the twin of either
        ({"devices": "1"}, None),
    ],
)
def test_a_plan_records_its_scaling_only_with_several_devices(given, recorded):
    params = {"mode": "training", "batch_size": "4", **given}
    assert plan.resolve("gpt-mini", "torch", params).params["scaling"] == recorded


def test_strong_scaling_refuses_a_batch_size_the_devices_do_not_divide():
    params = {"mode": "training", "devices": "4", "scaling": "strong", "batch_size": "6"}
    with pytest.raises(UserError, match="give a batch_size divisible by 4"):
        plan.resolve("gpt-mini", "torch", params)


@pytest.mark.kernel
@pytest.mark.parametrize("framework", ["torch", "jax", "tensorflow"])
def test_two_devices_train_as_one(framework):
    result = in_kernel(framework, CHECK, framework, MODEL, str(DEVICES))
    print(framework, result)
    for one, many in zip(result["loss_1"], result[f"loss_{DEVICES}"], strict=True):
        assert many == pytest.approx(one, rel=LOSS_RTOL)
    assert result["update_max_abs"] > 1e-4  # the steps moved the weights
    assert result["weights_max_abs_diff"] <= WEIGHT_FRACTION * result["update_max_abs"]
    if framework == "torch":
        assert result["grads_max_abs_diff"] <= GRAD_RTOL * result["grads_max_abs"]


@pytest.mark.kernel
def test_a_run_on_two_cpu_devices_reports_per_device_throughput_and_says_it_tests_correctness(
    runs_dir,
):
    """Strong scaling (the global batch of 4 split over 2 devices: the same work as weak scaling
    with batch_size=2, whose batches `frameworks.parallel_batches` gives through the same cells)."""
    small = [a.replace("batch_size=2", "batch_size=4") for a in SMALL]
    done = repro(
        "run", "gpt-mini", "-f", "torch", *small, "-p", "mode=training", "-p", "devices=2",
        "-p", "scaling=strong", "--runs-dir", str(runs_dir),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    folder = run_folders(runs_dir)[0]
    metrics = read_metrics(folder)
    summary, samples = metrics["summary"], metrics["samples"]
    assert metrics["params"]["devices"] == 2 and samples["batch_size"] == 4  # 2 per device
    parallel = summary["data_parallel"]
    assert parallel["devices"] == 2 and parallel["cpu_devices_share_cores"]
    assert (parallel["scaling"], parallel["per_device_batch"], parallel["global_batch"]) == (
        "strong",
        2,
        4,
    )
    assert (
        "2 × 2 samples = a global batch of 4 (strong scaling"
        in (folder / "report.html").read_text()
    )
    per_device = summary["throughput"]["samples_per_s"] / 2
    assert parallel["samples_per_s_per_device"] == pytest.approx(per_device)
    assert any("tests data-parallel correctness, not scaling" in w for w in summary["warnings"])
    assert summary["loss"]["last"] < summary["loss"]["first"]  # the replicas learn the batch
