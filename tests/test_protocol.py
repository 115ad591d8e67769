"""The protocol inside the real kernels: clocks read after a device sync, deterministic training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import in_kernel

from repro.driver import plan

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("protocol_check.py")
TINY = plan.workloads()["resnet-tiny"]["model"]  # {arch, config}, from its workload spec


def test_jax_without_a_sync_under_reports_and_the_protocol_does_not():
    t = in_kernel("jax", CHECK, "sync")
    print(t)
    assert t["unsynced_s"] < 0.5 * t["synced_s"], t  # the clock saw only the dispatch
    # the protocol's clock sees the work too. A missing sync reads the dispatch alone, hundreds
    # of times less than the work; other processes on a loaded 2-core machine may slow either
    # loop several times over, so the bounds leave that room and still catch a missing sync
    assert 0.25 * t["synced_s"] < t["protocol_s"] < 10 * t["synced_s"], t


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_two_deterministic_training_runs_give_identical_falling_losses(framework):
    first = in_kernel(framework, CHECK, "train", framework, json.dumps(TINY))
    second = in_kernel(framework, CHECK, "train", framework, json.dumps(TINY))
    print(framework, first)
    assert first == second  # bit for bit, in two separate processes
    assert len(first) == 6 and first[-1] < first[0]
