"""What the export steps share: the context they read and the typed results they return.

:mod:`edgekit.export.pipeline` builds an :class:`ExportContext`, runs the steps of
:mod:`edgekit.export.stages` in order and collects their results into :class:`ExportResults`;
``export_report.json`` is built from those at the end (:meth:`ExportResults.report`). The steps
import this module, never the pipeline, so the import graph has no circle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import numpy as np

from edgekit.core.atomic import write_json_atomic
from edgekit.core.postprocess import PostprocessSpec

from .adapters import ExportAdapter, GraphSpec, LoadedCheckpoint, detection_graph
from .options import ExportOptions
from .sources import ExportSource

Log = Callable[[str], None]
Feeds = List[Dict[str, np.ndarray]]


@dataclass
class ExportImages:
    """Real images the export uses: parity/golden feeds, calibration folder, labelled val split."""

    parity: List[Path]
    calib_dir: Optional[Path]
    val: List[Path] = field(default_factory=list)
    val_labels: List[Path] = field(default_factory=list)
    nc: int = 0


@dataclass
class ExportContext:
    """The inputs every step reads (nothing here is written by a step)."""

    options: ExportOptions
    source: ExportSource
    ckpt: LoadedCheckpoint
    adapter: ExportAdapter
    imgsz: int
    images: ExportImages
    post: PostprocessSpec
    log: Log

    def graphs(self) -> List[GraphSpec]:
        return self.adapter.graphs()

    def detection_graph(self) -> GraphSpec:
        """The graph whose outputs decode into detections (the one INT8, accuracy and engines are about)."""
        return detection_graph(self.adapter.graphs())


# ---- step results --------------------------------------------------------------------------------
@dataclass
class OnnxGraphResult:
    file: str
    exporter_ir_version: int
    opset: int
    simplify: Dict[str, Any]


@dataclass
class OnnxStageResult:
    opset: int
    ir_version: int
    runtime_max_ir: int
    dynamic: bool
    imgsz: int
    graphs: Dict[str, OnnxGraphResult] = field(default_factory=dict)  # by model role

    def report(self) -> Dict[str, Any]:
        return {"opset": self.opset, "ir_version": self.ir_version, "runtime_max_ir": self.runtime_max_ir,
                "dynamic": self.dynamic, "imgsz": self.imgsz,
                "graphs": {role: vars(g).copy() for role, g in self.graphs.items()}}


@dataclass
class ParityResult:
    """One graph's parity gate: the report (``onnx_parity.json``) and the golden feeds with FP32 outputs."""

    graph: GraphSpec
    report: Dict[str, Any]
    golden_feeds: Feeds
    fp32_outputs: Feeds
    golden_images: List[str]

    @property
    def passed(self) -> bool:
        return bool(self.report["passed"])

    def summary(self) -> Dict[str, Any]:
        """The report without its per-image entries (what export_report.json keeps)."""
        return {k: v for k, v in self.report.items() if k != "images"}


@dataclass
class Int8Result:
    file: str
    role: str  # the model role of the FP32 graph it quantizes
    method: str
    profile: str
    float_scope: str
    n_calib: int
    calib_dir: str
    calib_data_hash: str
    excluded_nodes: List[str]
    trt85_violations: int
    calibration_cache: str
    calibration_sidecar: str
    cache_method: str
    trt_algorithm: str
    trt_version: str
    accuracy: Dict[str, Any]
    golden_outputs: Feeds = field(default_factory=list, repr=False)

    def report(self) -> Dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k not in ("golden_outputs", "role")}


@dataclass
class GoldenResult:
    dir: str
    cases: int  # golden inputs per graph
    roles: List[str] = field(default_factory=list)


@dataclass
class EngineStageResult:
    built: bool
    note: str = ""
    precision: Optional[str] = None
    source: Optional[str] = None
    result: Any = None

    def report(self) -> Dict[str, Any]:
        if not self.built:
            return {"built": False, "note": self.note}
        return {"built": True, "precision": self.precision, "source": self.source, "result": self.result}


@dataclass
class ExportResults:
    """Every step's result; ``export_report.json`` is :meth:`report` plus provenance."""

    onnx: OnnxStageResult
    parity: Dict[str, ParityResult]  # by model role, in export order
    golden: GoldenResult
    engine: EngineStageResult
    int8: Optional[Int8Result] = None
    seconds: float = 0.0
    manifest_extras: Dict[str, Any] = field(default_factory=dict)  # task-specific manifest keys (RefDet: references)

    def primary_parity(self) -> ParityResult:
        """The detection graph's parity (the report's ``parity`` key, as for a one-graph export)."""
        return next((p for p in self.parity.values() if p.graph.detections), next(iter(self.parity.values())))

    def report(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"onnx": self.onnx.report(), "parity": self.primary_parity().summary()}
        if len(self.parity) > 1:
            out["parity_by_role"] = {role: p.summary() for role, p in self.parity.items()}
        if self.int8 is not None:
            out["int8"] = self.int8.report()
        out["golden"] = {"dir": self.golden.dir, "cases": self.golden.cases, "roles": self.golden.roles}
        out["engine"] = self.engine.report()
        out["seconds"] = self.seconds
        return out


def write_failed_parity(out: Path, parity: Dict[str, Any]) -> Path:
    """Keep the failing parity report beside where the bundle would have gone (the bundle is not kept)."""
    return write_json_atomic(out.with_name(f"{out.name}.onnx_parity.failed.json"), parity)


__all__ = ["ExportContext", "ExportImages", "Feeds", "Log", "OnnxGraphResult", "OnnxStageResult", "ParityResult",
           "Int8Result", "GoldenResult", "EngineStageResult", "ExportResults", "write_failed_parity"]
