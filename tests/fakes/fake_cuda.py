"""A fake ``libcudart`` for Polygraphy's CUDA wrapper (``polygraphy.cuda``), backed by host memory.

Polygraphy's own ``Cuda``/``DeviceArray``/``Stream`` code runs unchanged on top of it: the fake sits
where ``ctypes.CDLL("libcudart.so")`` would, taking the same ctypes arguments and returning CUDA
status codes. It is stricter than a plain host buffer in the ways real CUDA is:

* device pointers are 256-byte aligned (TensorRT requires it of tensor addresses);
* ``cudaMemcpyAsync`` only *enqueues* the copy on its stream; it happens at
  ``cudaStreamSynchronize`` (a missing synchronize leaves the host buffer untouched);
  ``cudaMemcpy`` (no stream) copies at once;
* device-side ranges are checked: a copy or a TensorRT read outside a live allocation fails;
* freeing twice, or freeing an unknown pointer, returns an error;
* ``fail`` names functions that return an error (e.g. ``{"cudaDeviceGetAttribute"}``).

``work(stream, fn)`` lets the fake TensorRT enqueue a kernel on a stream, in order with the copies.
``install(cudart)`` makes Polygraphy's process-wide wrapper use it; ``uninstall`` restores.
"""

from __future__ import annotations

import ctypes
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import numpy as np

ALIGNMENT = 256
ERROR_INVALID_VALUE, ERROR_NO_DEVICE = 1, 100
H2H, H2D, D2H, D2D = 0, 1, 2, 3


def _value(arg) -> int:
    """The integer inside a ctypes argument (c_void_p / c_size_t / c_int / plain int)."""
    value = getattr(arg, "value", arg)
    return int(value or 0)


def _out(ref):
    """The ctypes object behind ``ctypes.byref(x)``."""
    return getattr(ref, "_obj", ref)


class FakeCudart:
    """The libcudart functions Polygraphy's CUDA wrapper and edgekit's device query call."""

    def __init__(self, name: str = "Fake Xavier NX", sm: Tuple[int, int] = (7, 2),
                 fail: Iterable[str] = ()) -> None:
        self.name, self.sm = name, sm
        self.fail = set(fail)
        self.calls: List[tuple] = []
        self.allocations: Dict[int, Tuple[np.ndarray, int]] = {}  # aligned ptr -> (backing, nbytes)
        self.streams: Dict[int, List[Callable[[], None]]] = {}
        self.host_allocations: Dict[int, np.ndarray] = {}  # pinned host ptr -> backing
        self._next_stream = 0x5000

    # ---- helpers for the fake TensorRT ---------------------------------------------------------
    def check_device(self, ptr: int, nbytes: int) -> None:
        for base, (_, size) in self.allocations.items():
            if base <= ptr and ptr + nbytes <= base + size:
                return
        raise AssertionError(f"device access of {nbytes} bytes at {ptr:#x} outside any live allocation")

    def read(self, ptr: int, nbytes: int) -> bytes:
        self.check_device(ptr, nbytes)
        return ctypes.string_at(ptr, nbytes)

    def write(self, ptr: int, data: bytes) -> None:
        self.check_device(ptr, len(data))
        ctypes.memmove(ptr, data, len(data))

    def work(self, stream: int, fn: Callable[[], None]) -> None:
        """Enqueue ``fn`` on ``stream`` (0: the legacy default stream, run now)."""
        if not stream:
            fn()
            return
        assert stream in self.streams, f"work on unknown stream {stream:#x}"
        self.streams[stream].append(fn)

    def live_bytes(self) -> int:
        return sum(size for _, size in self.allocations.values())

    def _failing(self, name: str) -> bool:
        self.calls.append((name,))
        return name in self.fail

    # ---- libcudart -------------------------------------------------------------------------------
    def cudaMalloc(self, ref, nbytes) -> int:  # noqa: N802 (CUDA's names)
        if self._failing("cudaMalloc"):
            return 2  # cudaErrorMemoryAllocation
        size = max(1, _value(nbytes))
        backing = np.zeros(size + ALIGNMENT, np.uint8)
        ptr = (backing.ctypes.data + ALIGNMENT - 1) // ALIGNMENT * ALIGNMENT
        self.allocations[ptr] = (backing, size)
        _out(ref).value = ptr
        return 0

    def cudaFree(self, ptr) -> int:  # noqa: N802
        address = _value(ptr)
        if self._failing("cudaFree"):
            return ERROR_INVALID_VALUE
        if address == 0:
            return 0  # cudaFree(NULL) is a no-op
        if address not in self.allocations:
            return ERROR_INVALID_VALUE
        for queue in self.streams.values():  # cudaFree synchronizes the device first, as real CUDA does
            while queue:
                queue.pop(0)()
        del self.allocations[address]
        return 0

    def cudaMallocHost(self, ref, nbytes) -> int:  # noqa: N802
        """Pinned host memory: ordinary host memory here, tracked so leaks and double frees show."""
        if self._failing("cudaMallocHost"):
            return 2  # cudaErrorMemoryAllocation
        backing = np.zeros(max(1, _value(nbytes)), np.uint8)
        self.host_allocations[backing.ctypes.data] = backing
        _out(ref).value = backing.ctypes.data
        return 0

    def cudaFreeHost(self, ptr) -> int:  # noqa: N802
        if self._failing("cudaFreeHost") or self.host_allocations.pop(_value(ptr), None) is None:
            return ERROR_INVALID_VALUE
        return 0

    def cudaStreamCreate(self, ref) -> int:  # noqa: N802
        if self._failing("cudaStreamCreate"):
            return ERROR_INVALID_VALUE
        self._next_stream += 0x10
        self.streams[self._next_stream] = []
        _out(ref).value = self._next_stream
        return 0

    def cudaStreamDestroy(self, stream) -> int:  # noqa: N802
        handle = _value(stream)
        if self._failing("cudaStreamDestroy") or handle not in self.streams:
            return ERROR_INVALID_VALUE
        pending = self.streams.pop(handle)
        for fn in pending:  # CUDA finishes queued work before the stream goes away
            fn()
        return 0

    def cudaStreamSynchronize(self, stream) -> int:  # noqa: N802
        handle = _value(stream)
        if self._failing("cudaStreamSynchronize"):
            return ERROR_INVALID_VALUE
        if not handle:
            return 0
        if handle not in self.streams:
            return ERROR_INVALID_VALUE
        queue = self.streams[handle]
        while queue:
            queue.pop(0)()
        return 0

    def _copy_fn(self, dst: int, src: int, nbytes: int, kind: int) -> Callable[[], None]:
        if kind in (H2D, D2D):
            self.check_device(dst, nbytes)
        if kind in (D2H, D2D):
            self.check_device(src, nbytes)
        return lambda: ctypes.memmove(dst, src, nbytes)

    def cudaMemcpy(self, dst, src, nbytes, kind) -> int:  # noqa: N802
        if self._failing("cudaMemcpy"):
            return ERROR_INVALID_VALUE
        self._copy_fn(_value(dst), _value(src), _value(nbytes), _value(kind))()
        return 0

    def cudaMemcpyAsync(self, dst, src, nbytes, kind, stream) -> int:  # noqa: N802
        if self._failing("cudaMemcpyAsync"):
            return ERROR_INVALID_VALUE
        self.work(_value(stream), self._copy_fn(_value(dst), _value(src), _value(nbytes), _value(kind)))
        return 0

    def cudaDeviceGetAttribute(self, ref, attr, device) -> int:  # noqa: N802
        if self._failing("cudaDeviceGetAttribute"):
            return ERROR_NO_DEVICE
        values = {75: self.sm[0], 76: self.sm[1]}
        if _value(attr) not in values:
            return ERROR_INVALID_VALUE
        _out(ref).value = values[_value(attr)]
        return 0

    def cudaGetDeviceProperties(self, buf, device) -> int:  # noqa: N802
        if self._failing("cudaGetDeviceProperties"):
            return ERROR_NO_DEVICE
        data = self.name.encode()[:255] + b"\0"
        ctypes.memmove(buf, data, len(data))
        return 0


_SAVED: List[Optional[object]] = []


def install(cudart: FakeCudart) -> None:
    """Make ``polygraphy.cuda.wrapper()`` return a real Polygraphy ``Cuda`` whose handle is ``cudart``."""
    from polygraphy.cuda import cuda as pcuda

    wrapper = pcuda.Cuda.__new__(pcuda.Cuda)  # skip __init__: it would dlopen libcudart
    wrapper.handle = cudart
    _SAVED.append(pcuda.G_CUDA)
    pcuda.G_CUDA = wrapper


def uninstall() -> None:
    from polygraphy.cuda import cuda as pcuda

    pcuda.G_CUDA = _SAVED.pop() if _SAVED else None


__all__ = ["FakeCudart", "install", "uninstall", "ALIGNMENT"]
