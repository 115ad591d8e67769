"""The protocol inside the real kernels: clocks read after a device sync, deterministic training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import in_kernel

pytestmark = pytest.mark.kernel
ROOT = Path(__file__).resolve().parents[1]
CHECK = Path(__file__).with_name("protocol_check.py")
TINY = {"depths": [1, 1, 1, 1], "width": 16, "num_classes": 10, "image_size": 64}


def test_jax_without_a_sync_under_reports_and_the_protocol_does_not():
    t = in_kernel("jax", CHECK, "sync")
    print(t)
    assert t["unsynced_s"] < 0.5 * t["synced_s"], t  # the clock saw only the dispatch
    # the protocol's clock sees the work too; a loaded machine may slow either loop, so the
    # bound is on under-reporting (what a missing sync does), with room for noise above
    assert 0.65 * t["synced_s"] < t["protocol_s"] < 3 * t["synced_s"], t


@pytest.mark.parametrize("framework", ["torch", "tensorflow", "jax"])
def test_two_deterministic_training_runs_give_identical_falling_losses(framework):
    first = in_kernel(framework, CHECK, "train", framework, json.dumps(TINY))
    second = in_kernel(framework, CHECK, "train", framework, json.dumps(TINY))
    print(framework, first)
    assert first == second  # bit for bit, in two separate processes
    assert len(first) == 6 and first[-1] < first[0]
