"""Bench over every runner that runs here: the same report contract, whatever the backend.

ONNX Runtime runs for real; TensorRT runs where ``edgekit.deploy.tensorrt`` and a TensorRT (real or
the fakes) are present; the torch backend runs checkpoints, not bundles, and must say so in one line.
"""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.bench import BenchReport, run_bench
from edgekit.bench.measure import measure_frame
from edgekit.core.errors import ConfigError
from edgekit.deploy.bundle import Bundle


def _check_contract(r: BenchReport, n: int) -> None:
    lat = r.latency
    for stats in (lat.compute, lat.host, lat.end_to_end, *lat.stages.values(), r.throughput.pipelined_latency):
        assert stats.n == n
        assert stats.min_ms <= stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms
    # Nested figures, per frame: compute inside host inside end to end.
    t = r.timeline
    assert len(t.end_to_end_ms) == len(t.host_ms) == len(t.compute_ms) == len(t.start_s) == n
    for c, h, e in zip(t.compute_ms, t.host_ms, t.end_to_end_ms):
        assert 0 < c <= h <= e
    assert list(t.start_s) == sorted(t.start_s)
    assert r.throughput.sequential.frames == r.throughput.pipelined.frames == n
    assert r.throughput.sequential_fps > 0 and r.throughput.pipelined_fps > 0
    w = r.throughput.sequential
    assert w.end_unix >= w.start_unix and w.seconds > 0
    assert r.warmup.iterations >= 3 and "median" in r.warmup.rule
    assert r.environment["versions"]["python"]
    assert len(r.bundle.onnx_sha256) == 64
    assert BenchReport.model_validate_json(r.model_dump_json()) == r


def test_onnxruntime_bundle(small_bundle):
    r = run_bench(small_bundle, {"iterations": 15, "warmup": 3}, progress=False)
    _check_contract(r, 15)
    assert (r.settings.backend, r.settings.precision, r.bundle.model_role) == ("onnxruntime", "fp32", "fp32")
    assert r.settings.source.kind == "synthetic"
    assert r.parity.status in ("passed", "skipped")


def test_parity_runs_when_core_parity_exists(small_bundle):
    pytest.importorskip("edgekit.core.parity")
    r = run_bench(small_bundle, {"iterations": 3, "warmup": 0}, progress=False)
    assert r.parity.status == "passed", r.parity
    assert r.parity.n_images == 1


def test_duration_bounds_the_timed_phase(small_bundle):
    r = run_bench(small_bundle, {"duration_s": 0.3, "warmup": 0}, progress=False)
    assert r.throughput.sequential.seconds == pytest.approx(0.3, abs=0.25)
    assert r.throughput.pipelined.frames == r.throughput.sequential.frames >= 1


def test_video_and_image_sources_are_read_every_frame(small_bundle, tmp_path):
    cv2 = pytest.importorskip("cv2")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((48, 80, 3), 40 * i, np.uint8))
    r = run_bench(small_bundle, {"images": str(folder), "iterations": 7, "warmup": 0}, progress=False)
    assert r.settings.source.kind == "images" and r.latency.end_to_end.n == 7  # 3 images, reopened
    assert r.latency.stages["read"].p50_ms > 0


def test_bench_adds_no_work_to_the_detector(small_bundle):
    """measure_frame calls exactly the detector's three stages once each, on the frame it read."""
    calls = []
    with Bundle.open(small_bundle).detector() as det:
        for stage in ("prepare", "infer", "decode"):
            real = getattr(det, stage)
            setattr(det, stage, lambda *a, _r=real, _s=stage: calls.append(_s) or _r(*a))
        frame = np.zeros((64, 64, 3), np.uint8)
        timing, dets = measure_frame(det, iter([frame]))
    assert calls == ["prepare", "infer", "decode"]
    assert len(dets) == 2  # the constant model's two boxes above 0.25
    assert timing.e2e_s >= timing.read_s + timing.preprocess_s + timing.host_s + timing.decode_s - 1e-6


def test_torch_backend_refuses_a_bundle_in_one_line(small_bundle):
    with pytest.raises(ConfigError) as e:
        run_bench(small_bundle, {"backend": "torch", "iterations": 1}, progress=False)
    assert "checkpoints, not bundles" in str(e.value)


def test_tensorrt_on_cpu_is_refused(small_bundle):
    with pytest.raises(ConfigError, match="--device cuda"):
        run_bench(small_bundle, {"backend": "tensorrt", "device": "cpu", "iterations": 1}, progress=False)


@pytest.mark.parametrize("version", ["8.5.2.2", "10.3.0.26"])
def test_tensorrt_backend_on_the_fake(small_bundle, version):
    """The TensorRT path (engine build from the bundle, runner, parity) on fake TensorRT under Polygraphy."""
    pytest.importorskip("polygraphy")
    from tests.fakes.fake_tensorrt import FakeTensorRT

    with FakeTensorRT(version):
        r = run_bench(small_bundle, {"backend": "tensorrt", "device": "cuda", "iterations": 6, "warmup": 3},
                      progress=False)
    _check_contract(r, 6)
    assert r.settings.backend == "tensorrt" and r.environment.get("engine_key")
    assert r.parity.status == "passed", r.parity


def test_in_memory_frames_are_cycled(small_bundle, tmp_path):
    frames = [np.full((40, 70, 3), v, np.uint8) for v in (10, 120, 240)]
    r = run_bench(small_bundle, {"iterations": 5, "warmup": 0}, frames=frames, progress=False)
    assert r.settings.source.kind == "frames" and r.latency.end_to_end.n == 5
    with pytest.raises(ConfigError, match="not both"):
        run_bench(small_bundle, {"images": str(tmp_path)}, frames=frames, progress=False)
