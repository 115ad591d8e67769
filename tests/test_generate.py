"""mode=generate: greedy decoding with a KV cache, one request per step of the protocol.

The request loop and its figures are checked without a kernel, on a fake model and clock; a
small real run (gpt-mini) checks the report's figures against each other. That every framework
generates (the adapters' own prefill and decode) the same tokens as torch, with each attention,
and that the cache gives the full forward pass's logits, is tests/test_models.py's; refused
requests are tests/test_bad_input.py's rows.
"""

from __future__ import annotations

import json

import pytest
from conftest import FIXTURES, read_metrics, repro

from repro.driver import headline, plan
from repro.kernel import generation, models
from repro.records import Metrics, Summary


class Clock:
    """A clock that moves only when the fake model computes."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def fake_model(clock: Clock, prefill_s: float, decode_s: list[float]):
    """prefill/decode functions over a fake cache (a list of the positions written) that take the
    given seconds on `clock`; each token is the position it was computed at."""

    def prefill(cache):
        clock.now += prefill_s
        cache[:] = list(range(4))  # a 4-token prompt
        return cache, 4, None

    def decode(cache, token, i):
        assert token == 4 + i and cache[-1] == token - 1  # fed back, at the next position
        clock.now += decode_s[i]
        cache.append(token)
        return cache, token + 1, None

    return prefill, decode


def test_a_request_times_the_first_token_and_each_one_after_it():
    clock, synced = Clock(), []
    prefill, decode = fake_model(clock, 0.5, [0.1, 0.2, 0.3])
    tokens, cache, ttft, gaps = generation.request(prefill, decode, synced.append, 4, [], clock)
    assert tokens == [4, 5, 6, 7] and synced == tokens  # every token synced before its clock read
    assert cache == [0, 1, 2, 3, 4, 5, 6]
    assert ttft == 0.5 and gaps == pytest.approx([0.1, 0.2, 0.3])


def test_the_figures_are_over_requests_and_over_tokens():
    requests = [{"ttft_s": 0.5, "tpot_s": [0.1, 0.1, 0.4]}, {"ttft_s": 0.7, "tpot_s": [0.2] * 3}]
    step_s = [1.1, 1.3]  # each request's end-to-end time, as the protocol measured it
    g = generation.summarize(requests, step_s, batch_size=2, prompt_length=4, tokens_per_s=7.0)
    assert (g["new_tokens"], g["requests"], g["batch_size"]) == (4, 2, 2)
    assert g["ttft_ms"]["p50"] == pytest.approx(600) and g["ttft_ms"]["n"] == 2
    assert g["tpot_ms"]["n"] == 6 and g["tpot_ms"]["p50"] == pytest.approx(200)
    assert g["tpot_ms"]["p99"] == pytest.approx(390)  # over every token, not per request
    assert g["e2e_ms"]["p99"] == pytest.approx(1298)
    assert g["tokens_per_s"] == 7.0  # the run's headline in tokens, given (report.results)
    assert g["decode_tokens_per_s"] == pytest.approx(2 * 6 / 1.2)
    rows = generation.rows(g)
    assert rows["time to first token, p50 / p90 / p99 (ms)"] == "600.00 / 680.00 / 698.00"


def test_generation_flops_are_a_forward_over_the_same_tokens_with_one_more_cache_slot():
    model = plan.workloads()["gpt2-small"]["model"]
    cfg = models.config(model)
    prompt, new = 128, 128
    tokens = prompt + new - 1  # the prompt, then every output token but the last, fed back
    forward = models.config(plan.effective_model({"model": model}, tokens)).flops_per_sample()
    # the same projections; attention against prompt + new cache slots instead of `tokens`
    extra = 2 * cfg.layers * 2 * tokens * cfg.width
    assert cfg.generation_flops(prompt, new) == forward + extra


def test_generate_sets_the_prompt_as_the_input_and_other_modes_record_null():
    defaults = plan.resolve("gpt2-small", "torch", {"mode": "generate"}).params
    assert (defaults["prompt_length"], defaults["new_tokens"]) == (128, 128)
    p = plan.resolve(
        "gpt-mini", "jax", {"mode": "generate", "prompt_length": "8", "new_tokens": "16"}
    )
    assert (p.params["prompt_length"], p.params["new_tokens"]) == (8, 16)
    assert p.params["sequence_length"] == 8 and p.params["repeats"] == 4
    assert p.notebook_parameters({})["model"]["config"]["sequence_length"] == 8
    other = plan.resolve("gpt-mini", "jax", {})
    assert other.params["prompt_length"] is None and other.params["new_tokens"] is None


def test_old_reports_read_without_generation_figures_and_new_ones_show_them():
    fixture = json.loads((FIXTURES / "records" / "metrics.json").read_text())
    old = Summary.from_json(fixture["summary"], "old")
    assert dict(old.generation) == {}
    figures = generation.summarize(
        [{"ttft_s": 0.5, "tpot_s": [0.1]}], [0.6], batch_size=1, prompt_length=4, tokens_per_s=3.3
    )
    fixture["summary"]["generation"] = figures
    fixture["params"].update(mode="generate", prompt_length=4, new_tokens=2)
    new = Metrics.from_json(fixture, "new")
    assert new.step_summary.generation["ttft_ms"]["p50"] == pytest.approx(500)
    text = headline.markdown(new, None)
    assert "time to first token p50 **500.00 ms**" in text
    assert "(4-token prompt → 2 new tokens)" in text


GENERATE = ["-p", "mode=generate", "-p", "prompt_length=8", "-p", "new_tokens=8"]
SHORT = ["-p", "batch_size=2", "-p", "steps=3", "-p", "warmup=1", "-p", "repeats=1"]
SHORT += ["-p", "min_time=0"]  # exactly `steps` requests


@pytest.mark.kernel
def test_a_generation_run_reports_figures_that_agree(runs_dir):
    """One run, in JAX (asynchronous dispatch: without a sync after every token its clock would
    read dispatch times). The other frameworks run the same generation code in
    tests/test_models.py; a run costs ~35 s here, so one stands for the report's plumbing."""
    args = ["gpt-mini", "-f", "jax", *GENERATE, *SHORT]
    done = repro("run", *args, "--runs-dir", str(runs_dir))
    assert done.returncode == 0, done.stderr[-3000:]
    (folder,) = list(runs_dir.iterdir())
    metrics = read_metrics(folder)
    summary, g = metrics["summary"], metrics["summary"]["generation"]
    assert metrics["status"] == "ok" and metrics["params"]["mode"] == "generate"
    assert (g["prompt_length"], g["new_tokens"], g["batch_size"], g["requests"]) == (8, 8, 2, 3)
    assert g["tpot_ms"]["n"] == 3 * 7 and g["ttft_ms"]["n"] == 3
    # a request is one step: its end-to-end time is the step time, and it is made of the time
    # to the first token and the gaps after it (the loop's own overhead aside)
    assert g["e2e_ms"]["p50"] == pytest.approx(summary["latency_ms"]["p50"])
    parts = g["ttft_ms"]["mean"] + 7 * g["tpot_ms"]["mean"]
    assert parts <= g["e2e_ms"]["mean"] <= parts + 5
    # tokens/s counts output tokens, the same figure in the throughput
    assert summary["throughput"]["tokens_per_s"] == pytest.approx(g["tokens_per_s"])
    assert summary["compute"]["flops_source"] == "analytic FLOPs"
    report = (folder / "report.html").read_text()
    assert "time per output token, p50 / p90 / p99 (ms)" in report
