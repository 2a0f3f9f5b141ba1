"""FP32 vs INT8 (Q/DQ) with ONNX Runtime on CPU: latency and val mAP50, per calibration method.

Exports the FP32 ONNX with :func:`edgekit.export.export_model` (parity-gated), then for each
calibration method (minmax, entropy, percentile) and each Q/DQ profile (``trt``: the TensorRT 8.5
artifact that ships in bundles; ``cpu``: U8S8, ONNX Runtime's CPU-fast form) quantizes with
:func:`edgekit.calib.qdq.quantize_qdq`, and measures every model side by side in one run: mAP50 /
mAP50-95 on the synthetic val split and single-image CPU latency (p50/mean over ``--runs``). With no
``--checkpoint`` it trains yolov8n-obb from scratch on a fresh synthetic set first. Writes JSON and a
Markdown table with the machine and library versions.

    python benchmarks/int8_ort.py --epochs 20 --imgsz 160 --n-train 120 --n-val 30 --note "CPU shared"
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "int8_ort.json"
METHODS = ("minmax", "entropy", "percentile")
PROFILES = ("trt", "cpu")


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", type=Path, default=None, help="Ultralytics OBB .pt (trains one if omitted)")
    p.add_argument("--data", type=Path, default=None, help="dataset root with data.yaml (default: a fresh synthetic set)")
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--imgsz", type=int, default=160)
    p.add_argument("--n-train", type=int, default=120)
    p.add_argument("--n-val", type=int, default=30)
    p.add_argument("--calib-size", type=int, default=32)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--profiles", nargs="+", default=list(PROFILES), choices=PROFILES)
    p.add_argument("--float-scopes", nargs="+", default=["head", "decode"], choices=["head", "decode"],
                   help="what stays float in the Q/DQ model (edgekit's default: head)")
    p.add_argument("--runs", type=int, default=50, help="timed single-image inferences per model")
    p.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = ORT default)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT)
    p.add_argument("--note", default="")
    return p.parse_args(argv)


def machine_facts() -> Dict[str, Any]:
    from edgekit.export.bundle import versions

    cpu = platform.processor() or "unknown"
    info = Path("/proc/cpuinfo")
    if info.is_file():
        cpu = next((ln.split(":", 1)[1].strip() for ln in info.read_text().splitlines() if ln.startswith("model name")),
                   cpu)
    return {"cpu_model": cpu, "cpu_count": os.cpu_count(), "loadavg": list(os.getloadavg()),
            "platform": platform.platform(), "versions": versions()}


def train_checkpoint(args: argparse.Namespace, work: Path) -> Path:
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from ultralytics import YOLO

    data = args.data
    if data is None:
        from edgekit.data.synth.obb import generate_obb_dataset

        data = generate_obb_dataset(work / "data", n_train=args.n_train, n_val=args.n_val, imgsz=args.imgsz,
                                    seed=args.seed, progress=False)
    # Short-run settings of benchmarks/synth_learnability.py: Ultralytics' defaults (nbs=64, warmup)
    # barely learn in a few CPU epochs.
    YOLO("yolov8n-obb.yaml").train(data=str(Path(data) / "data.yaml"), epochs=args.epochs, imgsz=args.imgsz, batch=8,
                                   nbs=8, optimizer="SGD", lr0=0.01, warmup_epochs=0, scale=0.25,
                                   workers=0, device="cpu", plots=False, project=str(work / "runs"), name="t",
                                   exist_ok=True, verbose=False, seed=args.seed)
    return work / "runs" / "t" / "weights" / "best.pt"


def latency_ms(onnx_path: Path, feed: Dict[str, Any], runs: int, threads: int) -> Dict[str, float]:
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

    with OnnxRuntimeRunner(onnx_path, intra_op_threads=threads or None) as runner:
        for _ in range(5):  # warm-up: first runs allocate and pick kernels
            runner.infer(feed)
        times = []
        for _ in range(runs):
            runner.infer(feed)
            times.append(1000.0 * runner.last_inference_time())
    times.sort()
    return {"p50_ms": statistics.median(times), "p90_ms": times[int(0.9 * (len(times) - 1))],
            "mean_ms": statistics.fmean(times), "n": len(times)}


def measure(name: str, path: Path, ctx, feed, args) -> Dict[str, Any]:
    from edgekit.export.accuracy import evaluate_onnx

    spec = ctx.adapter.letterbox_spec(ctx.imgsz)
    acc = evaluate_onnx(path, ctx.images.val, ctx.images.val_labels, ctx.adapter, spec, ctx.images.nc)
    row = {"model": name, "file": path.name, "map50": acc["map50"], "map50_95": acc["map50_95"],
           "bytes": path.stat().st_size, **latency_ms(path, feed, args.runs, args.threads)}
    print(f"{name:28s} mAP50 {row['map50']:.3f}  p50 {row['p50_ms']:.2f} ms", flush=True)
    return row


def run(args: argparse.Namespace, work: Path) -> Dict[str, Any]:
    from edgekit.calib.qdq import quantize_qdq
    from edgekit.export import ExportOptions, export_model
    from edgekit.export.pipeline import prepare
    from edgekit.export.stages import calibration_set

    t0 = time.perf_counter()
    ckpt = args.checkpoint or train_checkpoint(args, work)
    train_s = time.perf_counter() - t0
    options = ExportOptions(source=ckpt, out=work / "bundle", target="x86", calib_size=args.calib_size, seed=args.seed)
    bundle = export_model(options).bundle_dir
    ctx = prepare(options, lambda _m: None)
    calib = calibration_set(ctx)
    feed = ctx.adapter.feed(ctx.images.val[0], ctx.detection_graph(), ctx.adapter.letterbox_spec(ctx.imgsz))[0]
    rows = [measure("fp32", bundle / "model.onnx", ctx, feed, args)]
    for method in args.methods:
        for profile in args.profiles:
            for scope in args.float_scopes:
                out = work / f"model.int8.{method}.{profile}.{scope}.onnx"
                q0 = time.perf_counter()
                quantize_qdq(bundle / "model.onnx", out, calib, method=method, profile=profile, float_scope=scope)
                row = measure(f"int8 {method} ({profile}, float {scope})", out, ctx, feed, args)
                row.update({"method": method, "profile": profile, "float_scope": scope,
                            "quantize_s": time.perf_counter() - q0})
                rows.append(row)
    fp32 = rows[0]
    for row in rows[1:]:
        row["map50_drop_points"] = 100.0 * (fp32["map50"] - row["map50"])
        row["speedup_vs_fp32"] = fp32["p50_ms"] / row["p50_ms"]
    return {"benchmark": "int8_ort", "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            "machine": machine_facts(), "train_seconds": train_s, "n_val": len(ctx.images.val),
            "n_calib": len(calib), "imgsz": ctx.imgsz, "rows": rows, "note": args.note}


def markdown(result: Dict[str, Any]) -> str:
    m = result["machine"]
    lines = [f"# INT8 vs FP32 on ONNX Runtime (CPU), yolov8n-obb @ {result['imgsz']}", "",
             f"{m['cpu_model']}, {m['cpu_count']} cores, load {m['loadavg']}; onnxruntime "
             f"{m['versions'].get('onnxruntime')}, {result['n_val']} val images, {result['n_calib']} calibration images.",
             f"Note: {result['note']}" if result["note"] else "", "",
             "| model | mAP50 | mAP50-95 | mAP50 drop vs fp32 (points) | p50 ms | mean ms | speed-up |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in result["rows"]:
        lines.append(f"| {r['model']} | {r['map50']:.3f} | {r['map50_95']:.3f} | "
                     f"{r.get('map50_drop_points', 0.0):+.2f} | {r['p50_ms']:.2f} | {r['mean_ms']:.2f} | "
                     f"{r.get('speedup_vs_fp32', 1.0):.2f}x |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    with tempfile.TemporaryDirectory(prefix="edgekit-int8-bench-") as work:
        result = run(args, Path(work))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
