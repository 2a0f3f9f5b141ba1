"""``run_bench``: one benchmark of a bundle on this machine, as a :class:`~edgekit.bench.schema.BenchReport`.

Order of work: check everything the user gave (settings, bundle, frame source, dataset) before any
model loads; then warm up until steady, time the sequential phase, time the pipelined phase over
as many frames, optionally a batched compute phase, check parity against the bundle's golden set,
score mAP when a dataset is given, and record the environment.
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
from pydantic import Field, model_validator

from edgekit.core.config import StrictModel, build_config
from edgekit.core.errors import ConfigError, DataError, EdgekitError

from . import measure
from .frames import cycle, frame_source
from .progress import progress_bar
from .schema import (
    AccuracyResult,
    BatchResult,
    BenchReport,
    BundleInfo,
    Latency,
    ParityResult,
    PhaseWindow,
    RunSettings,
    SourceInfo,
    Throughput,
    Timeline,
    WarmupInfo,
)
from .stats import WarmupPolicy, summarize

PathLike = Union[str, "os.PathLike[str]"]
_ROLE = {"int8": "int8_qdq"}  # the bundle model onnxruntime runs per precision (TensorRT builds from fp32)


class BenchSettings(StrictModel):
    """What to measure. ``iterations`` and ``duration_s`` are exclusive (neither: 100 iterations)."""

    backend: str = "onnxruntime"
    device: str = "cpu"
    precision: str = "fp32"
    warmup: int = Field(10, ge=0)  # minimum warm-up iterations (then until steady)
    warmup_s: float = Field(0.0, ge=0)  # minimum warm-up seconds (then until steady)
    steady_window: int = Field(10, ge=2)
    steady_tolerance: float = Field(0.05, gt=0)
    max_warmup: int = Field(300, ge=1)
    iterations: Optional[int] = Field(None, ge=1)
    duration_s: Optional[float] = Field(None, gt=0)
    batch: int = Field(1, ge=1)
    video: Optional[str] = None
    images: Optional[str] = None
    data: Optional[str] = None
    queue_size: int = Field(2, ge=1)
    parity: bool = True
    intra_op_threads: Optional[int] = Field(None, ge=1)
    uint8_input: bool = False  # onnxruntime: the graph variant that normalises uint8 frames itself
    # onnxruntime: N single-threaded sessions run whole frames in parallel in the pipelined run (docs/runtime.md)
    pipeline_sessions: int = Field(0, ge=0)
    tile: Optional[int] = Field(None, ge=0)  # sliced inference (edgekit.deploy.tiling); None: the bundle's plan; 0: off
    tile_overlap: Optional[int] = Field(None, ge=0)

    @model_validator(mode="after")
    def _choices(self) -> BenchSettings:
        choices = {"backend": ("onnxruntime", "tensorrt", "torch"), "device": ("cpu", "cuda", "jetson"),
                   "precision": ("fp32", "fp16", "int8")}
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                raise ValueError(f"{key} must be one of {', '.join(allowed)}")
        if self.iterations is not None and self.duration_s is not None:
            raise ValueError("give iterations or duration_s, not both")
        if self.tile and self.batch > 1:
            raise ValueError("tile runs a frame's tiles as its batch; give tile or batch > 1, not both")
        if self.pipeline_sessions == 1:
            raise ValueError("pipeline_sessions 1 adds nothing to the main session: give 0 (off) or 2 and more")
        return self

    @property
    def timed_iterations(self) -> Optional[int]:
        return self.iterations if self.iterations is not None or self.duration_s is not None else 100

    def cli_args(self, paths: Optional[Dict[str, str]] = None) -> List[str]:
        """``edgekit bench run BUNDLE`` options that reproduce these settings on another machine.

        ``--device jetson`` becomes the device's own ``cuda`` (TensorRT) or ``cpu`` there; ``paths``
        maps ``video``/``images``/``data`` to where those files live on that machine.
        """
        paths = paths or {}
        device = self.device if self.device != "jetson" else ("cuda" if self.backend == "tensorrt" else "cpu")
        args = ["--backend", self.backend, "--device", device, "--precision", self.precision,
                "--warmup", str(self.warmup), "--warmup-s", repr(self.warmup_s), "--batch", str(self.batch)]
        if self.duration_s is not None:
            args += ["--duration", repr(self.duration_s)]
        else:
            args += ["--iterations", str(self.timed_iterations)]
        for key in ("video", "images", "data"):
            value = paths.get(key, getattr(self, key))
            if value is not None:
                args += [f"--{key}", str(value)]
        args += [flag for flag, on in (("--no-parity", not self.parity), ("--uint8-input", self.uint8_input)) if on]
        for flag, value in (("--tile", self.tile), ("--tile-overlap", self.tile_overlap)):
            args += [flag, str(value)] if value is not None else []
        return args + (["--pipeline-sessions", str(self.pipeline_sessions)] if self.pipeline_sessions else [])

    def policy(self) -> WarmupPolicy:
        return WarmupPolicy(self.warmup, self.warmup_s, self.steady_window, self.steady_tolerance, self.max_warmup)


def _utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _runner_options(s: BenchSettings) -> Dict[str, Any]:
    if s.backend == "onnxruntime":
        opts: Dict[str, Any] = {"intra_op_threads": s.intra_op_threads} if s.intra_op_threads else {}
        if s.device == "cuda":
            opts["providers"] = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if s.uint8_input:
            opts["uint8_input"] = True
        if s.pipeline_sessions:
            opts["pipeline_sessions"] = s.pipeline_sessions
        return opts
    if s.uint8_input:
        raise ConfigError(f"--uint8-input is an onnxruntime option, not {s.backend}", "drop --uint8-input")
    if s.pipeline_sessions:
        raise ConfigError(f"--pipeline-sessions is an onnxruntime option, not {s.backend}", "drop --pipeline-sessions")
    if s.backend == "tensorrt" and s.device == "cpu":
        raise ConfigError("--backend tensorrt runs on a GPU, not --device cpu", "pass --device cuda (or jetson)")
    return {}


def _bundle_info(bundle: Any, s: BenchSettings) -> BundleInfo:
    role = _ROLE.get(s.precision, "fp32") if s.backend == "onnxruntime" else "fp32"
    entry = bundle.model(role)
    sha = bundle.manifest.files[entry.file].sha256 if entry.file in bundle.manifest.files else ""
    return BundleInfo(path=str(bundle.root), task=bundle.task, model_role=role, model_file=entry.file,
                      onnx_sha256=sha, imgsz=list(bundle.manifest.preprocess.imgsz), classes=bundle.classes,
                      target=bundle.manifest.target)


def run_bench(bundle: Any, settings: Optional[Union[BenchSettings, Dict[str, Any]]] = None,
              progress: bool = True, runner_options: Optional[Dict[str, Any]] = None,
              frames: Optional[Sequence[np.ndarray]] = None) -> BenchReport:
    """Benchmark ``bundle`` (a path or an open :class:`~edgekit.deploy.bundle.Bundle`) on this machine.

    ``frames``: in-memory BGR frames to cycle instead of ``settings.video/images`` or synthetic ones.

    >>> report = run_bench("runs/demo/bundle", {"iterations": 50})  # doctest: +SKIP
    >>> report.latency.end_to_end.p50_ms  # doctest: +SKIP
    """
    from edgekit import __version__
    from edgekit.deploy.bundle import Bundle

    s = settings if isinstance(settings, BenchSettings) else build_config(BenchSettings, settings or {}, "bench settings")
    if s.device == "jetson":
        raise ConfigError("run_bench measures this machine; --device jetson runs it on the device",
                          "use edgekit bench BUNDLE --device jetson --host user@addr")
    options = dict(_runner_options(s), **(runner_options or {}))
    if not isinstance(bundle, Bundle):
        bundle = Bundle.open(bundle)
    if frames is not None:
        if s.video is not None or s.images is not None or not len(frames):
            raise ConfigError("pass frames, or settings video/images, not both (and at least one frame)")
        held = list(frames)
        kind, source_path, factory = "frames", None, (lambda: iter(held))
    else:
        kind, source_path, factory = frame_source(s.video, s.images, tuple(bundle.manifest.preprocess.imgsz))
    if s.data is not None:
        _check_dataset(Path(s.data), bundle)
    notes: List[str] = []
    detector = bundle.detector(s.backend, s.precision, tile=s.tile, tile_overlap=s.tile_overlap, **options)
    if hasattr(detector, "tile"):  # sliced inference: the figures are per frame, over all its tiles
        notes.append(f"sliced inference: {detector.tile}-px tiles, {detector.overlap}-px overlap; compute is the sum "
                     "over a frame's tiles")
    with detector:
        if s.batch > 1:
            _check_batch(detector, next(cycle(factory)), s.batch)
        stream = cycle(factory)
        warm = _warm_up(detector, stream, s, progress)
        seq = _timed(detector, stream, s, progress)
        pipe = _pipelined(detector, cycle(factory, seq.frames), s, progress)
        batch = _batched(detector, next(cycle(factory)), s, notes) if s.batch > 1 else None
        parity = _parity(bundle, detector, s) if s.parity else ParityResult(status="skipped", note="--no-parity")
        accuracy = _accuracy(bundle, detector, s, options, progress, notes) if s.data else None
        engine_key = _engine_key(detector.runner)
    from .environment import collect_environment

    if not warm.steady:
        notes.append(f"warm-up reached no steady state in {len(warm.samples)} iterations; numbers include drift")
    if seq.frames == 0:
        raise DataError(f"frame source {source_path or kind} yielded no frames", "pass a source that holds frames")
    return BenchReport(
        edgekit_version=__version__, created_utc=_utc_now(), bundle=_bundle_info(bundle, s),
        settings=RunSettings(backend=s.backend, device=s.device, precision=s.precision, batch=s.batch,
                             iterations=s.timed_iterations, duration_s=s.duration_s, queue_size=s.queue_size,
                             uint8_input=s.uint8_input, pipeline_sessions=s.pipeline_sessions,
                             source=SourceInfo(kind=kind, path=source_path), data=s.data),
        warmup=_warmup_info(warm, s), latency=_latency(seq), throughput=_throughput(seq, pipe), batch=batch,
        parity=parity, accuracy=accuracy, environment=collect_environment(engine_key),
        timeline=Timeline(start_s=[t.start_s for t in seq.timings], end_to_end_ms=[1e3 * t.e2e_s for t in seq.timings],
                          host_ms=[1e3 * t.host_s for t in seq.timings],
                          compute_ms=[None if t.compute_s is None else 1e3 * t.compute_s for t in seq.timings]),
        notes=notes)


# ---- phases ---------------------------------------------------------------------------------------
def _warm_up(detector: Any, frames: Any, s: BenchSettings, progress: bool) -> Any:
    with progress_bar("warm-up", None, progress) as bar:
        return measure.warm_up(detector, frames, s.policy(), on_frame=bar.update)


def _timed(detector: Any, frames: Any, s: BenchSettings, progress: bool) -> measure.Series:
    with progress_bar("sequential", s.timed_iterations, progress) as bar:
        return measure.run_sequential(detector, frames, s.timed_iterations, s.duration_s, on_frame=bar.update)


def _pipelined(detector: Any, frames: Any, s: BenchSettings, progress: bool) -> measure.Series:
    with progress_bar("pipelined", None, progress) as bar:
        return measure.run_pipelined(detector, frames, s.queue_size, on_frame=bar.update)


def _check_batch(detector: Any, frame: np.ndarray, batch: int) -> None:
    feed, _ = detector.prepare(frame)
    meta = detector.runner.input_metadata()[next(iter(feed))]
    if not meta.is_dynamic(0) and meta.shape[0] != batch:
        raise ConfigError(f"--batch {batch}: the bundle's model has a static batch of {meta.shape[0]}",
                          "re-export with --dynamic (and a batch profile for TensorRT), or use --batch 1")


def _batched(detector: Any, frame: np.ndarray, s: BenchSettings, notes: List[str]) -> Optional[BatchResult]:
    """Compute/host latency of a batch of ``s.batch`` letterboxed frames (needs a dynamic-batch model)."""
    feed, _ = detector.prepare(frame)
    name = next(iter(feed))
    batched = {name: np.ascontiguousarray(np.repeat(feed[name], s.batch, axis=0))}
    n = s.timed_iterations or 50
    result = measure.measure_batch(detector.runner, batched, n)
    host_mean = result["host"].mean_ms or 0.0
    notes.append("batch figures time the runner alone on identical letterboxed frames (no read/pre/postprocess)")
    return BatchResult(batch=s.batch, compute=result["compute"], host=result["host"],
                       images_per_s=1000.0 * s.batch / host_mean if host_mean else 0.0)


def _parity(bundle: Any, detector: Any, s: BenchSettings) -> ParityResult:
    """The bundle's golden feeds through this (active) runner vs the host's reference outputs.

    ``Bundle.check_golden``, the check of ``edgekit bundle check``, on the runner bench already has, so no
    second engine or session loads.
    """
    from edgekit.core.parity import failure_line

    if bundle.manifest.golden is None:
        return ParityResult(status="skipped", note="the bundle has no golden set (re-export it)")
    if s.uint8_input:
        return ParityResult(status="skipped", note="golden feeds are float tensors; run without --uint8-input")
    try:
        graphs = getattr(detector, "golden_runners", None)  # RefDet: its encoder is checked too, at its own precision
        if graphs is not None:
            from edgekit.deploy.bundle import encoder_precision

            report = bundle.check_golden_graphs({role: (runner, s.precision if role == "fp32" else
                                                        encoder_precision(s.backend, bundle.model(role)))
                                                 for role, runner in graphs().items()})
        else:
            report = bundle.check_golden(detector.runner, s.precision)
    except EdgekitError as e:
        return ParityResult(status="skipped", note=e.format())
    summary = {k: v for k, v in report.items() if k != "images"}
    det = report.get("detections") or {}
    return ParityResult(status="passed" if report["passed"] else "failed",
                        note=None if report["passed"] else failure_line(report),
                        n_images=report.get("n_images"), max_abs=report.get("raw", {}).get("max_abs"),
                        match_rate=det.get("match_rate"), report=json.loads(json.dumps(summary, default=float)))


def _check_dataset(data: Path, bundle: Any) -> None:
    from .accuracy import read_val_split

    names, _ = read_val_split(data)
    if len(names) != len(bundle.classes):
        raise DataError(f"--data {data} has {len(names)} classes but the bundle has {len(bundle.classes)}",
                        "pass the dataset the bundle was trained on")


def _accuracy(bundle: Any, detector: Any, s: BenchSettings, options: Dict[str, Any], progress: bool,
              notes: List[str]) -> AccuracyResult:
    from .accuracy import evaluate_detector

    with progress_bar("mAP", None, progress) as bar:
        got = evaluate_detector(detector, Path(s.data), on_image=bar.update)
    reference, why = _reference_map(bundle, s, progress)
    if why:
        notes.append(why)
    delta = None if reference is None else 100.0 * (got["map50"] - reference["map50"])
    return AccuracyResult(data=str(s.data), n_images=got["n_images"], map50=got["map50"], map50_95=got["map50_95"],
                          conf=got["conf"], reference=reference, map50_delta_points=delta)


def _reference_map(bundle: Any, s: BenchSettings, progress: bool) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """The FP32 ONNX model's mAP on the same data: this run itself, ORT here, or the export report."""
    from .accuracy import evaluate_detector

    if (s.backend, s.precision) == ("onnxruntime", "fp32"):
        return None, None  # this run is the FP32 ONNX reference
    try:
        import onnxruntime  # noqa: F401 - only whether it is importable
    except ImportError:
        return _export_report_map(bundle)
    with bundle.detector("onnxruntime", "fp32") as ref, progress_bar("mAP (FP32 ONNX reference)", None, progress) as bar:
        got = evaluate_detector(ref, Path(s.data), on_image=bar.update)
    return {"source": "onnxruntime fp32 on this machine", "map50": got["map50"], "map50_95": got["map50_95"],
            "n_images": got["n_images"]}, None


def _export_report_map(bundle: Any) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    path = bundle.root / "export_report.json"
    try:
        fp32 = json.loads(path.read_text(encoding="utf-8"))["int8"]["fp32"]
        return {"source": f"{path.name} (host, export time; its own val set)", "map50": float(fp32["map50"]),
                "map50_95": float(fp32["map50_95"]), "n_images": int(fp32["n_images"])}, None
    except (OSError, ValueError, KeyError, TypeError):
        return None, "no FP32 ONNX mAP reference: onnxruntime is not installed here and the export report has none"


def _engine_key(runner: Any) -> Optional[str]:
    """The TensorRT plan's key (its sidecar's, else the plan file name); None for other backends."""
    key = getattr(getattr(runner, "sidecar", None), "key", None)
    if isinstance(key, str):
        return key
    plan = getattr(runner, "plan_path", None)
    return Path(plan).stem if plan else None


# ---- report parts ---------------------------------------------------------------------------------
def _warmup_info(tracker: Any, s: BenchSettings) -> WarmupInfo:
    samples = tracker.samples
    median = float(np.median(samples[-s.steady_window:])) * 1e3 if samples else None
    rule = (f"at least {s.warmup} iterations and {s.warmup_s:g} s, then until the median end-to-end time of the "
            f"last {s.steady_window} frames is within {100 * s.steady_tolerance:g}% of the {s.steady_window} before "
            f"(at most {s.max_warmup} more)")
    return WarmupInfo(iterations=len(samples), seconds=tracker.elapsed_s, steady=bool(tracker.steady), rule=rule,
                      last_window_median_ms=median)


def _latency(seq: measure.Series) -> Latency:
    st = seq.stats()
    return Latency(compute=st["compute"], host=st["host"], end_to_end=st["end_to_end"],
                   stages={k: st[k] for k in ("read", "preprocess", "decode")})


def _window(series: measure.Series) -> PhaseWindow:
    return PhaseWindow(frames=series.frames, start_unix=series.start_unix, end_unix=series.end_unix,
                       seconds=series.wall_s)


def _throughput(seq: measure.Series, pipe: measure.Series) -> Throughput:
    return Throughput(sequential_fps=seq.fps, pipelined_fps=pipe.fps,
                      pipelined_latency=summarize([t.e2e_s for t in pipe.timings]),
                      sequential=_window(seq), pipelined=_window(pipe))


__all__ = ["BenchSettings", "run_bench"]
