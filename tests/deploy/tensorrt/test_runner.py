"""TensorRTRunner failure paths and device facts, on the fake TensorRT + fake libcudart."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edgekit.core.errors import DataError, DeviceError, ModelError
from edgekit.deploy.tensorrt import (
    EngineBuildOptions,
    ShapeProfile,
    TensorRTRunner,
    build_engine,
    device_info,
)
from edgekit.deploy.tensorrt.keys import sidecar_path

X = np.zeros((1, 3, 16, 16), np.float32)


def _plan(tmp_path, onnx_path, **kw):
    kw.setdefault("timing_cache", "")
    kw.setdefault("precision", "fp32")
    return build_engine(onnx_path, tmp_path, EngineBuildOptions(**kw)).plan_path


def _edit_sidecar(plan, **fields):
    side = sidecar_path(plan)
    data = json.loads(side.read_text())
    data.update(fields)
    side.write_text(json.dumps(data))


def test_plan_for_another_trt_version_or_gpu_is_refused(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    plan = _plan(tmp_path, onnx_models["static"])
    _edit_sidecar(plan, trt_version="8.4.1.5")
    with pytest.raises(ModelError, match="built with TensorRT 8.4.1.5, this is 8.5.2.2.*edgekit engine build"):
        TensorRTRunner(plan).activate()
    _edit_sidecar(plan, trt_version="8.5.2.2", compute_capability="sm_87", device_name="Orin")
    with pytest.raises(ModelError, match="built for Orin \\(sm_87\\), this GPU is Fake Xavier NX \\(sm_72\\)"):
        TensorRTRunner(plan).activate()


def test_unreadable_or_missing_plans(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    with pytest.raises(ModelError, match="does not exist"):
        TensorRTRunner(tmp_path / "none.plan").activate()
    bad = tmp_path / "bad.plan"
    bad.write_bytes(b"not a plan")
    with pytest.raises(ModelError, match="cannot deserialize .*bad.plan.*magicTagRead"):
        TensorRTRunner(bad).activate()  # no sidecar: a warning, then TensorRT's own refusal


def test_execute_failure_and_missing_context_are_device_errors(tmp_path, fake_trt, onnx_models):
    fake_trt("10.3.0.26", faults={"execute_fails"})
    plan = _plan(tmp_path, onnx_models["static"])
    with TensorRTRunner(plan) as runner, pytest.raises(DeviceError, match="execute_async_v3 failed"):
        runner.infer({"images": X})
    fake_trt("10.3.0.26", faults={"context_none"})
    plan = _plan(tmp_path / "b", onnx_models["static"])
    with pytest.raises(DeviceError, match="could not create an execution context"):
        TensorRTRunner(plan).activate()


def test_shape_outside_profile_is_a_data_error(tmp_path, fake_trt, onnx_models):
    fake_trt("8.5.2.2")
    profile = {"images": ShapeProfile(min=(1, 3, 16, 16), opt=(1, 3, 16, 16), max=(2, 3, 32, 32))}
    plan = _plan(tmp_path, onnx_models["dynamic"], profiles=profile)
    with TensorRTRunner(plan) as runner:
        assert runner.input_metadata()["images"].shape == (None, 3, None, None)
        with pytest.raises(DataError, match="outside engine"):
            runner.infer({"images": np.zeros((3, 3, 16, 16), np.float32)})


def test_outputs_arrive_only_through_the_stream_synchronize(tmp_path, fake_trt, onnx_models):
    """The fake CUDA completes async copies and the engine's work only at cudaStreamSynchronize."""
    env = fake_trt("8.5.2.2")
    plan = _plan(tmp_path, onnx_models["static"])
    x = np.random.default_rng(3).random((1, 3, 16, 16), dtype=np.float32)
    with TensorRTRunner(plan) as runner:
        out = runner.infer({"images": x})["output0"]
    assert np.abs(out).sum() > 0
    syncs = [c for c in env.cuda.calls if c[0] == "cudaStreamSynchronize"]
    assert syncs and all(not q for q in env.cuda.streams.values())


def test_no_trt_nptype_so_numpy_124_is_fine(tmp_path, fake_trt, onnx_models):
    env = fake_trt("8.5.2.2")
    if not hasattr(np, "bool"):  # numpy >= 1.24: 8.5's nptype itself is broken, as on a real Jetson
        with pytest.raises(AttributeError):
            env.trt.nptype(env.trt.float32)
    plan = _plan(tmp_path, onnx_models["static"])
    with TensorRTRunner(plan) as runner:
        assert runner.input_metadata()["images"].dtype == np.float32
        assert runner.infer({"images": X})["output0"].dtype == np.float32


def test_device_query_failure_is_one_line(tmp_path, fake_trt):
    fake_trt("8.5.2.2", cuda_fail={"cudaDeviceGetAttribute"})
    with pytest.raises(DeviceError, match="cannot query CUDA device 0.*nvidia-smi"):
        device_info()


def test_registered_as_the_tensorrt_backend():
    from edgekit.deploy.runners import runner_class

    assert runner_class("tensorrt") is TensorRTRunner


def test_an_injected_trt_module_must_be_the_one_polygraphy_imports(tmp_path, fake_trt, onnx_models):
    from tests.fakes.fake_tensorrt import make_fake_tensorrt

    env = fake_trt("8.5.2.2")
    plan = _plan(tmp_path, onnx_models["static"])
    with pytest.raises(ValueError, match="sys.modules\\['tensorrt'\\]"):
        TensorRTRunner(plan, trt_module=make_fake_tensorrt("8.5.2.2")).activate()
    with TensorRTRunner(plan, trt_module=env.trt) as runner:
        assert runner.infer({"images": X})["output0"].shape == (1, 2, 16, 16)


def test_frames_go_through_pinned_buffers_allocated_once(tmp_path, fake_trt, onnx_models):
    env = fake_trt("8.5.2.2")
    plan = _plan(tmp_path, onnx_models["static"])
    rng = np.random.default_rng(5)
    with TensorRTRunner(plan) as runner:
        first = runner.infer({"images": X})["output0"]
        mallocs = [c[0] for c in env.cuda.calls].count("cudaMalloc")
        pinned = dict(env.cuda.host_allocations)
        outs = [runner.infer({"images": rng.random((1, 3, 16, 16), dtype=np.float32)})["output0"] for _ in range(3)]
        assert [c[0] for c in env.cuda.calls].count("cudaMalloc") == mallocs  # nothing allocated per frame
        assert env.cuda.host_allocations == pinned and len(pinned) == 2  # one pinned input, one pinned output
    assert not np.allclose(outs[0], outs[1]) and not np.allclose(first, outs[0])  # each call its own array
    assert env.cuda.host_allocations == {}  # freed on deactivate


def test_pageable_fallback_when_pinning_fails(tmp_path, fake_trt, onnx_models):
    env = fake_trt("8.5.2.2")
    plan = _plan(tmp_path, onnx_models["static"])
    with TensorRTRunner(plan) as runner:
        want = runner.infer({"images": X})["output0"]
    env.cuda.fail.add("cudaMallocHost")
    with TensorRTRunner(plan) as runner:
        np.testing.assert_array_equal(runner.infer({"images": X})["output0"], want)
