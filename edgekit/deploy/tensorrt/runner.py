"""TensorRT backend of the runner contract, over Polygraphy's ``EngineFromBytes`` and CUDA buffers.

The engine is deserialized by Polygraphy (plugins initialised first) through a ``trt.Runtime`` whose
``DLA_core`` is set from the plan's sidecar before deserializing (the runtime's default, -1, lets a
DLA-1 engine land on core 0). Execution uses the named-tensor API common to TensorRT 8.5, 10 and 11
(``set_input_shape``, ``set_tensor_address``, ``execute_async_v3``) on ``polygraphy.cuda`` device
arrays and one stream, and checks every return value. Inputs and outputs are staged in pinned host
buffers (:mod:`edgekit.deploy.tensorrt.pinned`), so both copies are asynchronous on that stream and
a frame ends in one synchronize; device and pinned buffers are allocated on the first frame of a
shape and reused after it. Polygraphy's ``TrtRunner`` is not used: its
internals (output allocators, debug listeners, weight streaming) differ between the Polygraphy
releases that run on Python 3.8 and on current hosts, and it reports failures as generic
exceptions. dtypes map through Polygraphy's DataType, never ``trt.nptype`` (TensorRT 8.5's needs
``np.bool``, gone in numpy 1.24).

A plan whose sidecar names another TensorRT version or GPU is refused: engines are not portable.
Device side: Python 3.8; tensorrt and polygraphy imported on activate.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from edgekit.core.errors import DataError, DeviceError, ModelError
from edgekit.deploy.runners.base import Runner, TensorMeta

from .device import DeviceInfo, device_info, import_tensorrt, polygraphy_log, require_polygraphy
from .keys import EngineSidecar, read_sidecar, sidecar_path
from .pinned import PinnedBuffer

LOG = logging.getLogger("edgekit.deploy.tensorrt")
PathLike = Union[str, Path]
REBUILD = "rebuild it on this device: edgekit engine build BUNDLE"


def check_plan_sidecar(plan_path: PathLike, trt_version: str, device: DeviceInfo) -> Optional[EngineSidecar]:
    """Refuse a plan built for another TensorRT version or GPU; None (with a warning) when it has no sidecar."""
    sidecar = read_sidecar(plan_path)
    if sidecar is None:
        LOG.warning("engine %s has no sidecar %s; its TensorRT version and GPU are not checked",
                    plan_path, sidecar_path(plan_path).name)
        return None
    if sidecar.trt_version != trt_version:
        raise ModelError(f"engine {plan_path} was built with TensorRT {sidecar.trt_version}, this is {trt_version}",
                         REBUILD)
    if "unknown" not in (device.sm, sidecar.compute_capability) and sidecar.compute_capability != device.sm:
        raise ModelError(f"engine {plan_path} was built for {sidecar.device_name} ({sidecar.compute_capability}), "
                         f"this GPU is {device.name} ({device.sm})", REBUILD)
    return sidecar


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT plan. ``trt_module``/``device`` let tests inject fakes."""

    backend = "tensorrt"

    def __init__(self, plan_path: PathLike, trt_module: Any = None, device: Optional[DeviceInfo] = None,
                 name: Optional[str] = None) -> None:
        super().__init__(name or Path(plan_path).name)
        self.plan_path = Path(plan_path)
        self._trt_module = trt_module
        self._device = device
        self.sidecar: Optional[EngineSidecar] = None
        self._buffers: Dict[str, Any] = {}
        self._staging: Dict[str, PinnedBuffer] = {}

    def _activate(self) -> Dict[str, TensorMeta]:
        trt = import_tensorrt(self._trt_module)
        require_polygraphy(int(str(trt.__version__).split(".")[0]))
        if not self.plan_path.is_file():
            raise ModelError(f"TensorRT engine {self.plan_path} does not exist", "build it: edgekit engine build BUNDLE")
        from polygraphy import cuda

        self.trt = trt
        self.sidecar = check_plan_sidecar(self.plan_path, str(trt.__version__), self._device or device_info())
        self.engine = self._deserialize(trt)
        self.context = self.engine.create_execution_context()
        if not self.context:
            raise DeviceError(f"TensorRT could not create an execution context for {self.plan_path.name}",
                              "free GPU memory (other engines, processes) and retry")
        self.stream = cuda.Stream()
        self._cudart = cuda.wrapper().handle
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {n: self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self.input_names: List[str] = [n for n in names if is_input[n]]
        self.output_names: List[str] = [n for n in names if not is_input[n]]
        self._dtypes = {n: self._numpy_dtype(n) for n in names}
        return {n: TensorMeta(n, tuple(int(d) if d >= 0 else None for d in self.engine.get_tensor_shape(n)),
                              self._dtypes[n]) for n in self.input_names}

    def _deserialize(self, trt: Any) -> Any:
        from polygraphy.backend.trt import EngineFromBytes, get_trt_logger
        from polygraphy.exception import PolygraphyException

        with polygraphy_log() as plog:
            runtime = trt.Runtime(get_trt_logger())
            if self.sidecar is not None and self.sidecar.dla_core is not None:
                runtime.DLA_core = int(self.sidecar.dla_core)  # before deserializing, as trtexec does
            try:
                return EngineFromBytes(self.plan_path.read_bytes(), runtime=runtime)()
            except PolygraphyException as e:
                detail = plog.summary() or str(e).strip().splitlines()[0]
                raise ModelError(f"TensorRT {trt.__version__} cannot deserialize {self.plan_path}: {detail}",
                                 REBUILD) from None

    def _numpy_dtype(self, name: str) -> np.dtype:
        from polygraphy.datatype import DataType

        dtype = DataType.from_dtype(self.engine.get_tensor_dtype(name), "tensorrt")
        if dtype is None:
            raise ModelError(f"engine {self.plan_path.name} tensor '{name}' has a dtype numpy cannot hold",
                             "export the model with float32/float16/int32/int8/bool inputs and outputs")
        return np.dtype(DataType.to_dtype(dtype, "numpy"))

    def _device_buffer(self, name: str, nbytes: int) -> Any:
        from polygraphy import cuda

        buf = self._buffers.get(name)
        if buf is None:
            buf = self._buffers[name] = cuda.DeviceArray.raw((max(1, nbytes),))
        return buf.resize((nbytes,))  # reallocates only when larger than what it holds

    def _staged(self, name: str, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        buf = self._staging.get(name)
        if buf is None:
            buf = self._staging[name] = PinnedBuffer(self._cudart)
        return buf.view(shape, dtype)

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for name in self.input_names:
            host = feed[name]
            if not self.context.set_input_shape(name, tuple(host.shape)):
                raise DataError(f"input '{name}' shape {tuple(host.shape)} is outside engine {self.plan_path.name}'s "
                                "profile", "feed a shape within the min/max the engine was built with")
            staged = self._staged("in:" + name, tuple(host.shape), host.dtype)
            np.copyto(staged, host)  # the one host copy of the frame, into pinned memory
            buf = self._device_buffer(name, staged.nbytes)
            buf.copy_from(staged.reshape(-1).view(np.uint8), self.stream)
            self._set_address(name, buf.ptr)
        staged_out: Dict[str, np.ndarray] = {}
        for name in self.output_names:
            shape = tuple(int(d) for d in self.context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise ModelError(f"engine {self.plan_path.name} output '{name}' has data-dependent shape {shape}",
                                 "export without in-graph NMS (fixed output shapes)")
            staged_out[name] = self._staged("out:" + name, shape, self._dtypes[name])
            self._set_address(name, self._device_buffer(name, staged_out[name].nbytes).ptr)
        if not self.context.execute_async_v3(self.stream.ptr):
            raise DeviceError(f"TensorRT execute_async_v3 failed for {self.plan_path.name}",
                              "see TensorRT's log above; check free GPU memory")
        for name, host in staged_out.items():
            self._buffers[name].copy_to(host.reshape(-1).view(np.uint8), self.stream)
        self.stream.synchronize()  # the copies above are asynchronous until here
        # The caller gets its own arrays: the pipelined runtime decodes frame i while frame i+1 is copied
        # into the same pinned outputs.
        return {name: host.copy() for name, host in staged_out.items()}

    def _set_address(self, name: str, ptr: int) -> None:
        if not self.context.set_tensor_address(name, ptr):
            raise DeviceError(f"TensorRT refused the device address of tensor '{name}' ({ptr:#x})",
                              "tensor addresses must be non-null and 256-byte aligned")

    def _deactivate(self) -> None:
        self.stream.synchronize()  # nothing may still read or write the buffers freed below
        for buf in self._buffers.values():
            buf.free()
        self._buffers = {}
        for staging in self._staging.values():
            staging.free()
        self._staging = {}
        self.stream.free()
        self.context = self.engine = None


__all__ = ["TensorRTRunner", "check_plan_sidecar"]
