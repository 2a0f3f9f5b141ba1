"""One contract test over every runner backend that can run here (TensorRT only where it imports)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import numpy as np
import pytest

from edgekit.core.errors import ConfigError, DataError, DeviceError
from edgekit.deploy.runners import RUNNERS, Runner, create_runner, runner_class

from .conftest import INPUT_SHAPE

HAS_TRT = importlib.util.find_spec("tensorrt") is not None
HAS_TRT_FAKE_DEPS = all(importlib.util.find_spec(m) is not None for m in ("onnx", "onnxruntime", "polygraphy"))


@pytest.fixture
def fake_trt_plan(tiny_onnx, tmp_path):
    """A plan built by edgekit's builder on fake TensorRT 8.5 (Polygraphy's real backend on top), with
    the fake installed for the whole test."""
    from edgekit.deploy.tensorrt import EngineBuildOptions, build_engine
    from tests.fakes.fake_tensorrt import FakeTensorRT

    with FakeTensorRT("8.5.2.2"):
        yield build_engine(tiny_onnx, tmp_path, EngineBuildOptions(precision="fp32", timing_cache="")).plan_path


@pytest.fixture
def real_trt_plan(tiny_onnx, tmp_path):
    from edgekit.deploy.tensorrt import EngineBuildOptions, build_engine

    return build_engine(tiny_onnx, tmp_path, EngineBuildOptions(precision="fp32", timing_cache="")).plan_path


def _make(backend, tiny_onnx, request) -> Runner:
    if backend == "onnxruntime":
        pytest.importorskip("onnxruntime")
        return create_runner("onnxruntime", tiny_onnx)
    if backend == "torch":
        model = request.getfixturevalue("tiny_torch_model")
        return create_runner("torch", model, input_shape=INPUT_SHAPE, output_names=("pooled", "maps"))
    fixture = "fake_trt_plan" if backend == "tensorrt-fake" else "real_trt_plan"
    return create_runner("tensorrt", request.getfixturevalue(fixture))


BACKENDS = [
    "onnxruntime",
    "torch",
    pytest.param("tensorrt-fake", marks=pytest.mark.skipif(not HAS_TRT_FAKE_DEPS, reason="onnx/onnxruntime/polygraphy")),
    pytest.param("tensorrt", marks=[pytest.mark.trt, pytest.mark.skipif(not HAS_TRT, reason="tensorrt not importable")]),
]


@pytest.fixture
def feed():
    return {"images": np.random.default_rng(0).random(INPUT_SHAPE, dtype=np.float32)}


@pytest.mark.parametrize("backend", BACKENDS)
def test_contract_lifecycle_and_outputs(backend, tiny_onnx, request, feed):
    runner = _make(backend, tiny_onnx, request)
    assert isinstance(runner, Runner) and not runner.is_active
    assert runner.last_inference_time() is None
    with pytest.raises(DeviceError, match="before activate"):
        runner.infer(feed)
    with runner:
        meta = runner.input_metadata()
        assert list(meta) == ["images"] and meta["images"].dtype == np.float32
        assert tuple(meta["images"].shape)[1] == 3
        out = runner.infer(feed)
        assert sorted(out) == ["maps", "pooled"]
        assert out["pooled"].shape == (1, 4) and out["maps"].shape == (1, 4, 32, 32)
        assert runner.last_inference_time() > 0
        tickets = [runner.submit(feed), runner.submit({"images": feed["images"] * 0.5})]  # the async halves
        halves = [runner.collect(t) for t in tickets]
        np.testing.assert_allclose(halves[0]["pooled"], out["pooled"], rtol=1e-5, atol=1e-6)
        assert not np.allclose(halves[1]["pooled"], out["pooled"])
        runner.discard_pending()
    assert not runner.is_active
    with pytest.raises(DeviceError, match="not active"):
        runner.input_metadata()


@pytest.mark.parametrize("other", ["torch", BACKENDS[2]])
def test_backends_agree(other, tiny_onnx, request, feed):
    pytest.importorskip("onnxruntime")
    with _make("onnxruntime", tiny_onnx, request) as a, _make(other, tiny_onnx, request) as b:
        np.testing.assert_allclose(a.infer(feed)["maps"], b.infer(feed)["maps"], atol=1e-5, rtol=1e-5)
        np.testing.assert_allclose(a.infer(feed)["pooled"], b.infer(feed)["pooled"], atol=1e-5, rtol=1e-5)


BAD_FEEDS = [
    ({"image": np.zeros(INPUT_SHAPE, np.float32)}, "missing \\['images'\\]"),
    ({"images": np.zeros(INPUT_SHAPE, np.float32), "extra": np.zeros(1)}, "unexpected \\['extra'\\]"),
    ({"images": np.zeros(INPUT_SHAPE, np.float64)}, "dtype float64"),
    ({"images": np.zeros((1, 3, 32), np.float32)}, "shape \\(1, 3, 32\\)"),
    ({"images": np.zeros((1, 4, 32, 32), np.float32)}, "shape \\(1, 4, 32, 32\\)"),
    ({"images": [[0.0]]}, "not a numpy array"),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("bad_feed,message", BAD_FEEDS)
def test_contract_rejects_bad_feeds(backend, bad_feed, message, tiny_onnx, request):
    with _make(backend, tiny_onnx, request) as runner, pytest.raises(DataError, match=message):
        runner.infer(bad_feed)


@pytest.mark.parametrize("backend", BACKENDS)
def test_activate_twice_is_an_error(backend, tiny_onnx, request):
    runner = _make(backend, tiny_onnx, request)
    with runner, pytest.raises(DeviceError, match="already active"):
        runner.activate()


def test_registry_names_every_backend():
    assert set(RUNNERS) == {"onnxruntime", "tensorrt", "torch"}
    assert runner_class("onnxruntime").backend == "onnxruntime"
    with pytest.raises(ConfigError, match="unknown runner backend 'tflite'"):
        create_runner("tflite", "x")


def test_missing_onnx_file_is_model_error(tmp_path):
    from edgekit.core.errors import ModelError

    with pytest.raises(ModelError, match="does not exist"):
        create_runner("onnxruntime", tmp_path / "nope.onnx").activate()


def test_corrupt_onnx_file_is_model_error(tmp_path):
    from edgekit.core.errors import ModelError

    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a protobuf")
    with pytest.raises(ModelError, match="onnxruntime cannot load bad.onnx"):
        create_runner("onnxruntime", bad).activate()


def test_deploy_imports_without_heavy_frameworks():
    code = ("import sys\n"
            "import edgekit.deploy, edgekit.deploy.runners, edgekit.deploy.detector\n"
            "from edgekit.deploy.runners import base, onnxruntime, torch\n"
            "heavy = ('torch', 'onnxruntime', 'tensorrt', 'ultralytics', 'onnx', 'edgekit.export', 'edgekit.train')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"
