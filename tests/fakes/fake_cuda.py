"""A stand-in for :class:`edgekit.deploy.runners.tensorrt.CudaMemory` backed by host memory.

"Device" pointers are real addresses of numpy buffers, so copies are real ``memmove``s and the fake
TensorRT engine reads its inputs and writes its outputs through the very addresses the code under
test handed it. Every call is recorded; freeing twice or freeing an unknown pointer fails.
"""

from __future__ import annotations

import ctypes
from typing import Dict, List, Tuple

import numpy as np


class HostCudaMemory:
    def __init__(self, device: Tuple[str, str] = ("Fake Xavier", "sm_72")) -> None:
        self.device = device
        self.calls: List[tuple] = []
        self.live: Dict[int, np.ndarray] = {}
        self.streams: Dict[int, bool] = {}
        self._next_stream = 1000

    # --- the CudaMemory interface ---
    def malloc(self, nbytes: int) -> int:
        buf = np.zeros(max(1, nbytes), np.uint8)
        ptr = buf.ctypes.data
        self.live[ptr] = buf
        self.calls.append(("malloc", nbytes))
        return ptr

    def free(self, ptr: int) -> None:
        assert ptr in self.live, f"free of unknown or already freed pointer {ptr:#x}"
        del self.live[ptr]
        self.calls.append(("free", ptr))

    def create_stream(self) -> int:
        self._next_stream += 1
        self.streams[self._next_stream] = True
        self.calls.append(("create_stream", self._next_stream))
        return self._next_stream

    def destroy_stream(self, stream: int) -> None:
        assert self.streams.pop(stream, None), f"destroy of unknown stream {stream}"
        self.calls.append(("destroy_stream", stream))

    def synchronize(self, stream: int) -> None:
        assert stream in self.streams, f"synchronize on unknown stream {stream}"
        self.calls.append(("synchronize", stream))

    def htod(self, ptr: int, host: np.ndarray, stream: int) -> None:
        self._check_range(ptr, host.nbytes)
        assert host.flags.c_contiguous
        ctypes.memmove(ptr, host.ctypes.data, host.nbytes)
        self.calls.append(("htod", ptr, host.nbytes))

    def dtoh(self, host: np.ndarray, ptr: int, stream: int) -> None:
        self._check_range(ptr, host.nbytes)
        ctypes.memmove(host.ctypes.data, ptr, host.nbytes)
        self.calls.append(("dtoh", ptr, host.nbytes))

    def device_info(self) -> Tuple[str, str]:
        return self.device

    # --- what the fake TensorRT engine uses to touch "device" memory ---
    def read(self, ptr: int, nbytes: int) -> bytes:
        self._check_range(ptr, nbytes)
        return ctypes.string_at(ptr, nbytes)

    def write(self, ptr: int, data: bytes) -> None:
        self._check_range(ptr, len(data))
        ctypes.memmove(ptr, data, len(data))

    def _check_range(self, ptr: int, nbytes: int) -> None:
        for base, buf in self.live.items():
            if base <= ptr and ptr + nbytes <= base + buf.nbytes:
                return
        raise AssertionError(f"access of {nbytes} bytes at {ptr:#x} outside any live allocation")
