"""Latency summaries and the steady-state warm-up rule, on synthetic timings."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench.stats import WarmupPolicy, WarmupTracker, is_steady, summarize


def test_summarize_percentiles_in_ms_and_drops_none():
    s = summarize([i / 1000.0 for i in range(1, 101)] + [None])
    assert s.n == 100
    assert s.p50_ms == pytest.approx(50.5)
    assert s.p90_ms == pytest.approx(90.1)
    assert s.p99_ms == pytest.approx(99.01)
    assert s.mean_ms == pytest.approx(50.5)
    assert s.std_ms == pytest.approx(np.std(np.arange(1, 101)))
    assert (s.min_ms, s.max_ms) == pytest.approx((1.0, 100.0))


def test_summarize_empty_has_n_zero_and_no_numbers():
    s = summarize([None, None])
    assert s.n == 0 and s.p50_ms is None


@pytest.mark.parametrize("samples, steady", [
    ([10.0] * 20, True),                     # flat
    ([20.0] * 10 + [10.0] * 10, False),      # still dropping: the windows disagree
    ([10.0] * 10 + [10.4] * 10, True),       # 4 % apart < 5 %
    ([10.0] * 10 + [10.6] * 10, False),      # 6 % apart
    ([10.0] * 19, False),                    # fewer than two windows
    ([10.0] * 9 + [90.0] + [10.0] * 9 + [95.0], True),  # medians ignore single spikes
])
def test_is_steady_compares_two_window_medians(samples, steady):
    assert is_steady(samples, window=10, tolerance=0.05) is steady


def _feed(tracker: WarmupTracker, samples, dt=0.01):
    for i, s in enumerate(samples):
        if tracker.add(s, (i + 1) * dt) is not None:
            return i + 1
    return None


def test_warmup_waits_for_the_cold_start_to_settle():
    # 30 slow first calls decaying to 10 ms, then flat: steady once two flat windows exist.
    cold = list(np.linspace(100, 10, 30)) + [10.0] * 100
    tracker = WarmupTracker(WarmupPolicy(min_iterations=5, window=10, tolerance=0.05))
    n = _feed(tracker, cold)
    assert tracker.steady is True
    assert 30 < n <= 50


def test_warmup_honours_minimum_iterations_and_seconds():
    flat = [10.0] * 500
    assert _feed(WarmupTracker(WarmupPolicy(min_iterations=50)), flat) == 50
    # 0.01 s a sample: 2 s minimum means 200 samples even though steady from the start.
    assert _feed(WarmupTracker(WarmupPolicy(min_iterations=0, min_seconds=2.0)), flat) == 200


def test_warmup_gives_up_unsteady_after_max_iterations():
    rng = np.random.default_rng(0)
    drifting = list(10.0 + np.arange(1000) * 0.5 + rng.normal(0, 0.1, 1000))  # keeps slowing down
    tracker = WarmupTracker(WarmupPolicy(min_iterations=10, max_iterations=40))
    assert _feed(tracker, drifting) == 50
    assert tracker.steady is False


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        WarmupPolicy(window=1)
    with pytest.raises(ValueError):
        WarmupPolicy(max_iterations=0)
