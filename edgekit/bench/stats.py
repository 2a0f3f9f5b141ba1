"""Latency statistics and the warm-up rule, in numpy only (runs on the device).

**Steady state.** A backend is not at its steady speed on its first calls (lazy allocations, cuDNN /
TensorRT tactic caches, CPU frequency ramps, page faults). Warm-up runs at least the requested
iterations and seconds and then continues until the median of the last ``window`` samples is
within ``tolerance`` (a fraction, default 5 %) of the median of the ``window`` samples before them:
two consecutive non-overlapping windows agree, so the level stopped drifting. Medians, not means,
so one scheduler hiccup does not reset the rule. When ``max_iterations`` more samples pass without that, warm-up
ends anyway and the report says ``steady: false`` (its numbers then include drift).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict


class LatencyStats(BaseModel):
    """Summary of one latency series, in milliseconds."""

    model_config = ConfigDict(extra="forbid")

    n: int
    mean_ms: Optional[float] = None
    std_ms: Optional[float] = None
    p50_ms: Optional[float] = None
    p90_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    min_ms: Optional[float] = None
    max_ms: Optional[float] = None


def summarize(seconds: Sequence[Optional[float]]) -> LatencyStats:
    """p50/p90/p99/mean/std/min/max of ``seconds`` (None entries, e.g. no backend time, are dropped)."""
    values = np.asarray([s for s in seconds if s is not None], np.float64) * 1000.0
    if values.size == 0:
        return LatencyStats(n=0)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return LatencyStats(n=int(values.size), mean_ms=float(values.mean()), std_ms=float(values.std()),
                        p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
                        min_ms=float(values.min()), max_ms=float(values.max()))


@dataclass(frozen=True)
class WarmupPolicy:
    """How long warm-up lasts: at least ``min_iterations`` and ``min_seconds``, then until steady."""

    min_iterations: int = 10
    min_seconds: float = 0.0
    window: int = 10
    tolerance: float = 0.05
    max_iterations: int = 300  # further samples, once the minimums are met, before giving up on steady

    def __post_init__(self) -> None:
        if self.window < 2:
            raise ValueError("window must be >= 2")
        if self.min_iterations < 0 or self.min_seconds < 0 or self.max_iterations < 1:
            raise ValueError("warm-up minimums must be >= 0 and max_iterations >= 1")


def is_steady(samples: Sequence[float], window: int, tolerance: float) -> bool:
    """True when the median of the last ``window`` samples is within ``tolerance`` of the window before."""
    if len(samples) < 2 * window:
        return False
    last = float(np.median(samples[-window:]))
    before = float(np.median(samples[-2 * window:-window]))
    return abs(last - before) <= tolerance * max(before, 1e-12)


class WarmupTracker:
    """Feed it one warm-up sample at a time; :attr:`done` says when warm-up may end.

    ``steady`` is True when the rule above held, False when ``max_iterations`` further samples after
    the minimums were met never reached it.
    """

    def __init__(self, policy: WarmupPolicy) -> None:
        self.policy = policy
        self.samples: List[float] = []
        self.elapsed_s = 0.0
        self.steady: Optional[bool] = None
        self._n_at_minimum: Optional[int] = None

    def add(self, seconds: float, elapsed_s: float) -> Optional[bool]:
        """Record one sample; return None while warm-up must go on, else the steady verdict."""
        self.samples.append(float(seconds))
        self.elapsed_s = elapsed_s
        p = self.policy
        n = len(self.samples)
        if n < p.min_iterations or elapsed_s < p.min_seconds:
            return None
        if self._n_at_minimum is None:
            self._n_at_minimum = n
        if is_steady(self.samples, p.window, p.tolerance):
            self.steady = True
        elif n - self._n_at_minimum >= p.max_iterations:
            self.steady = False
        return self.steady

    @property
    def done(self) -> bool:
        return self.steady is not None


__all__ = ["LatencyStats", "summarize", "WarmupPolicy", "is_steady", "WarmupTracker"]
