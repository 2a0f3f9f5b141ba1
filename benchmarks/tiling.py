"""Sliced vs full-frame inference on large aerial frames with small objects (CPU, ONNX Runtime).

1. Training data: ``edgekit data synth obb --frame-size TRAIN_FRAME`` (large frames, objects 16-54 px),
   cut by ``edgekit data tile --size TILE --overlap OVERLAP``.
2. Model: yolov8n-obb from scratch (random init, ``yolov8n-obb.yaml``) trained ``--epochs`` on the tiles
   at ``imgsz=TILE`` on the CPU (``benchmarks/synth_learnability.py``'s recipe: SGD lr0 0.01, nbs = batch,
   no warm-up), then ``edgekit export --dynamic --tile TILE --tile-overlap OVERLAP`` (FP32 ONNX, x86).
3. Val: ``--frames`` fresh large frames (``--frame-size``, default 2048) from another seed. Every object
   is small (16-54 px long, i.e. COCO "small"/"medium" at the low end).
   * full frame: the bundle's detector with ``tile=0`` (the frame letterboxed to TILE px: objects shrink
     ``frame-size / TILE`` times);
   * sliced, batched: ``Bundle.detector()`` (the manifest's tile plan; all tiles of a frame in one call);
   * sliced, streamed: the same with ``batch=1`` (one runner call per tile).
   mAP50 / mAP50-95 (edgekit.core.metrics, polygon IoU, conf 0.001) and recall at IoU 0.5 (conf 0.25), and the
   per-frame latency (``edgekit.bench.measure.run_sequential``: end to end, host, compute) of each mode,
   timed in ``--rounds`` interleaved rounds of ``--timed`` frames per mode (the CPU is shared).

    python benchmarks/tiling.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("YOLO_OFFLINE", "1")


def _edgekit(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "edgekit", *args], check=True)


def train(work: Path, a: Any) -> Dict[str, Any]:
    """Large training frames -> tiles -> yolov8n-obb trained briefly; returns what was done and how long."""
    from ultralytics import YOLO

    t0 = time.perf_counter()
    frames, tiles = work / "train_frames", work / "train_tiles"
    if not (tiles / "data.yaml").is_file():
        _edgekit("data", "synth", "obb", "--out", str(frames), "--n-train", str(a.train_frames), "--n-val", "2",
                 "--frame-size", str(a.train_frame_size), "--seed", "0")
        _edgekit("data", "tile", str(frames), str(tiles), "--size", str(a.tile), "--overlap", str(a.overlap),
                 *(["--skip-empty"] if a.skip_empty else []))
    t1 = time.perf_counter()
    ckpt = work / "train" / "weights" / "last.pt"
    if not ckpt.is_file():
        YOLO("yolov8n-obb.yaml").train(
            data=str(tiles / "data.yaml"), epochs=a.epochs, imgsz=a.tile, batch=8, workers=0, device="cpu", plots=False,
            val=False, amp=False, optimizer="SGD", lr0=0.01, warmup_epochs=0, scale=0.25, nbs=8, seed=0,
            project=str(work), name="train", exist_ok=True, verbose=False)
    t2 = time.perf_counter()
    n_tiles = len(list((tiles / "images" / "train").iterdir()))
    budget = work / "budget.json"  # a re-run reuses the model: report the times of the run that made it
    if not budget.is_file():
        budget.write_text(json.dumps({"data_s": t1 - t0, "train_s": t2 - t1}))
    return {"ckpt": ckpt, "tiles": tiles, "train_tiles": n_tiles, **json.loads(budget.read_text())}


def export(work: Path, ckpt: Path, tiles: Path, a: Any) -> Path:
    bundle = work / "bundle"
    if not (bundle / "manifest.json").is_file():
        _edgekit("export", str(ckpt), "--imgsz", str(a.tile), "--dynamic", "--tile", str(a.tile), "--tile-overlap",
                 str(a.overlap), "--calib-data", str(tiles), "--target", "x86", "--out", str(bundle), "--quiet")
    return bundle


def val_frames(work: Path, a: Any) -> Path:
    root = work / f"val_{a.frame_size}"
    if not (root / "data.yaml").is_file():
        _edgekit("data", "synth", "obb", "--out", str(root), "--n-train", "1", "--n-val", str(a.frames),
                 "--frame-size", str(a.frame_size), "--seed", "1")
    return root


def recall50(detector: Any, frames: List[np.ndarray], gts: List[Any]) -> float:
    from edgekit.core.metrics import match_detections

    found = total = 0
    for frame, gt in zip(frames, gts):
        dets = detector(frame)
        found += len(match_detections(gt, dets, 0.5).pairs)
        total += len(gt)
    return found / max(total, 1)


def evaluate(detector: Any, val: Path, frames: List[np.ndarray], gts: List[Any]) -> Dict[str, Any]:
    from edgekit.bench.accuracy import evaluate_detector

    t0 = time.perf_counter()
    acc = evaluate_detector(detector, val)
    acc["eval_s"] = time.perf_counter() - t0
    acc["recall50_conf025"] = recall50(detector, frames, gts)
    return acc


def _tiles(detector: Any, frame: np.ndarray) -> int:
    from edgekit.core.tiling import tile_windows

    if not hasattr(detector, "tile"):
        return 1
    return len(tile_windows(frame.shape[1], frame.shape[0], detector.tile, detector.overlap))


def timed_rounds(detectors: Dict[str, Any], frames: List[np.ndarray], per_round: int, rounds: int) -> Dict[str, Any]:
    """Per-frame timings of every mode, interleaved: each round runs ``per_round`` frames of each mode in
    turn, so a load change on the shared CPU falls on all modes alike."""
    from edgekit.bench import measure
    from edgekit.bench.stats import summarize

    series: Dict[str, List[Any]] = {name: [] for name in detectors}
    for det in detectors.values():  # warm each
        measure.run_sequential(det, iter(frames[:1]), iterations=1)
    for r in range(rounds):
        part = [frames[(r * per_round + k) % len(frames)] for k in range(per_round)]
        for name, det in detectors.items():
            series[name] += measure.run_sequential(det, iter(part), iterations=per_round).timings
    out = {}
    for name, t in series.items():
        stats = {"end_to_end": summarize([x.e2e_s for x in t]), "host": summarize([x.host_s for x in t]),
                 "compute": summarize([x.compute_s for x in t])}
        e2e_mean = stats["end_to_end"].mean_ms or 0.0
        out[name] = {"latency_ms": {k: v.model_dump() for k, v in stats.items()},
                     "fps": 1000.0 / e2e_mean if e2e_mean else 0.0,
                     "tiles_per_frame": _tiles(detectors[name], frames[0])}
    return out


def machine() -> Dict[str, Any]:
    import onnxruntime
    import torch
    import ultralytics

    from edgekit.bench.environment import cpu_model

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "torch_threads": torch.get_num_threads(), "python": platform.python_version(),
            "onnxruntime": onnxruntime.__version__, "ultralytics": ultralytics.__version__, "torch": torch.__version__,
            "numpy": np.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/edgekit_tiling_bench"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--tile", type=int, default=320)
    ap.add_argument("--overlap", type=int, default=64)
    ap.add_argument("--train-frames", type=int, default=16)
    ap.add_argument("--train-frame-size", type=int, default=1024)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--skip-empty", action=argparse.BooleanOptionalAction, default=True,
                    help="train on tiles holding objects only")
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--frame-size", type=int, default=2048)
    ap.add_argument("--timed", type=int, default=3, help="frames timed per mode and round")
    ap.add_argument("--rounds", type=int, default=4, help="interleaved timing rounds")
    ap.add_argument("--note", default="")
    a = ap.parse_args()
    a.work.mkdir(parents=True, exist_ok=True)
    env = machine()
    trained = train(a.work, a)
    t_export = time.perf_counter()
    bundle = export(a.work, trained["ckpt"], trained["tiles"], a)
    budget = a.work / "budget.json"
    spent = json.loads(budget.read_text())
    spent.setdefault("export_s", time.perf_counter() - t_export)  # a re-run reuses the bundle: keep the first time
    budget.write_text(json.dumps(spent))
    val = val_frames(a.work, a)
    report = run_modes(a, bundle, val)
    report.update({
        "what": "sliced vs full-frame inference of small objects on large frames (CPU, ONNX Runtime FP32)",
        "model": f"yolov8n-obb.yaml from scratch, {a.epochs} epochs on {trained['train_tiles']} tiles of {a.tile} px "
                 f"({a.train_frames} frames of {a.train_frame_size} px, overlap {a.overlap}"
                 f"{', tiles without objects skipped' if a.skip_empty else ''}); SGD lr0 0.01, batch 8, "
                 "nbs 8, no warm-up, amp off, CPU",
        "budget_s": {"train_data": trained["data_s"], "train": trained["train_s"],
                     "export": spent["export_s"]},
        "val": {"frames": a.frames, "frame_size": a.frame_size, "objects": "16-54 px long (all small)"},
        "timing": f"{a.rounds} interleaved rounds x {a.timed} frames per mode, sequential, one frame at a time "
                  "(edgekit.bench.measure.run_sequential)",
        "tile": a.tile, "overlap": a.overlap, "machine": env, "load_avg_at_end": os.getloadavg(), "note": a.note,
        "command": " ".join(sys.argv)})
    write(report, a.out)


def run_modes(a: Any, bundle: Path, val: Path) -> Dict[str, Any]:
    import cv2

    from edgekit.bench.accuracy import label_path_for, read_obb_labels, read_val_split
    from edgekit.deploy.bundle import Bundle

    _, paths = read_val_split(val)
    frames = [cv2.imread(str(p)) for p in paths]
    gts = [read_obb_labels(label_path_for(p), f.shape[0], f.shape[1]) for p, f in zip(paths, frames)]
    b = Bundle.open(bundle)
    detectors = {"full_frame": b.detector("onnxruntime", tile=0), "sliced_batched": b.detector("onnxruntime"),
                 "sliced_streamed": b.detector("onnxruntime")}
    detectors["sliced_streamed"].batch = 1  # one runner call per tile
    out: Dict[str, Any] = {"objects": int(sum(len(g) for g in gts))}
    for det in detectors.values():
        det.__enter__()
    try:
        timing = timed_rounds(detectors, frames, a.timed, a.rounds)
        for name, det in detectors.items():
            out[name] = {"accuracy": evaluate(det, val, frames, gts), **timing[name]}
            print(name, json.dumps(out[name]["accuracy"]), f"{out[name]['latency_ms']['end_to_end']['p50_ms']:.0f} ms",
                  flush=True)
    finally:
        for det in detectors.values():
            det.__exit__(None, None, None)
    return out


def write(report: Dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tag = f"tiling_cpu{report['machine']['cpu_count']}_{report['val']['frame_size']}px_{report['val']['frames']}f"
    (out / f"{tag}.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    rows = []
    for mode in ("full_frame", "sliced_batched", "sliced_streamed"):
        r = report[mode]
        lat = r["latency_ms"]
        rows.append(f"| {mode} | {r['tiles_per_frame']:.0f} | {r['accuracy']['map50']:.3f} | "
                    f"{r['accuracy']['map50_95']:.3f} | {r['accuracy']['recall50_conf025']:.3f} | "
                    f"{lat['end_to_end']['p50_ms']:.0f} | {lat['compute']['p50_ms']:.0f} | {r['fps']:.2f} |")
    m, b = report["machine"], report["budget_s"]
    md = "\n".join([
        f"# Sliced vs full-frame inference ({report['val']['frames']} frames of {report['val']['frame_size']} px)", "",
        f"Model: {report['model']}.", "",
        f"Budget: data {b['train_data']:.0f} s, training {b['train']:.0f} s, export {b['export']:.0f} s.", "",
        f"Val: {report['objects']} objects, {report['val']['objects']}; tiles {report['tile']} px, overlap "
        f"{report['overlap']} px. mAP over all objects (all are small) with polygon IoU, conf 0.001; recall at "
        "IoU 0.5 with the bundle's conf 0.25.", "",
        f"Latency: {report['timing']}.", "",
        "| mode | tiles/frame | mAP50 | mAP50-95 | recall50 | e2e p50 ms | compute p50 ms | FPS (1 / mean e2e) |",
        "|---|---|---|---|---|---|---|---|", *rows, "",
        f"Machine: {m['cpu']}, {m['cpu_count']} cores (shared; load {m['load_avg_at_start']} -> "
        f"{report['load_avg_at_end']}), onnxruntime {m['onnxruntime']}, torch {m['torch']} "
        f"({m['torch_threads']} threads), ultralytics {m['ultralytics']}, python {m['python']}.",
        "", f"Note: {report['note']}" if report["note"] else "", f"Command: `{report['command']}`", ""])
    (out / f"{tag}.md").write_text(md)
    print(md)


if __name__ == "__main__":
    main()
