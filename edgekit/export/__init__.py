"""Export: ONNX export, IR pinning, verified simplification, parity gate, INT8 Q/DQ, deploy bundle.

Host-side (Python >= 3.10 fine): torch, ultralytics, onnx and onnxruntime are imported inside the
functions that need them, so importing this package stays cheap.
"""

from .adapters import ADAPTERS, ExportAdapter, GraphSpec, LoadedCheckpoint, get_adapter, register_adapter
from .options import ExportOptions, ExportResult, ParityTolerance
from .pipeline import export_model
from .refdet import RefDetAdapter

register_adapter("refdet", RefDetAdapter)

__all__ = ["ExportOptions", "ExportResult", "ParityTolerance", "export_model", "ExportAdapter", "GraphSpec",
           "LoadedCheckpoint", "ADAPTERS", "get_adapter", "register_adapter", "RefDetAdapter"]
