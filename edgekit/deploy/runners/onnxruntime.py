"""ONNX Runtime backend for the runner contract (CPU by default; CUDA/TensorRT providers if asked)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, Optional, Sequence, Union

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
    """Runs an ONNX file (or serialized bytes) with ``onnxruntime.InferenceSession``."""

    backend = "onnxruntime"

    def __init__(self, model: Union[str, os.PathLike[str], bytes], providers: Optional[Sequence[str]] = None,
                 intra_op_threads: Optional[int] = None, name: Optional[str] = None) -> None:
        super().__init__(name or (Path(model).name if not isinstance(model, bytes) else "onnxruntime"))
        self.model = model
        self.providers = list(providers) if providers else ["CPUExecutionProvider"]
        self.intra_op_threads = intra_op_threads
        self.session = None
        self.output_names: Sequence[str] = ()

    def _activate(self) -> Dict[str, TensorMeta]:
        try:
            import onnxruntime as ort  # lazy: the device may run TensorRT only
        except ImportError:
            raise DeviceError("onnxruntime is not installed", "pip install onnxruntime (or edgekit[serve])") from None
        if not isinstance(self.model, bytes) and not Path(self.model).is_file():
            raise ModelError(f"ONNX model {self.model} does not exist", "pass the path of an exported .onnx file")
        opts = ort.SessionOptions()
        if self.intra_op_threads:
            opts.intra_op_num_threads = int(self.intra_op_threads)
        source = self.model if isinstance(self.model, bytes) else str(self.model)
        try:
            self.session = ort.InferenceSession(source, sess_options=opts, providers=self.providers)
        except Exception as e:  # ORT raises its own exception types for corrupt or unsupported models
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ModelError(f"onnxruntime cannot load {self.name}: {first}",
                             "re-export the model (edgekit export) or check the onnxruntime version") from None
        self.output_names = [o.name for o in self.session.get_outputs()]
        return {i.name: TensorMeta(i.name, tuple(_dim(d) for d in i.shape), np.dtype(_ORT_DTYPES.get(i.type, np.float32)))
                for i in self.session.get_inputs()}

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        outputs = self.session.run(list(self.output_names), feed)
        return dict(zip(self.output_names, outputs))

    def _deactivate(self) -> None:
        self.session = None


def _dim(d) -> object:
    """ORT gives ints for static axes and strings/None for dynamic ones; keep that distinction."""
    return int(d) if isinstance(d, int) and d >= 0 else (d if isinstance(d, str) else None)


__all__ = ["OnnxRuntimeRunner"]
