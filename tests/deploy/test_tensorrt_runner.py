"""TensorRTRunner against fake TensorRT 8.5 / 10 / 11 modules and host-backed "device" memory.

The fake engine runs the real ONNX with onnxruntime on the bytes it finds at the tensor addresses
the runner set, so matching onnxruntime's output proves the shapes, copies and addresses are right.
A ``gpu``-marked variant uses real CUDA buffers (cuda-python / polygraphy) where a GPU exists.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/fakes importable as `fakes`

from fakes.fake_cuda import HostCudaMemory  # noqa: E402
from fakes.fake_tensorrt import make_fake_tensorrt  # noqa: E402
from fakes.onnx_graphs import save, tiny_conv_model  # noqa: E402

from edgekit.core.errors import DataError, ModelError  # noqa: E402
from edgekit.deploy.runners.tensorrt import TensorRTRunner, engine_sidecar_path  # noqa: E402
from edgekit.export.tensorrt_build import EngineBuildOptions, build_engine  # noqa: E402

ALL = ["8.5.2.2", "10.3.0.26", "11.4.0.106"]
PROFILE = {"images": {"min": [1, 3, 16, 16], "opt": [1, 3, 16, 16], "max": [2, 3, 32, 32]}}


@pytest.fixture(scope="module")
def onnx_paths(tmp_path_factory):
    d = tmp_path_factory.mktemp("onnx")
    return save(tiny_conv_model(), d / "tiny.onnx"), save(tiny_conv_model(dynamic=True), d / "dyn.onnx")


def _plan(tmp_path, onnx_path, version, cuda, profiles=None):
    trt = make_fake_tensorrt(version, memory=cuda)
    result = build_engine(onnx_path, tmp_path, EngineBuildOptions(precision="fp32", profiles=profiles or {}),
                          trt_module=trt, cuda=cuda)
    return trt, result.plan_path


def _reference(onnx_path, x):
    return ort.InferenceSession(str(onnx_path)).run(None, {"images": x})[0]


@pytest.mark.parametrize("version", ALL)
def test_runs_like_onnxruntime_with_the_v3_call_sequence(tmp_path, onnx_paths, version):
    cuda = HostCudaMemory()
    trt, plan = _plan(tmp_path, onnx_paths[0], version, cuda)
    trt.calls.clear()
    x = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    with TensorRTRunner(plan, trt_module=trt, cuda=cuda) as runner:
        meta = runner.input_metadata()["images"]
        assert (meta.shape, meta.dtype) == ((1, 3, 16, 16), np.float32)
        out = runner.infer({"images": x})
        out2 = runner.infer({"images": x[:, :, ::-1].copy()})
    np.testing.assert_allclose(out["output0"], _reference(onnx_paths[0], x), rtol=1e-6)
    np.testing.assert_allclose(out2["output0"], _reference(onnx_paths[0], x[:, :, ::-1].copy()), rtol=1e-6)
    sequence = [c[0] for c in trt.calls]
    assert sequence[:3] == ["Runtime", "deserialize_cuda_engine", "create_execution_context"]
    assert sequence[3:7] == ["set_input_shape", "set_tensor_address", "set_tensor_address", "execute_async_v3"]
    assert runner.last_inference_time() > 0
    assert cuda.live == {} and cuda.streams == {}  # buffers and stream released on deactivate
    assert [c[0] for c in cuda.calls].count("malloc") == 2  # reused across the two infers


@pytest.mark.parametrize("version", ALL)
def test_dynamic_shapes_grow_buffers_and_respect_the_profile(tmp_path, onnx_paths, version):
    cuda = HostCudaMemory()
    trt, plan = _plan(tmp_path, onnx_paths[1], version, cuda, PROFILE)
    with TensorRTRunner(plan, trt_module=trt, cuda=cuda) as runner:
        assert runner.input_metadata()["images"].shape == (None, 3, None, None)
        for shape in [(1, 3, 16, 16), (2, 3, 32, 32), (1, 3, 24, 24)]:
            x = np.random.default_rng(1).random(shape, dtype=np.float32)
            np.testing.assert_allclose(runner.infer({"images": x})["output0"], _reference(onnx_paths[1], x),
                                       rtol=1e-6)
        with pytest.raises(DataError, match="outside engine"):
            runner.infer({"images": np.zeros((4, 3, 16, 16), np.float32)})
    assert cuda.live == {}


@pytest.mark.parametrize("field, value, match", [
    ("trt_version", "10.3.0.26", "was built with TensorRT 10.3.0.26, this is 8.5.2.2"),
    ("compute_capability", "sm_87", r"was built for .* \(sm_87\), this GPU is Fake Xavier \(sm_72\)"),
])
def test_refuses_a_plan_for_another_trt_or_gpu(tmp_path, onnx_paths, field, value, match):
    cuda = HostCudaMemory()
    trt, plan = _plan(tmp_path, onnx_paths[0], "8.5.2.2", cuda)
    side = engine_sidecar_path(plan)
    data = json.loads(side.read_text())
    data[field] = value
    side.write_text(json.dumps(data))
    with pytest.raises(ModelError, match=match):
        TensorRTRunner(plan, trt_module=trt, cuda=cuda).activate()


@pytest.mark.parametrize("damage, match", [("missing", "does not exist"), ("corrupt", "cannot deserialize")])
def test_missing_or_corrupt_plan(tmp_path, onnx_paths, damage, match):
    cuda = HostCudaMemory()
    trt, plan = _plan(tmp_path, onnx_paths[0], "10.3.0.26", cuda)
    if damage == "missing":
        plan.unlink()
    else:
        plan.write_bytes(b"\x00garbage")
    with pytest.raises(ModelError, match=match):
        TensorRTRunner(plan, trt_module=trt, cuda=cuda).activate()


def test_plan_without_sidecar_still_runs(tmp_path, onnx_paths):
    cuda = HostCudaMemory()
    trt, plan = _plan(tmp_path, onnx_paths[0], "8.5.2.2", cuda)
    engine_sidecar_path(plan).unlink()  # e.g. a plan from trtexec: TRT itself still checks its version
    with TensorRTRunner(plan, trt_module=trt, cuda=cuda) as runner:
        assert runner.sidecar is None
        assert runner.infer({"images": np.zeros((1, 3, 16, 16), np.float32)})["output0"].shape == (1, 2, 16, 16)


def _real_cuda():
    try:
        from edgekit.deploy.runners.tensorrt import CudaMemory

        cuda = CudaMemory()
        cuda.device_info()
        return cuda
    except Exception:
        return None


class DeviceMemory:
    """Real CUDA buffers; the fake engine reads/writes them with synchronous copies."""

    def __init__(self, cuda):
        self.cuda = cuda
        self.__dict__.update({k: getattr(cuda, k) for k in ("malloc", "free", "create_stream", "destroy_stream",
                                                            "synchronize", "htod", "dtoh", "device_info")})

    def read(self, ptr, nbytes):
        host = np.empty(nbytes, np.uint8)
        stream = self.cuda.create_stream()
        self.cuda.dtoh(host, ptr, stream)
        self.cuda.synchronize(stream)
        self.cuda.destroy_stream(stream)
        return host.tobytes()

    def write(self, ptr, data):
        stream = self.cuda.create_stream()
        self.cuda.htod(ptr, np.frombuffer(data, np.uint8).copy(), stream)
        self.cuda.synchronize(stream)
        self.cuda.destroy_stream(stream)


@pytest.mark.gpu
def test_real_cuda_buffers_round_trip(tmp_path, onnx_paths):
    cuda = _real_cuda()
    if cuda is None:
        pytest.skip("no usable CUDA runtime / GPU")
    memory = DeviceMemory(cuda)
    trt, plan = _plan(tmp_path, onnx_paths[1], "10.3.0.26", memory, PROFILE)
    x = np.random.default_rng(2).random((2, 3, 32, 32), dtype=np.float32)
    with TensorRTRunner(plan, trt_module=trt, cuda=memory) as runner:
        out = runner.infer({"images": x})["output0"]
    np.testing.assert_allclose(out, _reference(onnx_paths[1], x), rtol=1e-6)
    print(f"real CUDA via {cuda.backend}: device {cuda.device_info()}")
