"""``edgekit bench`` on a RefDet bundle, unchanged: its default target, both graphs' golden parity.

The bundle is the torch-free two-graph one of tests/deploy/refdet_bundles.py, so this runs on the
device's Python 3.8 too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from edgekit.bench import run_bench  # noqa: E402
from tests.deploy.refdet_bundles import write_refdet_bundle  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def refdet_bundle(tmp_path_factory) -> Path:
    return write_refdet_bundle(tmp_path_factory.mktemp("bench_refdet") / "bundle")


def test_bench_runs_a_refdet_bundle_with_its_default_target(refdet_bundle):
    r = run_bench(refdet_bundle, {"iterations": 8, "warmup": 2}, progress=False)
    assert r.bundle.task == "refdet" and r.bundle.model_role == "fp32"
    assert r.throughput.sequential.frames == r.throughput.pipelined.frames == 8
    assert r.latency.end_to_end.n == 8 and r.latency.compute.p50_ms > 0
    assert r.parity.status == "passed", r.parity
    assert set(r.parity.report["graphs"]) == {"fp32", "reference_encoder"}  # both graphs checked


def test_bench_cli_on_a_refdet_bundle(refdet_bundle, tmp_path):
    out = tmp_path / "bench"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    res = subprocess.run([sys.executable, "-m", "edgekit", "bench", str(refdet_bundle), "--iterations", "5",
                          "--warmup", "1", "--no-plots", "--no-progress", "--out", str(out)],
                         capture_output=True, text=True, timeout=300, cwd=str(REPO), env=env)
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "bench.json").read_text())
    assert report["bundle"]["task"] == "refdet" and report["parity"]["status"] == "passed"


@pytest.mark.parametrize("version", ["8.5.2.2"])
def test_tensorrt_bench_builds_the_encoder_fp16_and_the_frame_graph_at_its_precision(refdet_bundle, tmp_path,
                                                                                      version):
    pytest.importorskip("polygraphy")
    import shutil

    from tests.fakes.fake_tensorrt import FakeTensorRT

    bundle = tmp_path / "b"
    shutil.copytree(refdet_bundle, bundle)
    with FakeTensorRT(version):
        r = run_bench(bundle, {"backend": "tensorrt", "device": "cuda", "precision": "fp32", "iterations": 3,
                               "warmup": 1}, progress=False)
    assert r.parity.status == "passed", r.parity
    assert r.parity.report["graphs"]["reference_encoder"]["precision"] == "fp16"
    assert r.parity.report["graphs"]["fp32"]["precision"] == "fp32"
    sidecars = [json.loads(p.read_text()) for p in (bundle / "engines").glob("*.json")]
    built = {(Path(s["onnx"]).name, s["precision"]) for s in sidecars}
    assert ("reference_encoder.onnx", "fp16") in built and ("model.onnx", "fp32") in built, sidecars
