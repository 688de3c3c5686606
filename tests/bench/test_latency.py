"""Latency harness: tested with a fake clock, so the statistics and the sync order are checked exactly."""

from __future__ import annotations

import numpy as np
import pytest

from fcam_deploy.bench.latency import measure_latency, peak_rss_mb, percentile, reset_peak_rss
from fcam_deploy.errors import ConfigError


class FakeClock:
    def __init__(self, durations: list[float]) -> None:
        self.now = 0.0
        self.durations = list(durations)
        self.events: list[str] = []

    def clock(self) -> float:
        self.events.append("clock")
        return self.now

    def work(self) -> None:
        self.events.append("work")
        self.now += self.durations.pop(0) if self.durations else 0.0

    def sync(self) -> None:
        self.events.append("sync")


def test_percentile_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    for n in (1, 2, 7, 100):
        xs = rng.random(n).tolist()
        for q in (0, 10, 50, 90, 99, 100):
            assert percentile(xs, q) == pytest.approx(float(np.percentile(xs, q)), rel=1e-12, abs=1e-15)


def test_warmup_excluded_and_stats_exact() -> None:
    durations = [5.0, 5.0] + [0.001 * (i + 1) for i in range(10)]
    fc = FakeClock(durations)
    stats = measure_latency(fc.work, batch=4, warmup=2, iters=10, sync=fc.sync, clock=fc.clock)
    expected = [1.0 * (i + 1) for i in range(10)]
    assert stats.samples_ms == pytest.approx(expected)
    assert stats.p50 == pytest.approx(float(np.percentile(expected, 50)))
    assert stats.p99 == pytest.approx(float(np.percentile(expected, 99)))
    assert stats.throughput == pytest.approx(4 * 1000.0 / stats.p50)


def test_sync_brackets_every_timed_call() -> None:
    fc = FakeClock([0.0] * 4)
    measure_latency(fc.work, batch=1, warmup=1, iters=3, sync=fc.sync, clock=fc.clock)
    timed = fc.events[fc.events.index("clock") - 1 :]
    # each timed call: sync, clock, work, sync, clock
    assert timed == ["sync", "clock", "work", "sync", "clock"] * 3


def test_min_time_extends_sampling_but_is_bounded() -> None:
    fc = FakeClock([0.001] * 1000)
    stats = measure_latency(fc.work, batch=1, warmup=0, iters=5, min_time_s=10.0, clock=fc.clock)
    assert len(stats.samples_ms) == 50


def test_bad_settings_raise() -> None:
    with pytest.raises(ConfigError, match="iters"):
        measure_latency(lambda: None, batch=1, iters=0)
    with pytest.raises(ConfigError, match="empty"):
        percentile([], 50)


def test_peak_rss_sees_an_allocation() -> None:
    reset_peak_rss()
    before = peak_rss_mb()
    block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
    after = peak_rss_mb()
    del block
    assert after - before > 40
