"""dlcv.bench.timing: percentiles against numpy on known samples, interleaving, failures that do not stop a run."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dlcv.bench.timing import chunk_sizes, summarize, time_interleaved, timed_call


def test_percentiles_of_known_samples():
    seconds = [ms / 1000.0 for ms in range(1, 101)]  # 1 ms ... 100 ms
    s = summarize(seconds, batch_size=4)
    # numpy's default (linear) interpolation on 1..100: rank p/100 * 99
    assert s["latency_p50_ms"] == pytest.approx(50.5)
    assert s["latency_p90_ms"] == pytest.approx(90.1)
    assert s["latency_p99_ms"] == pytest.approx(99.01)
    assert s["latency_mean_ms"] == pytest.approx(50.5)
    assert s["latency_min_ms"] == pytest.approx(1.0) and s["latency_max_ms"] == pytest.approx(100.0)
    assert s["latency_p50_ms_per_image"] == pytest.approx(50.5 / 4)
    assert s["latency_p99_ms_per_image"] == pytest.approx(99.01 / 4)
    assert s["throughput_img_s"] == pytest.approx(4 / 0.0505)
    assert s["timed_calls"] == 100


def test_percentiles_match_numpy_on_random_samples():
    rng = np.random.default_rng(7)
    seconds = rng.lognormal(-4, 0.5, size=37)
    s = summarize(seconds, batch_size=1)
    ms = seconds * 1000
    for p in (50, 90, 99):
        assert s[f"latency_p{p}_ms"] == pytest.approx(float(np.percentile(ms, p)), rel=1e-12)
    assert s["latency_std_ms"] == pytest.approx(float(np.std(ms, ddof=1)), rel=1e-12)
    assert s["throughput_img_s"] == pytest.approx(1000.0 / ms.mean(), rel=1e-12)


def test_single_sample_and_bad_input():
    s = summarize([0.02], batch_size=2)
    assert s["latency_p50_ms"] == s["latency_p99_ms"] == pytest.approx(20.0)
    assert s["latency_std_ms"] == 0.0
    with pytest.raises(ValueError):
        summarize([], batch_size=1)
    with pytest.raises(ValueError):
        summarize([0.1], batch_size=0)


def test_chunk_sizes_split_every_call():
    assert chunk_sizes(10, 3) == [4, 3, 3]
    assert chunk_sizes(2, 5) == [1, 1]
    assert sum(chunk_sizes(23, 4)) == 23


def test_timed_call_runs_sync_around_the_call():
    events = []
    elapsed = timed_call(lambda: events.append("call"), sync=lambda: events.append("sync"))
    assert events == ["sync", "call", "sync"] and elapsed >= 0


def test_interleaved_rounds_alternate_backends_and_a_failure_does_not_stop_the_others():
    calls = []
    state = {"b": 0}

    def failing():
        state["b"] += 1
        calls.append("b")
        if state["b"] > 2:  # after the warm-up and one timed call
            raise RuntimeError("device lost\nsecond line")

    runners = {"a": lambda: calls.append("a"), "b": failing, "c": lambda: calls.append("c")}
    chunks = []
    outcomes = time_interleaved(
        runners, warmup=1, iters=6, rounds=3,
        before_chunk=lambda key: chunks.append(key), after_chunk=lambda key, o: o.extras.setdefault("chunks", 0),
    )  # fmt: skip
    assert len(outcomes["a"].samples) == 6 and len(outcomes["c"].samples) == 6
    assert outcomes["a"].error is None and outcomes["c"].error is None
    assert outcomes["b"].error == "RuntimeError: device lost"
    assert len(outcomes["b"].samples) == 1
    # warm-ups first, then rounds of two calls each in turn; b drops out after failing
    assert calls[:3] == ["a", "b", "c"]
    assert chunks == ["a", "b", "c", "a", "c", "a", "c"]
    assert calls[3:] == ["a", "a", "b", "b", "c", "c", "a", "a", "c", "c", "a", "a", "c", "c"]
    assert all(math.isfinite(t) for t in outcomes["a"].samples)
