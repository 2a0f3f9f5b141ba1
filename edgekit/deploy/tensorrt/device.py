"""TensorRT, Polygraphy and the GPU as the build and the runner see them.

CUDA goes through Polygraphy's own ctypes wrapper (``polygraphy.cuda``) over ``libcudart``: it needs no
cuda-python, whose 12.x wheels import fine on JetPack 5 (CUDA 11.4) and fail at the first call.
Polygraphy's log lines are routed into Python logging while edgekit calls it, so a build prints
edgekit's progress lines, and Polygraphy's error lines can be quoted in edgekit's one-line errors.

Device side: Python 3.8; tensorrt and polygraphy are imported inside the functions.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import sys
from pathlib import Path
from typing import Any, Iterator, List, NamedTuple, Optional

from edgekit.core.errors import DeviceError

LOG = logging.getLogger("edgekit.deploy.tensorrt")


class DeviceInfo(NamedTuple):
    """The GPU the engine is built for / runs on: its name and compute capability as ``sm_XY``."""

    name: str
    sm: str


def import_tensorrt(trt_module: Any = None) -> Any:
    """``trt_module`` if given, else the real ``tensorrt`` module, else DeviceError.

    PyPI's ``tensorrt`` stub packages import but lack the API; they count as missing.
    """
    if trt_module is not None:
        # Polygraphy imports `tensorrt` itself: an injected module must be the one it will find.
        if sys.modules.get("tensorrt") is not trt_module:
            raise ValueError("trt_module must be sys.modules['tensorrt'] (Polygraphy imports tensorrt by name); "
                             "install a fake there first (tests/fakes/fake_tensorrt.FakeTensorRT)")
        return trt_module
    try:
        import tensorrt as trt

        _ = trt.Builder, trt.Runtime, trt.__version__
    except Exception:  # ImportError, or a stub package raising at import or lacking the API
        raise DeviceError("TensorRT is not importable here",
                          "run on a machine with TensorRT (JetPack's python3-libnvinfer on a Jetson, "
                          "`pip install tensorrt` on an x86 host)") from None
    return trt


def tensorrt_available() -> bool:
    """True when a working ``tensorrt`` imports."""
    try:
        import_tensorrt()
    except DeviceError:
        return False
    return True


def trt_version(trt: Any) -> str:
    return str(trt.__version__)


def trt_major(trt: Any) -> int:
    return int(trt_version(trt).split(".")[0])


# Polygraphy releases before this one predate TensorRT 11 (they read ILayer.precision_is_set, gone in 11).
POLYGRAPHY_FOR_TRT11 = (0, 53)


def require_polygraphy(major: Optional[int] = None) -> None:
    """DeviceError unless a Polygraphy that handles TensorRT ``major`` is installed."""
    try:
        import polygraphy
        from polygraphy.backend import trt as _  # noqa: F401
    except ImportError:
        raise DeviceError("polygraphy is not installed; edgekit builds and runs TensorRT engines through it",
                          "pip install 'edgekit[trt]' (or `pip install polygraphy`)") from None
    version = tuple(int(p) for p in str(polygraphy.__version__).split(".")[:2] if p.isdigit())
    if major is not None and major >= 11 and version < POLYGRAPHY_FOR_TRT11:
        raise DeviceError(f"polygraphy {polygraphy.__version__} predates TensorRT {major}",
                          "pip install -U 'polygraphy>=0.53' (Python >= 3.9 hosts)")


def cuda_wrapper() -> Any:
    """Polygraphy's process-wide CUDA runtime wrapper, or DeviceError when libcudart cannot load."""
    require_polygraphy()
    from polygraphy import cuda
    from polygraphy.exception import PolygraphyException

    try:
        return cuda.wrapper()
    except (OSError, PolygraphyException) as e:
        raise DeviceError(f"the CUDA runtime (libcudart) cannot be loaded: {_first_line(e)}",
                          "run on a machine with a CUDA GPU and its runtime on LD_LIBRARY_PATH") from None


_CUDA_DEV_ATTR_CC_MAJOR, _CUDA_DEV_ATTR_CC_MINOR = 75, 76  # cudaDeviceAttr values


def device_info() -> DeviceInfo:
    """Name and ``sm_XY`` of CUDA device 0, through Polygraphy's CUDA wrapper."""
    handle = cuda_wrapper().handle
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    status = handle.cudaDeviceGetAttribute(ctypes.byref(major), _CUDA_DEV_ATTR_CC_MAJOR, 0)
    if status == 0:
        status = handle.cudaDeviceGetAttribute(ctypes.byref(minor), _CUDA_DEV_ATTR_CC_MINOR, 0)
    if status != 0:
        raise DeviceError(f"cannot query CUDA device 0 (cudaDeviceGetAttribute returned error {status})",
                          "check the GPU and driver (nvidia-smi, or tegrastats on a Jetson)")
    return DeviceInfo(_jetson_model() or _device_name(handle), f"sm_{major.value}{minor.value}")


def _device_name(handle: Any) -> str:
    # cudaDeviceProp starts with `char name[256]`; the buffer is far larger than the struct in any
    # CUDA version, so only the name is read from it.
    buf = ctypes.create_string_buffer(8192)
    try:
        if handle.cudaGetDeviceProperties(buf, 0) != 0:
            return "unknown GPU"
    except AttributeError:
        return "unknown GPU"
    return buf.raw[:256].split(b"\0", 1)[0].decode(errors="replace") or "unknown GPU"


def _jetson_model() -> Optional[str]:
    try:
        text = Path("/proc/device-tree/model").read_text(errors="replace")
    except OSError:
        return None
    return text.rstrip("\0").strip() or None


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class PolygraphyLog(logging.Handler):
    """Collects Polygraphy's warnings and errors while edgekit calls it."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.errors: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if record.levelno >= logging.ERROR:
            self.errors.append(_strip_prefix(message))
        elif record.levelno >= logging.WARNING:
            LOG.warning("polygraphy: %s", _strip_prefix(message))

    def summary(self, limit: int = 3) -> str:
        lines = [e.splitlines()[0] for e in self.errors if e.strip()]
        return "; ".join(lines[:limit])


def _strip_prefix(message: str) -> str:
    return message[4:] if message[:1] == "[" and message[2:4] == "] " else message


@contextlib.contextmanager
def polygraphy_log() -> Iterator[PolygraphyLog]:
    """Route Polygraphy's logger into Python logging (not stdout) for the duration; collect errors."""
    require_polygraphy()
    from polygraphy.logger import G_LOGGER

    handler = PolygraphyLog()
    py_logger = logging.getLogger("Polygraphy")
    before = (G_LOGGER.use_python_logging_system, py_logger.propagate, py_logger.level)
    G_LOGGER.use_python_logging_system = True
    py_logger.addHandler(handler)
    py_logger.propagate = False
    py_logger.setLevel(logging.WARNING)
    try:
        yield handler
    finally:
        py_logger.removeHandler(handler)
        G_LOGGER.use_python_logging_system, py_logger.propagate = before[0], before[1]
        py_logger.setLevel(before[2])


__all__ = ["DeviceInfo", "import_tensorrt", "tensorrt_available", "trt_version", "trt_major", "device_info",
           "cuda_wrapper", "require_polygraphy", "polygraphy_log", "PolygraphyLog"]
