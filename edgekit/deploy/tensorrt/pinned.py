"""Page-locked (pinned) host buffers through Polygraphy's CUDA wrapper, for the TensorRT runner.

A copy between pageable host memory and the GPU goes through a driver staging buffer and is
synchronous with respect to the host; from pinned memory ``cudaMemcpyAsync`` is a real DMA on the
runner's stream. On the Jetson the frame crosses into pinned memory once per frame (the letterboxed
uint8 frame, or the float input) and the output comes back into pinned memory, so a frame costs
one host copy in, the H2D copy, the engine, the D2H copy and one stream synchronize, with no
allocation after the first frame of a shape.

``cudaMallocHost``/``cudaFreeHost`` are called on Polygraphy's ``libcudart`` handle (the same handle
``device.py`` queries); when pinning fails (no driver, or the fake libcudart of old tests) the buffer
is ordinary numpy memory and everything still works, only without the asynchronous copies.

Device side: Python 3.8; no import of CUDA or TensorRT at module level.
"""

from __future__ import annotations

import ctypes
import logging
from typing import Any, Optional, Tuple

import numpy as np

LOG = logging.getLogger("edgekit.deploy.tensorrt")


class PinnedBuffer:
    """A growable host buffer, page-locked when CUDA allows it; ``view(shape, dtype)`` is a numpy array on it."""

    def __init__(self, handle: Any) -> None:
        self._handle = handle  # Polygraphy's libcudart (cuda.wrapper().handle)
        self._ptr: Optional[int] = None
        self._fallback: Optional[np.ndarray] = None
        self.nbytes = 0
        self.pinned = False

    def view(self, shape: Tuple[int, ...], dtype: Any) -> np.ndarray:
        dtype = np.dtype(dtype)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if nbytes > self.nbytes:
            self._allocate(max(nbytes, 1))
        if self._ptr is not None:
            raw = (ctypes.c_uint8 * max(nbytes, 1)).from_address(self._ptr)
            return np.frombuffer(raw, np.uint8, nbytes).view(dtype).reshape(shape)
        assert self._fallback is not None
        return self._fallback[:nbytes].view(dtype).reshape(shape)

    def _allocate(self, nbytes: int) -> None:
        self.free()
        ptr = ctypes.c_void_p()
        try:
            status = self._handle.cudaMallocHost(ctypes.byref(ptr), ctypes.c_size_t(nbytes))
        except AttributeError:  # a libcudart without the symbol (test doubles)
            status = -1
        if status == 0 and ptr.value:
            self._ptr, self.pinned = int(ptr.value), True
        else:
            LOG.warning("cudaMallocHost(%d) failed (status %s): using pageable host memory", nbytes, status)
            self._fallback, self.pinned = np.empty(nbytes, np.uint8), False
        self.nbytes = nbytes

    def free(self) -> None:
        if self._ptr is not None:
            self._handle.cudaFreeHost(ctypes.c_void_p(self._ptr))
        self._ptr, self._fallback, self.nbytes, self.pinned = None, None, 0, False


__all__ = ["PinnedBuffer"]
