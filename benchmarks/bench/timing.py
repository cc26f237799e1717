"""Latency measurement: warm-up, synchronised timers, interleaved rounds, percentiles.

Backends are timed in interleaved rounds: after every backend's warm-up, each round gives
every backend a chunk of consecutive timed calls. On a shared, noisy machine a slow spell
then hits all backends alike, so their ratios stay meaningful even when absolute times drift.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np

from dlcv.runtime.errors import first_line

PERCENTILES = (50, 90, 99)


def summarize(seconds: Sequence[float], batch_size: int) -> dict:
    """Latency percentiles (numpy's linear interpolation), mean, per image, and throughput.

    Keys carry their units: ``latency_p50_ms`` ... per batch, ``latency_p50_ms_per_image`` ...
    (the batch latency divided by ``batch_size``), ``throughput_img_s`` = batch size / mean.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    samples = np.asarray(seconds, dtype=np.float64) * 1000.0
    if samples.size == 0:
        raise ValueError("no latency samples to summarize")
    central = {f"latency_p{p}_ms": float(np.percentile(samples, p)) for p in PERCENTILES}
    central["latency_mean_ms"] = float(samples.mean())
    out = dict(central)
    out.update({f"{key}_per_image": value / batch_size for key, value in central.items()})
    out["latency_std_ms"] = float(samples.std(ddof=1)) if samples.size > 1 else 0.0
    out["latency_min_ms"] = float(samples.min())
    out["latency_max_ms"] = float(samples.max())
    mean_s = central["latency_mean_ms"] / 1000.0
    out["throughput_img_s"] = batch_size / mean_s if mean_s > 0 else math.inf
    out["timed_calls"] = int(samples.size)
    return out


def timed_call(fn: Callable[[], object], sync: Callable[[], None] | None = None) -> float:
    """Seconds one call of ``fn`` takes; ``sync`` (e.g. ``torch.cuda.synchronize``) runs before
    the clock starts and before it stops, so queued device work is neither missed nor billed."""
    if sync is not None:
        sync()
    start = time.perf_counter()
    fn()
    if sync is not None:
        sync()
    return time.perf_counter() - start


@dataclass
class TimingOutcome:
    """The timed samples (seconds) of one runner, or why it stopped."""

    samples: list[float] = field(default_factory=list)
    error: str | None = None
    extras: dict = field(default_factory=dict)  # filled by the chunk hooks (e.g. peak memory)


def chunk_sizes(iters: int, rounds: int) -> list[int]:
    """``iters`` timed calls split into ``rounds`` near-equal chunks (larger chunks first)."""
    rounds = max(1, min(rounds, iters))
    base, extra = divmod(iters, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def time_interleaved(
    runners: Mapping[Hashable, Callable[[], object]],
    *,
    warmup: int,
    iters: int,
    rounds: int,
    sync: Callable[[], None] | None = None,
    before_chunk: Callable[[Hashable], None] | None = None,
    after_chunk: Callable[[Hashable, TimingOutcome], None] | None = None,
) -> dict[Hashable, TimingOutcome]:
    """Warm every runner up, then time them in interleaved rounds; see the module docstring.

    A runner that raises is recorded with the exception's first line and left out of the
    following rounds; the others go on.
    """
    outcomes = {key: TimingOutcome() for key in runners}

    def fail(key, exc: Exception) -> None:
        outcomes[key].error = f"{type(exc).__name__}: {first_line(exc)}"

    for key, fn in runners.items():
        try:
            for _ in range(warmup):
                fn()
        except Exception as exc:  # a benchmark reports a failing backend and goes on
            fail(key, exc)
    for chunk in chunk_sizes(iters, rounds):
        for key, fn in runners.items():
            outcome = outcomes[key]
            if outcome.error is not None:
                continue
            if before_chunk is not None:
                before_chunk(key)
            try:
                for _ in range(chunk):
                    outcome.samples.append(timed_call(fn, sync))
            except Exception as exc:
                fail(key, exc)
            if after_chunk is not None:
                after_chunk(key, outcome)
    return outcomes
