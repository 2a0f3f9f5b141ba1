"""TensorRT backend for the runner contract, plus the CUDA device memory it (and calibration) uses.

Only the API subset common to TensorRT 8.5 (Jetson Xavier NX, JetPack 5) and 10/11 (x86 hosts) is
called (REFERENCE.md §2): ``Runtime.deserialize_cuda_engine``, ``num_io_tensors``,
``get_tensor_name/mode/dtype/shape``, ``set_input_shape``, ``set_tensor_address`` and
``execute_async_v3``. No ``*binding*`` API, no ``execute_async_v2``: both are gone in 10.

Device memory goes through cuda-python (``cuda.bindings.runtime`` or the older ``cuda.cudart``)
when importable, else Polygraphy's ctypes wrapper ``polygraphy.cuda`` (pure Python, installs on
the Jetson). An engine is a plain TensorRT plan; what it was built from lives in a sidecar JSON
(:class:`EngineSidecar`), and the runner refuses a plan whose sidecar names another TensorRT
version or GPU, since engines are not portable across either.

Runs on the device (Python 3.8); tensorrt, cuda-python and polygraphy are imported lazily.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from edgekit.core.config import StrictModel
from edgekit.core.errors import DataError, DeviceError, ModelError

from .base import Runner, TensorMeta

LOG = logging.getLogger(__name__)
PathLike = Union[str, Path]


class EngineSidecar(StrictModel):
    """What a plan was built from and for; stored beside it as ``<plan stem>.json``."""

    key: str
    trt_version: str
    device_name: str
    compute_capability: str
    precision: str
    int8_mode: Optional[str] = None
    onnx_sha256: str
    shapes: Dict[str, List[List[int]]]  # input -> [min, opt, max] shapes
    dla_core: Optional[int] = None
    workspace_mb: int
    plan_sha256: str
    created_utc: str


def engine_sidecar_path(plan_path: PathLike) -> Path:
    return Path(plan_path).with_suffix(".json")


def import_tensorrt() -> Any:
    """The real ``tensorrt`` module, or DeviceError (PyPI's stub packages count as missing)."""
    try:
        import tensorrt as trt
        _ = trt.Builder, trt.Runtime, trt.__version__
    except Exception:  # ImportError, or the PyPI stub raising at import or lacking the API
        raise DeviceError("TensorRT is not importable here",
                          "run on a machine with TensorRT (JetPack's python3-libnvinfer on a Jetson, "
                          "`pip install tensorrt-cu12` on an x86 host)") from None
    return trt


# ---- CUDA memory ---------------------------------------------------------------------------------
class CudaMemory:
    """Device buffers, copies and one stream, through cuda-python or Polygraphy's CUDA wrapper.

    Hand-written rather than taken from one library because the Jetson may have either one:
    cuda-python has JetPack 5 wheels, Polygraphy ships its own ctypes wrapper.
    """

    def __init__(self) -> None:
        self.backend, self._rt = _load_cuda()

    def _check(self, result: Any, what: str) -> Any:
        err, rest = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(err) != 0:
            _, msg = self._rt.cudaGetErrorString(err)
            raise DeviceError(f"CUDA {what} failed: {msg.decode() if isinstance(msg, bytes) else msg}",
                              "check the GPU (nvidia-smi / tegrastats) and free memory")
        return rest[0] if len(rest) == 1 else rest

    def malloc(self, nbytes: int) -> int:
        if self.backend == "polygraphy":
            return int(self._rt.malloc(max(1, nbytes)))
        return int(self._check(self._rt.cudaMalloc(max(1, nbytes)), "malloc"))

    def free(self, ptr: int) -> None:
        if self.backend == "polygraphy":
            self._rt.free(ptr)
        else:
            self._check(self._rt.cudaFree(ptr), "free")

    def create_stream(self) -> int:
        if self.backend == "polygraphy":
            return int(self._rt.create_stream())
        return int(self._check(self._rt.cudaStreamCreate(), "stream create"))

    def destroy_stream(self, stream: int) -> None:
        if self.backend == "polygraphy":
            self._rt.destroy_stream(stream)
        else:
            self._check(self._rt.cudaStreamDestroy(stream), "stream destroy")

    def synchronize(self, stream: int) -> None:
        if self.backend == "polygraphy":
            self._rt.stream_synchronize(stream)
        else:
            self._check(self._rt.cudaStreamSynchronize(stream), "stream synchronize")

    def htod(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._copy(ptr, host.ctypes.data, host.nbytes, 1, stream)

    def dtoh(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._copy(host.ctypes.data, ptr, host.nbytes, 2, stream)

    def _copy(self, dst: int, src: int, nbytes: int, kind: int, stream: int) -> None:
        if self.backend == "polygraphy":
            from polygraphy import cuda as pcuda

            kinds = {1: pcuda.MemcpyKind.HostToDevice, 2: pcuda.MemcpyKind.DeviceToHost}
            self._rt.memcpy(dst, src, nbytes, kinds[kind], stream)
        else:
            self._check(self._rt.cudaMemcpyAsync(dst, src, nbytes, self._rt.cudaMemcpyKind(kind), stream), "memcpy")

    def device_info(self) -> Tuple[str, str]:
        """(GPU name, 'sm_XY') of device 0; ('unknown', 'unknown') where the backend cannot tell."""
        if self.backend == "polygraphy":
            return _jetson_model() or "unknown", _polygraphy_sm(self._rt)
        props = self._check(self._rt.cudaGetDeviceProperties(0), "device query")
        name = props.name.decode(errors="replace").rstrip("\0") if isinstance(props.name, bytes) else str(props.name)
        return name, f"sm_{props.major}{props.minor}"


def _load_cuda() -> Tuple[str, Any]:
    try:
        from cuda.bindings import runtime  # cuda-python >= 12.6 (TRT samples from 10.14)
        return "cuda-python", runtime
    except ImportError:
        pass
    try:
        from cuda import cudart  # cuda-python 11.8 / 12.x, the JetPack 5 wheels
        return "cuda-python", cudart
    except ImportError:
        pass
    try:
        from polygraphy import cuda as pcuda
        return "polygraphy", pcuda.wrapper()
    except Exception:  # ImportError, or polygraphy failing to find libcudart
        raise DeviceError("no CUDA runtime binding: neither cuda-python nor polygraphy.cuda is usable",
                          "pip install cuda-python (or polygraphy) matching the CUDA version") from None


def _jetson_model() -> Optional[str]:
    try:
        return Path("/proc/device-tree/model").read_text(errors="replace").rstrip("\0").strip() or None
    except OSError:
        return None


def _polygraphy_sm(wrapper: Any) -> str:
    import ctypes

    major, minor = ctypes.c_int(), ctypes.c_int()
    # cudaDevAttrComputeCapabilityMajor = 75, ...Minor = 76
    if wrapper.handle.cudaDeviceGetAttribute(ctypes.byref(major), 75, 0) != 0:
        return "unknown"
    wrapper.handle.cudaDeviceGetAttribute(ctypes.byref(minor), 76, 0)
    return f"sm_{major.value}{minor.value}"


# ---- the runner ----------------------------------------------------------------------------------
def check_plan_sidecar(plan_path: PathLike, trt_version: str, device: Tuple[str, str]) -> Optional[EngineSidecar]:
    """Refuse a plan built for another TensorRT version or GPU; None when it has no sidecar."""
    side = engine_sidecar_path(plan_path)
    if not side.is_file():
        LOG.warning("engine %s has no sidecar %s; its TensorRT version and GPU are not checked", plan_path, side.name)
        return None
    try:
        sidecar = EngineSidecar.model_validate(json.loads(side.read_text(encoding="utf-8")))
    except (ValueError, OSError) as e:
        raise ModelError(f"engine sidecar {side} is unreadable: {str(e).splitlines()[0]}",
                         "delete the engine and its sidecar and rebuild") from None
    fix = "rebuild the engine on this device (edgekit export --engine / the device's engine build)"
    if sidecar.trt_version != trt_version:
        raise ModelError(f"engine {plan_path} was built with TensorRT {sidecar.trt_version}, this is {trt_version}", fix)
    name, sm = device
    if "unknown" not in (sm, sidecar.compute_capability) and sidecar.compute_capability != sm:
        raise ModelError(f"engine {plan_path} was built for {sidecar.device_name} ({sidecar.compute_capability}), "
                         f"this GPU is {name} ({sm})", fix)
    return sidecar


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT plan with ``execute_async_v3``.

    ``trt_module`` and ``cuda`` let tests inject fakes; by default ``tensorrt`` and
    :class:`CudaMemory` are used.
    """

    backend = "tensorrt"

    def __init__(self, plan_path: PathLike, trt_module: Any = None, cuda: Any = None,
                 name: Optional[str] = None) -> None:
        super().__init__(name or Path(plan_path).name)
        self.plan_path = Path(plan_path)
        self._trt_module = trt_module
        self._cuda_given = cuda
        self.sidecar: Optional[EngineSidecar] = None
        self._buffers: Dict[str, Tuple[int, int]] = {}  # name -> (device pointer, capacity in bytes)

    def _activate(self) -> Dict[str, TensorMeta]:
        trt = self._trt_module or import_tensorrt()
        if not self.plan_path.is_file():
            raise ModelError(f"TensorRT engine {self.plan_path} does not exist", "build it first (edgekit export)")
        self.trt, self.cuda = trt, self._cuda_given or CudaMemory()
        self.sidecar = check_plan_sidecar(self.plan_path, str(trt.__version__), self.cuda.device_info())
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self.engine is None:
            raise ModelError(f"TensorRT cannot deserialize {self.plan_path} (TensorRT {trt.__version__})",
                             "rebuild the engine with this TensorRT version on this GPU")
        self.context = self.engine.create_execution_context()
        self.stream = self.cuda.create_stream()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names = [n for n in names if is_input[n]]
        self.output_names = [n for n in names if not is_input[n]]
        return {n: TensorMeta(n, tuple(d if d >= 0 else None for d in self.engine.get_tensor_shape(n)),
                              self._dtype(n)) for n in self.input_names}

    def _dtype(self, name: str) -> np.dtype:
        return np.dtype(self.trt.nptype(self.engine.get_tensor_dtype(name)))

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, capacity = self._buffers.get(name, (0, -1))
        if nbytes > capacity:  # grow only; dynamic shapes reuse the largest buffer seen
            if capacity >= 0:
                self.cuda.free(ptr)
            ptr, capacity = self.cuda.malloc(nbytes), nbytes
            self._buffers[name] = (ptr, capacity)
        return ptr

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name in self.input_names:
            arr = np.ascontiguousarray(feed[name], dtype=self._dtype(name))
            if self.context.set_input_shape(name, tuple(arr.shape)) is False:
                raise DataError(f"input '{name}' shape {arr.shape} is outside engine {self.plan_path.name}'s profile",
                                "feed a shape within the min/max the engine was built with")
            ptr = self._buffer(name, arr.nbytes)
            self.cuda.htod(ptr, arr, self.stream)
            self.context.set_tensor_address(name, ptr)
        outputs = {}
        for name in self.output_names:
            shape = tuple(self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelError(f"engine {self.plan_path.name} output '{name}' has data-dependent shape {shape}",
                                 "export without in-graph NMS (fixed output shapes)")
            outputs[name] = np.empty(shape, dtype=self._dtype(name))
            self.context.set_tensor_address(name, self._buffer(name, outputs[name].nbytes))
        if not self.context.execute_async_v3(self.stream):
            raise DeviceError(f"TensorRT execute_async_v3 failed for {self.plan_path.name}", "see TensorRT's log above")
        for name, host in outputs.items():
            self.cuda.dtoh(host, self._buffers[name][0], self.stream)
        self.cuda.synchronize(self.stream)
        return outputs

    def _deactivate(self) -> None:
        for ptr, _ in self._buffers.values():
            self.cuda.free(ptr)
        self._buffers = {}
        self.cuda.destroy_stream(self.stream)
        self.context = self.engine = self._runtime = None


__all__ = ["TensorRTRunner", "EngineSidecar", "CudaMemory", "engine_sidecar_path", "check_plan_sidecar",
           "import_tensorrt"]
