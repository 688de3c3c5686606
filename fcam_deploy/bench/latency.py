"""Latency measurement with the usual hygiene: warm-up, device synchronisation, raw samples kept.

The clock and the synchronisation function are parameters so the harness itself can be tested with a fake clock
(the order "sync -> read clock" around every call is what makes GPU timings honest).
"""

from __future__ import annotations

import math
import os
import resource
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from fcam_deploy.errors import ConfigError

__all__ = ["LatencyStats", "measure_latency", "peak_rss_mb", "percentile", "reset_peak_rss"]


def percentile(samples: list[float], q: float) -> float:
    """Linear-interpolation percentile (NumPy's default ``linear`` method) of ``samples`` at ``q`` in [0, 100]."""
    if not samples:
        raise ConfigError("percentile of an empty sample list")
    if not 0.0 <= q <= 100.0:
        raise ConfigError(f"percentile q={q} outside [0, 100]")
    xs = sorted(samples)
    pos = (len(xs) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = math.ceil(pos)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latency statistics in milliseconds, plus the raw samples.

    ``throughput`` is images per second at the median (``batch * 1000 / p50``).
    """

    samples_ms: list[float] = field(repr=False)
    batch: int
    p50: float
    p90: float
    p99: float
    mean: float
    throughput: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(
    fn: Callable[[], Any],
    *,
    batch: int,
    warmup: int = 3,
    iters: int = 20,
    min_time_s: float = 0.0,
    sync: Callable[[], None] | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> LatencyStats:
    """Time ``fn()`` ``iters`` times (at least, until ``min_time_s`` has elapsed) after ``warmup`` calls.

    Args:
        fn: the work to time; its result is discarded.
        batch: images per call (for throughput).
        warmup: untimed calls first (allocator, caches, lazy init, autotuning).
        iters: timed calls (minimum).
        min_time_s: keep timing until this much time is spent (bounded by ``10 * iters`` calls).
        sync: called before each clock read, e.g. ``torch.cuda.synchronize``; ``None`` for CPU work.
        clock: seconds as float.
    """
    if iters < 1 or warmup < 0 or batch < 1:
        raise ConfigError(f"bad latency settings: iters={iters}, warmup={warmup}, batch={batch}")
    for _ in range(warmup):
        fn()
    if sync is not None:
        sync()
    samples: list[float] = []
    spent = 0.0
    while len(samples) < iters or (spent < min_time_s and len(samples) < 10 * iters):
        if sync is not None:
            sync()
        t0 = clock()
        fn()
        if sync is not None:
            sync()
        dt = clock() - t0
        samples.append(dt * 1000.0)
        spent += dt
    p50 = percentile(samples, 50)
    return LatencyStats(
        samples_ms=samples,
        batch=batch,
        p50=p50,
        p90=percentile(samples, 90),
        p99=percentile(samples, 99),
        mean=sum(samples) / len(samples),
        throughput=batch * 1000.0 / p50 if p50 > 0 else float("inf"),
    )


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS counter of this process (Linux >= 4.0); returns whether it worked."""
    try:
        with open(f"/proc/{os.getpid()}/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """Peak resident set size of this process in MiB (VmHWM on Linux, else getrusage's lifetime maximum)."""
    try:
        with open(f"/proc/{os.getpid()}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
