"""The main job on an embedded default: every stage, end to end, on data edgekit makes itself.

``run_demo`` chains the stages' public library functions — the same ones the CLI commands call —
so the demo exercises exactly what users run: synthesise an OBB dataset -> check it -> train the
distilled YOLOv8-OBB (random DINOv3 teacher: no weights exist offline) -> export ONNX + INT8 Q/DQ
+ calibration cache into a verified deploy bundle -> measure ONNX Runtime CPU latency of the FP32
and INT8 artifacts through the deploy Runner -> serve it briefly. Then the few-shot RefDet part
(:mod:`edgekit.demo_refdet`): synthesise drone videos -> train stage 2, then stage 3 -> eval on
targets never seen in training -> export the two-graph bundle -> bench it. Then a summary.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Tuple

from edgekit.core.errors import DataError
from edgekit.core.outdir import fs_error, owned_by, prepare_output, write_marker

WRITER = "demo"  # the --out marker's writer (edgekit.core.outdir)
RUN_ID = "demo"
# Small enough for 2 CPU cores; "standard" trains long enough for a meaningful mAP (the settings of
# benchmarks/synth_learnability.py, which reaches mAP50 0.8 in 6 epochs on this synthetic set).
PROFILES: Dict[str, Dict[str, Any]] = {
    "quick": {"n_train": 48, "n_val": 16, "imgsz": 128, "epochs": (1, 1), "batch": 8},
    "standard": {"n_train": 300, "n_val": 60, "imgsz": 192, "epochs": (2, 6), "batch": 8},
}
# Short from-scratch runs barely learn with Ultralytics' defaults: nbs=64 accumulates 8 batches of 8
# per optimizer step and warmup eats the first epochs (measured in benchmarks/synth_learnability.md).
SHORT_RUN_ULTRALYTICS = ["ultralytics.nbs={batch}", "ultralytics.warmup_epochs=0", "ultralytics.scale=0.25"]


@dataclass
class DemoSummary:
    """Per-stage rows (stage, seconds, result) plus the headline metrics."""

    rows: List[Tuple[str, float, str]] = field(default_factory=list)
    metrics: Dict[str, Any] = field(default_factory=dict)
    out_dir: Path = Path(".")

    def add(self, stage: str, seconds: float, result: str) -> None:
        self.rows.append((stage, seconds, result))

    def render(self) -> str:
        width = max(len(r[0]) for r in self.rows) if self.rows else 5
        lines = ["", "edgekit demo: results", "=" * 72]
        for stage, sec, result in self.rows:
            lines.append(f"{stage:<{width}}  {sec:7.1f}s  {result}")
        lines.append("-" * 72)
        key_w = max([len(k) for k in self.metrics] + [12]) + 1
        for key, value in self.metrics.items():
            lines.append(f"{key:<{key_w}} {value}")
        lines.append(f"{'summary file':<{key_w}} {self.out_dir / 'demo_summary.json'}")
        lines.append("int8_qdq is the TensorRT 8.5 artifact (symmetric int8 Q/DQ): ONNX Runtime runs it slower than FP32 on\n"
                     "x86 CPUs; its speed only means something on TensorRT (see benchmarks/results/int8_ort.md).")
        return "\n".join(lines)


def _stage(summary: DemoSummary, name: str):
    """Context-free timer: returns a callable that records the stage when given its result text."""
    start = time.perf_counter()

    def done(result: str) -> None:
        summary.add(name, time.perf_counter() - start, result)
        print(f"[{name}] {result}", flush=True)

    print(f"\n[{name}] ...", flush=True)
    return done


def run_demo(out_dir: Path, profile: str = "standard", seed: int = 0) -> DemoSummary:
    p = PROFILES[profile]
    out_dir = _prepare_out(out_dir)
    summary = DemoSummary(out_dir=out_dir)

    root = _synth(summary, out_dir, p, seed)
    _check(summary, root)
    run_dir = _train(summary, out_dir, root, p, seed)
    bundle = _export(summary, run_dir, seed)
    _latency(summary, bundle, root, out_dir)
    _serve(summary, bundle, root)

    from edgekit.demo_refdet import run_refdet_part

    run_refdet_part(summary, out_dir, profile, seed)

    from edgekit.core.atomic import write_json_atomic

    write_json_atomic(out_dir / "demo_summary.json", {
        "profile": profile, "seed": seed,
        "stages": [{"stage": s, "seconds": round(t, 2), "result": r} for s, t, r in summary.rows],
        "metrics": summary.metrics,
    })
    return summary


def _prepare_out(out_dir: Path) -> Path:
    """--out is new, empty or an earlier demo's (its marker): then the demo re-runs into it, replacing
    only what it wrote itself (the dataset replaces itself; the earlier run is removed here)."""
    from edgekit.train.run import WRITER as TRAIN_WRITER

    out_dir = prepare_output(out_dir, WRITER)  # one line before any work: a file, a foreign dir, ...
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not owned_by(out_dir, WRITER):
            write_marker(out_dir, WRITER)  # now, not at the end: a killed demo can be re-run
        from edgekit.demo_refdet import RUN_IDS as REFDET_RUN_IDS

        for run_id in (RUN_ID, *REFDET_RUN_IDS):
            old_run = out_dir / "runs" / run_id
            if old_run.is_dir() and owned_by(old_run, TRAIN_WRITER):  # the earlier demo's run, by its marker
                shutil.rmtree(str(old_run))
    except OSError as e:
        raise (fs_error(e, out_dir) or DataError(f"--out {out_dir} cannot be written: {e.strerror}",
                                                 "pass --out a writable directory")) from None
    return out_dir


def _synth(summary: DemoSummary, out_dir: Path, p: Dict[str, Any], seed: int) -> Path:
    from edgekit.data.synth.obb import generate_obb_dataset

    done = _stage(summary, "synth")
    root = generate_obb_dataset(out_dir / "data", n_train=p["n_train"], n_val=p["n_val"], imgsz=p["imgsz"],
                                seed=seed)
    done(f"{p['n_train']} train / {p['n_val']} val images at {p['imgsz']}px -> {root}")
    return root


def _check(summary: DemoSummary, root: Path) -> None:
    from edgekit.data.check import check_dataset

    done = _stage(summary, "check")
    report = check_dataset(root)
    if report.errors:
        for issue in report.errors[:10]:
            print(issue)
        raise DataError(f"the synthetic dataset at {root} failed its check", "this is a bug: please report it")
    done(report.summary())


def _train(summary: DemoSummary, out_dir: Path, root: Path, p: Dict[str, Any], seed: int) -> Path:
    from edgekit.train.obb.api import train_obb
    from edgekit.train.obb.config import load_train_config

    done = _stage(summary, "train")
    ep_a, ep_b = p["epochs"]
    cfg = load_train_config(None, [
        f"data={root}", f"imgsz={p['imgsz']}", f"batch={p['batch']}", "device=cpu", "workers=0",
        f"seed={seed}", "amp=false", f"project={out_dir / 'runs'}", "teacher.weights=random",
        "logging.wandb=disabled", "logging.signal_maps_every=1",
        "optimizer=SGD", f"stages.0.epochs={ep_a}", f"stages.1.epochs={ep_b}", "stages.0.lr0=0.01",
        "stages.1.lr0=0.01", *(o.format(batch=p["batch"]) for o in SHORT_RUN_ULTRALYTICS),
    ])
    result = train_obb(cfg, run_id=RUN_ID)
    m = result.final_metrics
    summary.metrics["val mAP50 (torch)"] = _fmt(m.get("metrics/mAP50(B)", m.get("map50")))
    done(f"stage A {ep_a} + stage B {ep_b} epochs -> {result.best}")
    return result.run_dir


def _export(summary: DemoSummary, run_dir: Path, seed: int) -> Path:
    from edgekit.export.options import ExportOptions
    from edgekit.export.pipeline import export_model

    done = _stage(summary, "export")
    res = export_model(ExportOptions(source=run_dir, int8=True, calib_method="minmax",
                                     target="jetson-xavier-nx", calib_min_images=8, seed=seed))
    acc = (res.report.get("int8") or {}).get("accuracy") or {}
    par = res.report.get("parity") or {}
    summary.metrics["ONNX parity (torch vs ORT)"] = (
        f"{'pass' if par.get('passed') else 'FAIL'}, raw max abs err {_fmt((par.get('raw') or {}).get('max_abs'))}")
    summary.metrics["FP32 mAP50 (ORT, polygon IoU)"] = _fmt((acc.get("fp32") or {}).get("map50"))
    summary.metrics["INT8 mAP50 (ORT, polygon IoU)"] = _fmt((acc.get("int8") or {}).get("map50"))
    summary.metrics["INT8 drop (mAP50 points)"] = _fmt(acc.get("map50_drop_points"))
    summary.metrics["TensorRT engine"] = (res.report.get("engine") or {}).get("note", "built") \
        if not (res.report.get("engine") or {}).get("built") else "built"
    done(f"bundle -> {res.bundle_dir}")
    return res.bundle_dir


def _serve(summary: DemoSummary, bundle: Path, root: Path, seconds: float = 3.0) -> None:
    """``edgekit serve`` on the bundle for a few seconds (val images, looped): what /metrics reported."""
    from edgekit.deploy.daemon import serve_briefly

    done = _stage(summary, "serve")
    m = serve_briefly(bundle, root / "images" / "val", seconds)
    n, e2e = m.get("edgekit_frames_total{stage=publish}", 0), m.get("edgekit_stage_latency_seconds_sum{stage=end_to_end}", 0)
    drops = sum(v for k, v in m.items() if k.startswith("edgekit_frames_dropped_total"))
    summary.metrics["serve /metrics"] = (f"{n:.0f} frames, {m.get('edgekit_fps', 0):.0f} FPS, mean latency "
                                         f"{1000 * e2e / max(n, 1):.1f} ms, dropped {drops:.0f}")
    done(f"{n:.0f} frames served in {seconds:.0f} s on 127.0.0.1 (edgekit serve, ONNX Runtime CPU)")


def _latency(summary: DemoSummary, bundle: Path, root: Path, out_dir: Path, n: int = 30) -> None:
    """``edgekit bench`` of each bundled model (ONNX Runtime CPU, batch 1) on the val images."""
    from edgekit.bench import run_bench, write_outputs
    from edgekit.deploy.bundle import Bundle

    done = _stage(summary, "bench")
    opened = Bundle.open(bundle)  # verified: schema, sha256 of every file, ONNX input vs letterbox
    results = []
    for role, precision in (("fp32", "fp32"), ("int8_qdq", "int8")):
        if not opened.has(role):
            continue
        r = run_bench(opened, {"precision": precision, "iterations": n, "images": str(root / "images" / "val")},
                      progress=False)
        write_outputs(r, out_dir / "bench" / precision)
        e2e = r.latency.end_to_end.p50_ms
        summary.metrics[f"ORT CPU p50 ms, {role}"] = (f"infer {r.latency.host.p50_ms:.2f}, end-to-end {e2e:.2f}, "
                                                     f"pipelined {r.throughput.pipelined_fps:.0f} FPS")
        results.append(f"{role} {e2e:.2f} ms")
        # Bench's golden check is the one a device runs on arrival (edgekit bundle check).
        summary.metrics[f"golden parity ({precision}, ORT)"] = f"{r.parity.status}, match rate {r.parity.match_rate}"
    done(", ".join(results) + f" end-to-end p50 over {n} frames (edgekit bench, ONNX Runtime CPU, batch 1; "
                              f"{out_dir / 'bench'})")


def _fmt(v: Any) -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:.4f}"
    return json.dumps(v) if isinstance(v, (dict, list)) else str(v)
