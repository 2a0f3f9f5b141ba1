"""The demo's last stage is ``edgekit bench`` of its bundle (checked without running the whole demo)."""

from __future__ import annotations

import json

import numpy as np
import pytest


def test_demo_bench_stage_runs_run_bench_and_writes_results(small_bundle, tmp_path):
    cv2 = pytest.importorskip("cv2")
    from edgekit.demo import DemoSummary, _latency

    val = tmp_path / "data" / "images" / "val"
    val.mkdir(parents=True)
    cv2.imwrite(str(val / "a.jpg"), np.full((48, 64, 3), 90, np.uint8))
    summary = DemoSummary(out_dir=tmp_path / "demo")
    _latency(summary, small_bundle, tmp_path / "data", tmp_path / "demo", n=5)
    report = json.loads((tmp_path / "demo" / "bench" / "fp32" / "bench.json").read_text())
    assert report["settings"]["source"] == {"kind": "images", "path": str(val)}
    assert report["latency"]["end_to_end"]["n"] == 5
    assert [row[0] for row in summary.rows] == ["bench"]
    assert "pipelined" in summary.metrics["ORT CPU p50 ms, fp32"]
