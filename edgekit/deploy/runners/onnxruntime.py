"""ONNX Runtime backend for the runner contract (CPU by default; CUDA/TensorRT providers if asked)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import numpy as np

from edgekit.core.errors import DeviceError, ModelError

from .base import Runner, TensorMeta

# ORT reports element types as strings; only the ones an exported detector can have are listed.
_ORT_DTYPES = {
    "tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64,
    "tensor(int8)": np.int8, "tensor(uint8)": np.uint8, "tensor(int32)": np.int32,
    "tensor(int64)": np.int64, "tensor(bool)": np.bool_,
}


class OnnxRuntimeRunner(Runner):
    """Runs an ONNX file (or serialized bytes) with ``onnxruntime.InferenceSession``.

    ``pipeline_sessions=N`` (N >= 2) adds N single-threaded sessions of the same model that
    :meth:`submit` runs on, N frames at once, each in its own worker thread; ``infer`` keeps the
    main, multi-threaded session. One frame at a time, intra-op threads are the only parallelism
    there is; a stream of frames is better served by whole frames in parallel: intra-op threads
    synchronise at every op, and on a small CPU their spin-waiting takes the cores the pipeline's own
    prepare and decode threads need.
    """

    backend = "onnxruntime"

    def __init__(self, model: Union[str, os.PathLike[str], bytes], providers: Optional[Sequence[str]] = None,
                 intra_op_threads: Optional[int] = None, name: Optional[str] = None,
                 pipeline_sessions: int = 0) -> None:
        super().__init__(name or (Path(model).name if not isinstance(model, bytes) else "onnxruntime"))
        self.model = model
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.intra_op_threads = intra_op_threads
        self.pipeline_sessions = int(pipeline_sessions)
        self.session = None
        self.output_names: Sequence[str] = ()
        self._workers: List[Any] = []
        self._pool: Any = None
        self._submitted = 0
        self._pending: set = set()  # futures submitted and not collected

    @property
    def max_in_flight(self) -> Optional[int]:  # type: ignore[override]
        return len(self._workers) or None

    def _activate(self) -> Dict[str, TensorMeta]:
        try:
            import onnxruntime as ort  # lazy: the device may run TensorRT only
        except ImportError:
            raise DeviceError("onnxruntime is not installed", "pip install onnxruntime (or edgekit[serve])") from None
        if not isinstance(self.model, bytes) and not Path(self.model).is_file():
            raise ModelError(f"ONNX model {self.model} does not exist", "pass the path of an exported .onnx file")
        self.session = self._session(ort, self.intra_op_threads)
        if self.pipeline_sessions >= 2:
            from concurrent.futures import ThreadPoolExecutor

            self._workers = [self._session(ort, 1) for _ in range(self.pipeline_sessions)]
            self._pool = ThreadPoolExecutor(self.pipeline_sessions, thread_name_prefix="edgekit-ort")
        self.output_names = [o.name for o in self.session.get_outputs()]
        return {i.name: TensorMeta(i.name, tuple(_dim(d) for d in i.shape), np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()}

    def _session(self, ort: Any, threads: Optional[int]) -> Any:
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        source = self.model if isinstance(self.model, bytes) else str(self.model)
        try:
            return ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        except Exception as e:  # ORT raises its own exception types for corrupt or unsupported models
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"onnxruntime cannot load {self.name}: {first}",
                             "re-export the model (edgekit export) or check the onnxruntime version") from None

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outputs = self.session.run(list(self.output_names), feed)
        return dict(zip(self.output_names, outputs))

    def _submit(self, feed: Dict[str, np.ndarray]) -> object:
        if not self._workers:
            return self._infer(feed)
        session = self._workers[self._submitted % len(self._workers)]
        self._submitted += 1
        future = self._pool.submit(session.run, list(self.output_names), feed)  # ORT releases the GIL in run
        self._pending.add(future)
        return future

    def _collect(self, handle: object) -> Dict[str, np.ndarray]:
        if isinstance(handle, dict):
            return handle
        self._pending.discard(handle)
        return dict(zip(self.output_names, handle.result()))  # type: ignore[attr-defined]

    def _discard_pending(self) -> None:
        from concurrent.futures import wait

        wait(list(self._pending))  # frames still running keep their session busy until they end
        self._pending.clear()

    def _deactivate(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self._pool, self._workers = None, []
        self.session = None


def _dim(d) -> object:
    """ORT gives ints for static axes and strings/None for dynamic ones; keep that distinction."""
    return int(d) if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) else None)


__all__ = ["OnnxRuntimeRunner"]
