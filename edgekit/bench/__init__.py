"""Benchmarks of a deploy bundle on the machine it runs on: latency, throughput, parity, accuracy.

``run_bench(bundle, settings)`` measures with the same Detector and Pipeline the daemon uses
(:mod:`edgekit.bench.measure`) and returns a :class:`BenchReport` (``bench.json``'s schema);
:func:`write_outputs` writes it with a Markdown table and plots; :func:`compare_table` compares
runs. Device package: Python 3.8, numpy only; matplotlib and tqdm are optional.
"""

from __future__ import annotations

from .report import compare_table, to_markdown, write_outputs
from .run import BenchSettings, run_bench
from .schema import SCHEMA_VERSION, BenchReport, load_report
from .stats import LatencyStats, WarmupPolicy, WarmupTracker, is_steady, summarize

__all__ = ["run_bench", "BenchSettings", "BenchReport", "load_report", "SCHEMA_VERSION", "write_outputs",
           "to_markdown", "compare_table", "LatencyStats", "summarize", "WarmupPolicy", "WarmupTracker", "is_steady"]
