"""benchmarks/distill_overhead.py end to end on CPU (tiny teacher): one JSON + Markdown, a row per variant."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "distill_overhead.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("distill_overhead", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_variants_are_timed_side_by_side_into_one_json_and_markdown(bench, tmp_path):
    assert bench.main(["--device", "cpu", "--imgsz", "64", "--batch", "2", "--steps", "2", "--warmup", "1",
                       "--teacher-weights", "random", "--tiny-teacher", "--variants", "eager,stream+graph",
                       "--out", str(tmp_path)]) == 0
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["distill_overhead_64px_b2_cpu_teacher64.json", "distill_overhead_64px_b2_cpu_teacher64.md"]
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", f) for f in files)
    result = json.loads((tmp_path / files[0]).read_text())
    rows = {v["name"]: v for v in result["variants"]}
    assert list(rows) == ["eager", "stream-graph"]
    for v in rows.values():
        assert v["ratio"] == pytest.approx(v["ms_per_step"] / result["plain_ms_per_step"])
        assert not v["side_stream"] and not v["cuda_graph_active"]  # CPU: both fall back
    assert result["loss_check_max_abs_diff"] == 0.0  # CPU fallbacks are exactly the eager path
    md = (tmp_path / files[1]).read_text()
    assert "| distill: eager |" in md and "| distill: stream-graph |" in md and "plain Ultralytics OBB" in md


@pytest.mark.parametrize("argv, expected", [
    ([], ["stream-graph"]),
    (["--teacher-cuda-graph", "0"], ["stream"]),
    (["--variants", "eager,stream,graph,stream+graph"], ["eager", "stream", "graph", "stream-graph"]),
    (["--variants", "stream,stream", "--teacher-cuda-graph", "0"], ["stream"]),
])
def test_variant_selection(bench, argv, expected):
    assert bench.parse_args(argv).variants == expected


@pytest.mark.parametrize("argv", [["--variants", "turbo"], ["--variants", "graph", "--teacher-cuda-graph", "0"],
                                  ["--teacher-cuda-graph", "2"]])
def test_bad_variant_arguments_are_refused(bench, argv):
    with pytest.raises(SystemExit):
        bench.parse_args(argv)
