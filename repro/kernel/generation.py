"""Greedy generation with a KV cache, timed token by token (in-kernel side; no framework here).

`mode=generate` measures what a user of a language model waits for. One *request* prefills a
prompt of `prompt_length` tokens, whose last position gives the first output token (the time to
first token, TTFT), then decodes `new_tokens - 1` more tokens one at a time, each fed back with
its keys and values written into a fixed-size cache (the time per output token, TPOT, is the gap
between consecutive tokens). Each framework adapter supplies the two compiled functions
(`Adapter.generation`); this module runs them and syncs the device after every token, so each
clock read follows finished work, as `repro.kernel.measure` does for a step. A request is one
step of the usual protocol, so its end-to-end latency is the step time: the first request
compiles, warm-up requests run until the latency settles, every measured request is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

ARCHS = ("gpt",)  # the causal-LM families whose models take a KV cache (`new_cache`)
PERCENTILES = (50, 90, 99)


def request(
    prefill: Callable,
    decode: Callable,
    sync: Callable,
    new_tokens: int,
    cache,
    clock: Callable[[], float] = time.perf_counter,
    logits: list | None = None,
) -> tuple[list, object, float, list[float]]:
    """One greedy generation: the tokens (each (N,), on the device), the cache for the next
    request, the TTFT and the gaps between consecutive output tokens (s). `logits`, if given,
    gains each output token's logits (N, vocab_size), left on the device."""
    start = clock()
    cache, token, last = prefill(cache)  # the prompt; its last position gives the first token
    sync(token)
    now = clock()
    ttft, tokens, gaps = now - start, [token], []
    keep = (lambda x: None) if logits is None else logits.append
    keep(last)
    for i in range(new_tokens - 1):
        cache, token, last = decode(cache, token, i)  # the next token from this one
        sync(token)
        then, now = now, clock()
        gaps.append(now - then)
        tokens.append(token)
        keep(last)
    return tokens, cache, ttft, gaps


def step(fw, net, prompt, new_tokens: int, compile: str) -> Callable[[], object]:
    """A zero-argument callable running one request on `prompt`, (N, prompt_length) token ids.
    Its `generation` record ({"prompt_length", "requests"}) gains {"ttft_s", "tpot_s"} per call:
    every call, the first, warm-up and measured ones, in order."""
    prefill, decode, cache = fw.generation(net, prompt, new_tokens, compile)
    state = {"cache": cache}

    def run():
        tokens, state["cache"], ttft, gaps = request(
            prefill, decode, fw.sync, new_tokens, state["cache"]
        )
        run.generation["requests"].append({"ttft_s": ttft, "tpot_s": gaps})
        return tokens[-1]

    run.generation = {"prompt_length": int(prompt.shape[1]), "requests": []}
    return run


def greedy(fw, net, prompt, new_tokens: int, compile: str) -> tuple[np.ndarray, np.ndarray]:
    """The greedy tokens of one request, (N, new_tokens), and the logits each came from,
    (N, new_tokens, vocab_size), as numpy (the equivalence check)."""
    prefill, decode, cache = fw.generation(net, prompt, new_tokens, compile)
    logits: list = []
    tokens = request(prefill, decode, fw.sync, new_tokens, cache, logits=logits)[0]
    return (
        np.stack([np.asarray(t) for t in tokens], axis=1).astype(np.int64),
        np.stack([np.asarray(x, dtype=np.float32) for x in logits], axis=1),
    )


def _percentiles(ms: np.ndarray) -> dict:
    return {
        "n": len(ms),
        "mean": float(ms.mean()),
        **{f"p{q}": float(np.percentile(ms, q)) for q in PERCENTILES},
    }


def summarize(
    requests: list[dict], step_s, batch_size: int, prompt_length: int, tokens_per_s: float
) -> dict:
    """TTFT over the measured requests, TPOT over every decoded token of them, end-to-end
    latency over them (the step times); `requests` are the measured ones. Output tokens/s is
    the run's headline in tokens (repro.stats.headline x new tokens), given: one figure."""
    new_tokens = 1 + len(requests[0]["tpot_s"])
    e2e = np.asarray(step_s, dtype=float) * 1e3
    return {
        "prompt_length": prompt_length,
        "new_tokens": new_tokens,
        "batch_size": batch_size,
        "requests": len(requests),
        "ttft_ms": _percentiles(np.asarray([r["ttft_s"] for r in requests]) * 1e3),
        "tpot_ms": _percentiles(np.asarray([t for r in requests for t in r["tpot_s"]]) * 1e3),
        "e2e_ms": _percentiles(e2e),
        "tokens_per_s": tokens_per_s,
        "decode_tokens_per_s": batch_size
        * sum(len(r["tpot_s"]) for r in requests)
        / sum(sum(r["tpot_s"]) for r in requests),
    }


def rows(g: dict) -> dict:
    """The generation figures as report table rows."""

    def pcts(d: dict) -> str:
        return " / ".join(f"{d[f'p{q}']:.2f}" for q in PERCENTILES)

    return {
        "request": f"{g['batch_size']} × ({g['prompt_length']}-token prompt → "
        f"{g['new_tokens']} new tokens), greedy, KV cache; {g['requests']} measured",
        "time to first token, p50 / p90 / p99 (ms)": pcts(g["ttft_ms"]),
        "time per output token, p50 / p90 / p99 (ms)": f"{pcts(g['tpot_ms'])} "
        f"(over {g['tpot_ms']['n']} decode steps)",
        "end-to-end per request, p50 / p90 / p99 (ms)": pcts(g["e2e_ms"]),
        "output tokens/s (whole requests; decode only)": f"{g['tokens_per_s']:.1f}; "
        f"{g['decode_tokens_per_s']:.1f}",
    }
