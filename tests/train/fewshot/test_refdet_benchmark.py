"""benchmarks/refdet_gpu.py end to end on CPU (--smoke-cpu): synth, stage 2 + 3, 3-shot eval, complexity, JSON + MD."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "refdet_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("refdet_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_is_a_valid_config_for_both_stages(bench, tmp_path):
    from edgekit.train.fewshot.config import load_refdet_config

    args = bench.parse_args(["--device", "0"])
    for stage in (2, 3):
        cfg = load_refdet_config(None, bench.recipe(args, tmp_path, stage, 100.0, weights="w.pt"))
        assert cfg.stage == stage and cfg.max_time_s == 100.0 and cfg.model.ref_size == 112
    assert cfg.use_triplet and cfg.triplet_ratio == 0.3


@pytest.mark.slow
def test_smoke_cpu_writes_json_and_markdown(bench, tmp_path):
    assert bench.main(["--smoke-cpu", "--out", str(tmp_path), "--data-dir", str(tmp_path / "work")]) == 0
    result = json.loads((tmp_path / "refdet_gpu_cpu-smoke.json").read_text())
    assert {"stage2", "stage3", "final", "complexity"} <= set(result)
    assert 0.0 <= result["final"]["ap50"] <= 1.0 and result["stage2"]["test"]["videos"] == 2
    c = result["complexity"]
    assert c["gflops_yolov8n_640"] == pytest.approx(8.7, abs=0.3)  # Ultralytics' published yolov8n figure
    assert c["nx_est_fps_640"] > 0 and (tmp_path / "refdet_gpu_cpu-smoke.md").is_file()
