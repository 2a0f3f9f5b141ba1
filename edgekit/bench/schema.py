"""``bench.json``: the versioned result of one ``edgekit bench`` run (pydantic models).

``schema_version`` says how to read a file; :func:`load_report` refuses an unknown version with one
line. A field is only ever added with a default within one version; anything else bumps it.
Times are milliseconds (``*_ms``), rates frames per second, timestamps Unix seconds (UTC).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from pydantic import BaseModel, ConfigDict, ValidationError

from edgekit.core.errors import ConfigError

from .stats import LatencyStats

SCHEMA_VERSION = 1
PathLike = Union[str, "os.PathLike[str]"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class BundleInfo(_Model):
    path: str
    task: str
    model_role: str  # the bundle model that ran (fp32 | int8_qdq)
    model_file: str
    onnx_sha256: str  # of that model file (manifest): compare refuses different models
    imgsz: List[int]
    classes: List[str]
    target: Optional[str] = None


class SourceInfo(_Model):
    kind: str  # synthetic | video | images | frames (in memory, run_bench(frames=...))
    path: Optional[str] = None


class RunSettings(_Model):
    backend: str
    device: str
    precision: str
    batch: int
    iterations: Optional[int] = None
    duration_s: Optional[float] = None
    queue_size: int = 2
    uint8_input: bool = False
    pipeline_sessions: int = 0  # onnxruntime worker sessions of the pipelined run (0: the one session)
    source: SourceInfo
    data: Optional[str] = None


class WarmupInfo(_Model):
    iterations: int
    seconds: float
    steady: bool
    rule: str  # the steady-state rule in words, with its window and tolerance
    last_window_median_ms: Optional[float] = None


class PhaseWindow(_Model):
    """The wall-clock window of a timed phase (what power sampling integrates over)."""

    frames: int
    start_unix: float
    end_unix: float
    seconds: float


class Latency(_Model):
    compute: LatencyStats  # the backend's own time (Runner.last_inference_time)
    host: LatencyStats  # Detector.infer wall time: input checks + copies + compute
    end_to_end: LatencyStats  # read + preprocess + infer + decode
    stages: Dict[str, LatencyStats]  # read, preprocess, decode


class Throughput(_Model):
    sequential_fps: float
    pipelined_fps: float
    pipelined_latency: LatencyStats  # per-frame latency under pipelining (queues add waiting)
    sequential: PhaseWindow
    pipelined: PhaseWindow


class BatchResult(_Model):
    batch: int
    compute: LatencyStats  # per batch
    host: LatencyStats  # per batch
    images_per_s: float


class ParityResult(_Model):
    status: str  # passed | failed | skipped
    note: Optional[str] = None
    n_images: Optional[int] = None
    max_abs: Optional[float] = None
    match_rate: Optional[float] = None
    report: Optional[Dict[str, Any]] = None  # edgekit.core.parity's report, without per-image entries


class AccuracyResult(_Model):
    data: str
    n_images: int
    map50: float
    map50_95: float
    conf: float
    reference: Optional[Dict[str, Any]] = None  # the host's FP32 ONNX figure: {source, map50, map50_95, n_images}
    map50_delta_points: Optional[float] = None  # (this run - reference) x 100


class Timeline(_Model):
    """Per-frame series of the sequential phase (plots, power alignment)."""

    start_s: List[float]
    end_to_end_ms: List[float]
    host_ms: List[float]
    compute_ms: List[Optional[float]]


class BenchReport(_Model):
    schema_version: int = SCHEMA_VERSION
    edgekit_version: str
    created_utc: str
    bundle: BundleInfo
    settings: RunSettings
    warmup: WarmupInfo
    latency: Latency
    throughput: Throughput
    batch: Optional[BatchResult] = None
    parity: ParityResult
    accuracy: Optional[AccuracyResult] = None
    environment: Dict[str, Any]
    timeline: Timeline
    power: Optional[Dict[str, Any]] = None  # filled by the remote (Jetson) path: rails, energy per frame
    notes: List[str] = []

    def write(self, path: PathLike) -> Path:
        from edgekit.core.atomic import write_text_atomic

        return write_text_atomic(path, self.model_dump_json(indent=2) + "\n")


def load_report(path: PathLike) -> BenchReport:
    """Read a ``bench.json``; one-line errors for a missing, unparsable, foreign or newer file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"bench result {path} does not exist", "pass a bench.json written by edgekit bench")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"cannot read bench result {path}: {e}", "pass a bench.json written by edgekit bench") from None
    if not isinstance(data, dict) or "schema_version" not in data:
        raise ConfigError(f"{path} is not a bench result (no schema_version)", "pass a bench.json written by edgekit bench")
    if data["schema_version"] != SCHEMA_VERSION:
        raise ConfigError(f"{path} has bench schema v{data['schema_version']}; this edgekit reads v{SCHEMA_VERSION}",
                          "re-run edgekit bench with this edgekit version")
    try:
        return BenchReport.model_validate(data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(x) for x in first["loc"])
        raise ConfigError(f"{path}: invalid bench result at '{where}': {first['msg']}",
                          "pass an unmodified bench.json written by edgekit bench") from None


__all__ = ["SCHEMA_VERSION", "BenchReport", "BundleInfo", "SourceInfo", "RunSettings", "WarmupInfo", "PhaseWindow",
           "Latency", "Throughput", "BatchResult", "ParityResult", "AccuracyResult", "Timeline", "load_report"]
