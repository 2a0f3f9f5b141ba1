"""edgekit vs Ultralytics on the CPU, side by side in one run, measured with ``edgekit.bench.measure``.

Same FP32 ONNX model (an ``edgekit export`` bundle's ``model.onnx``), same frames (2x2 mosaics of a
synthetic val set, so a briefly trained model sees objects at its trained scale), same ONNX Runtime,
interleaved in chunks (each method runs a chunk of frames in turn, several rounds; frame-by-frame
interleaving across sessions distorts CPU timings):

* ``limit_session_run``: bare ``InferenceSession.run`` on an input preprocessed beforehand: the floor.
* ``edgekit_frame``: ``Bundle.detector("onnxruntime")`` one frame at a time, end to end, through
  :func:`edgekit.bench.measure.measure_frame` (what ``edgekit bench`` reports as end to end);
  ``edgekit_frame_uint8``: the same with the uint8-input graph variant (normalisation in the graph).
* ``edgekit_pipelined``: the same detector in the pipelined runtime (:func:`edgekit.bench.measure.run_pipelined`);
  ``edgekit_pipelined_sessions``: the same with ``pipeline_sessions=2`` (two single-threaded ONNX Runtime
  sessions run two frames at once instead of one session's intra-op threads running one).
* ``ultralytics_predict``: ``YOLO(model.onnx).predict(frame)`` per frame; ``ultralytics_stream``:
  ``predict(chunk, stream=True)``.

Per-stage breakdowns: edgekit's FrameTiming, Ultralytics' own ``Results.speed``. The detections of
edgekit and Ultralytics are matched per frame (IoU >= 0.5, same class). At the end ``run_bench`` runs
on the same bundle and frames so its end-to-end p50 can be checked against ``edgekit_frame``.

    python benchmarks/vs_ultralytics.py --frames 200 --out benchmarks/results
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
from typing import Any, Callable, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("YOLO_OFFLINE", "1")


def train_checkpoint(work: Path, epochs: int, imgsz: int) -> Path:
    """yolov8n-obb trained briefly from scratch on a synthetic set (benchmarks/synth_learnability.py's recipe)."""
    from ultralytics import YOLO

    best = work / "train" / "weights" / "last.pt"
    if best.is_file():
        return best
    synth = work / "synth"
    if not (synth / "data.yaml").is_file():
        subprocess.run([sys.executable, "-m", "edgekit", "data", "synth", "obb", "--out", str(synth), "--n-train", "160",
                        "--n-val", "40", "--imgsz", str(imgsz)], check=True)
    YOLO("yolov8n-obb.yaml").train(
        data=str(synth / "data.yaml"), epochs=epochs, imgsz=imgsz, batch=8, workers=0, device="cpu", plots=False,
        val=False, amp=False, optimizer="SGD", lr0=0.01, warmup_epochs=0, scale=0.25, nbs=8, seed=0,
        project=str(work), name="train", exist_ok=True, verbose=False)
    return best


def mosaic_frames(work: Path, n: int, imgsz: int) -> List[np.ndarray]:
    """``n`` frames of 2x2 synthetic val scenes: objects at the trained pixel scale, ~4x the objects a frame."""
    import cv2

    paths = sorted((work / "synth" / "images" / "val").glob("*.jpg"))
    tiles = [cv2.resize(cv2.imread(str(p)), (imgsz // 2, imgsz // 2)) for p in paths]
    frames = []
    for i in range(n):
        t = [tiles[(i + k) % len(tiles)] for k in range(4)]
        frames.append(np.ascontiguousarray(np.vstack([np.hstack(t[:2]), np.hstack(t[2:])])))
    return frames


def make_bundle(work: Path, imgsz: int, ckpt: Path, calib: Path) -> Path:
    """``edgekit export`` of ``ckpt`` at ``imgsz`` (FP32 ONNX, x86 target)."""
    bundle = work / f"bundle_{imgsz}"
    if not (bundle / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "edgekit", "export", str(ckpt), "--imgsz", str(imgsz), "--calib-data",
                        str(calib), "--target", "x86", "--out", str(bundle), "--quiet"], check=True)
    return bundle


def interleaved(methods: Dict[str, Callable[[List[np.ndarray]], List[float]]], frames: List[np.ndarray],
                rounds: int) -> Dict[str, List[float]]:
    """Per-frame seconds of each method, chunk by chunk."""
    chunk = max(1, len(frames) // rounds)
    out: Dict[str, List[float]] = {k: [] for k in methods}
    for r in range(rounds):
        part = frames[r * chunk:(r + 1) * chunk]
        for name, fn in methods.items():
            out[name] += fn(part)
    return out


def edgekit_methods(bundle: Path, store: Dict[str, Any]) -> Dict[str, Callable]:
    from edgekit.bench import measure
    from edgekit.deploy.bundle import Bundle

    b = Bundle.open(bundle)
    det = b.detector("onnxruntime").__enter__()
    det8 = b.detector("onnxruntime", uint8_input=True).__enter__()
    det_par = b.detector("onnxruntime", pipeline_sessions=2).__enter__()
    store.update(det=det, det8=det8, det_par=det_par, timings=[], dets={})

    def frame(part: List[np.ndarray]) -> List[float]:
        it, out = iter(part), []
        for f in part:
            t, d = measure.measure_frame(det, it)
            store["timings"].append(t)
            store["dets"][id(f)] = d
            out.append(t.e2e_s)
        return out

    def frame_uint8(part: List[np.ndarray]) -> List[float]:
        it = iter(part)
        return [measure.measure_frame(det8, it)[0].e2e_s for _ in part]

    def pipelined(part: List[np.ndarray]) -> List[float]:
        s = measure.run_pipelined(det, iter(part))
        store.setdefault("pipelined_fps", []).append(s.fps)
        return [s.wall_s / max(s.frames, 1)] * s.frames

    def pipelined_sessions(part: List[np.ndarray]) -> List[float]:
        s = measure.run_pipelined(det_par, iter(part))
        store.setdefault("pipelined_sessions_fps", []).append(s.fps)
        return [s.wall_s / max(s.frames, 1)] * s.frames

    for f in [np.zeros((64, 64, 3), np.uint8)] * 3:  # warm the sessions
        det(f)
        det8(f)
    measure.run_pipelined(det_par, iter([np.zeros((64, 64, 3), np.uint8)] * 4))
    return {"edgekit_frame": frame, "edgekit_frame_uint8": frame_uint8, "edgekit_pipelined": pipelined,
            "edgekit_pipelined_sessions": pipelined_sessions}


def limit_method(bundle: Path, frames: List[np.ndarray]) -> Callable:
    import onnxruntime as ort

    from edgekit.core.letterbox import preprocess
    from edgekit.deploy.bundle import Bundle

    b = Bundle.open(bundle)
    sess = ort.InferenceSession(str(b.model_path("fp32")), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    feeds = {id(f): preprocess(f, b.manifest.preprocess)[0] for f in frames}
    sess.run(None, {name: feeds[id(frames[0])]})

    def run(part: List[np.ndarray]) -> List[float]:
        out = []
        for f in part:
            x = feeds[id(f)]
            t = time.perf_counter()
            sess.run(None, {name: x})
            out.append(time.perf_counter() - t)
        return out

    return run


def ultralytics_methods(bundle: Path, imgsz: int, conf: float, store: Dict[str, Any]) -> Dict[str, Callable]:
    from ultralytics import YOLO

    yolo = YOLO(str(bundle / "model.onnx"), task="obb")
    kw = dict(imgsz=imgsz, conf=conf, iou=0.7, device="cpu", verbose=False)
    yolo.predict(np.zeros((imgsz, imgsz, 3), np.uint8), **kw)
    store.update(dets={}, speed=[])

    def predict(part: List[np.ndarray]) -> List[float]:
        out = []
        for f in part:
            t = time.perf_counter()
            r = yolo.predict(f, **kw)[0]
            res = (r.obb.xywhr.numpy(), r.obb.conf.numpy(), r.obb.cls.numpy())
            out.append(time.perf_counter() - t)
            store["dets"][id(f)] = res
            store["speed"].append(dict(r.speed))
        return out

    def stream(part: List[np.ndarray]) -> List[float]:
        t = time.perf_counter()
        n = sum(1 for r in yolo.predict(part, stream=True, **kw) if r.obb.xywhr.numpy() is not None)
        return [(time.perf_counter() - t) / max(n, 1)] * n

    return {"ultralytics_predict": predict, "ultralytics_stream": stream}


def agreement(frames: List[np.ndarray], ek: Dict[int, Any], ul: Dict[int, Any]) -> Dict[str, Any]:
    from edgekit.core.detections import Detections
    from edgekit.core.metrics import match_detections

    matched = total = n_ek = n_ul = 0
    for f in frames:
        if id(f) not in ek or id(f) not in ul:
            continue
        boxes, conf, cls = ul[id(f)]
        u = Detections(boxes.astype(np.float32), conf.astype(np.float32), cls.astype(np.int64))
        m = match_detections(ek[id(f)], u, iou_thr=0.5, same_class=True)
        matched += len(m.pairs)
        total += max(len(ek[id(f)]), len(u))
        n_ek, n_ul = n_ek + len(ek[id(f)]), n_ul + len(u)
    return {"matched": matched, "total": total, "edgekit": n_ek, "ultralytics": n_ul,
            "rate": matched / total if total else 1.0}


def machine() -> Dict[str, Any]:
    import onnxruntime
    import ultralytics

    from edgekit.bench.environment import cpu_model

    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "load_avg_at_start": os.getloadavg(),
            "python": platform.python_version(), "onnxruntime": onnxruntime.__version__,
            "ultralytics": ultralytics.__version__, "numpy": np.__version__}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--weights", default="", help="Ultralytics OBB .pt (default: train one briefly, see --train-epochs)")
    ap.add_argument("--train-epochs", type=int, default=5)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--work", default="/tmp/edgekit-vs-ultralytics")
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    from edgekit.bench import run_bench

    env = machine()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    cached = (work / "train" / "weights" / "last.pt").is_file()
    ckpt = Path(args.weights) if args.weights else train_checkpoint(work, args.train_epochs, args.imgsz // 2)
    trained = "cached from an earlier run of this script" if cached else f"{time.perf_counter() - t0:.0f} s"
    frames = mosaic_frames(work, args.frames, args.imgsz)
    bundle = make_bundle(work, args.imgsz, ckpt, work / "synth" / "images" / "val")
    ek: Dict[str, Any] = {}
    ul: Dict[str, Any] = {}
    methods = {"limit_session_run": limit_method(bundle, frames), **edgekit_methods(bundle, ek),
               **ultralytics_methods(bundle, args.imgsz, args.conf, ul)}
    per_frame = interleaved(methods, frames, args.rounds)
    ek["det"].__exit__(None, None, None)
    ek["det8"].__exit__(None, None, None)
    ek["det_par"].__exit__(None, None, None)
    bench = run_bench(bundle, {"iterations": len(frames), "parity": False}, frames=frames, progress=False)
    args.weights = args.weights or (f"yolov8n-obb trained from scratch here: {args.train_epochs} epochs on 160 synthetic "
                                    f"{args.imgsz // 2}-px scenes ({trained}); frames are 2x2 mosaics of its val "
                                    f"scenes (objects at the trained scale)")
    report = summarize_run(args, env, bundle, per_frame, ek, ul, frames, bench)
    report["command"] = " ".join([Path(sys.executable).name, *sys.argv])
    write(report, Path(args.out))


def summarize_run(args: Any, env: Dict[str, Any], bundle: Path, per_frame: Dict[str, List[float]], ek: Dict[str, Any],
                  ul: Dict[str, Any], frames: List[np.ndarray], bench: Any) -> Dict[str, Any]:
    from edgekit.bench import summarize

    stats = {k: summarize(v).model_dump() for k, v in per_frame.items()}
    lim, ekf = stats["limit_session_run"]["p50_ms"], stats["edgekit_frame"]["p50_ms"]
    t = ek["timings"]
    stages = {k: summarize([getattr(x, f) for x in t]).p50_ms for k, f in
              (("read", "read_s"), ("preprocess", "preprocess_s"), ("infer", "host_s"), ("decode", "decode_s"))}
    ul_stages = {k: float(np.median([s[k] for s in ul["speed"]])) for k in ("preprocess", "inference", "postprocess")}
    seq_fps = 1e3 / stats["limit_session_run"]["mean_ms"]
    pipe_fps = float(np.mean(ek["pipelined_fps"]))
    pipe_sessions_fps = float(np.mean(ek["pipelined_sessions_fps"]))
    return {
        "frames": len(frames), "imgsz": args.imgsz, "rounds": args.rounds, "conf": args.conf,
        "weights": args.weights,
        "model": str(bundle / "model.onnx"), "machine": env, "per_method": stats,
        "edgekit_stage_p50_ms": stages, "ultralytics_stage_median_ms": ul_stages,
        "summary": {"edgekit_frame_over_limit": ekf / lim,
                    "edgekit_frame_uint8_over_limit": stats["edgekit_frame_uint8"]["p50_ms"] / lim,
                    "ultralytics_predict_over_edgekit_frame": stats["ultralytics_predict"]["p50_ms"] / ekf,
                    "pipelined_fps": pipe_fps, "limit_sequential_fps": seq_fps,
                    "pipelined_over_limit_fps": pipe_fps / seq_fps,
                    "pipelined_sessions_fps": pipe_sessions_fps,
                    "pipelined_sessions_over_limit_fps": pipe_sessions_fps / seq_fps,
                    "edgekit_frame_over_limit_mean": stats["edgekit_frame"]["mean_ms"] / stats["limit_session_run"]["mean_ms"],
                    "ultralytics_predict_over_edgekit_frame_mean": (stats["ultralytics_predict"]["mean_ms"]
                                                                    / stats["edgekit_frame"]["mean_ms"]),
                    "edgekit_bench_end_to_end_mean_ms": bench.latency.end_to_end.mean_ms,
                    "edgekit_bench_end_to_end_p50_ms": bench.latency.end_to_end.p50_ms,
                    "edgekit_bench_over_edgekit_frame": bench.latency.end_to_end.p50_ms / ekf,
                    "detections": agreement(frames, ek["dets"], ul["dets"])},
    }


def write(report: Dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    tag = f"cpu{report['machine']['cpu_count']}_{report['imgsz']}px_{report['frames']}f"
    (out / f"vs_ultralytics_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    m, s = report["machine"], report["summary"]
    lines = [f"# edgekit vs Ultralytics, CPU ({m['cpu']}, {m['cpu_count']} cores, load {m['load_avg_at_start'][0]:.1f} "
             f"at start), {report['frames']} frames at {report['imgsz']}, {report['rounds']} interleaved rounds", "",
             f"weights: {report['weights']}; onnxruntime {m['onnxruntime']}, ultralytics {m['ultralytics']}", "",
             "| method | p50 ms | p90 ms | p99 ms | mean ms | std ms | n |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, st in report["per_method"].items():
        lines.append(f"| {name} | {st['p50_ms']:.2f} | {st['p90_ms']:.2f} | {st['p99_ms']:.2f} | {st['mean_ms']:.2f} "
                     f"| {st['std_ms']:.2f} | {st['n']} |")
    d = s["detections"]
    lines += ["", f"- edgekit per frame / bare session.run: **{s['edgekit_frame_over_limit']:.3f}x** p50, "
                  f"{s['edgekit_frame_over_limit_mean']:.3f}x mean (uint8-input variant "
                  f"{s['edgekit_frame_uint8_over_limit']:.3f}x p50)",
              f"- Ultralytics predict / edgekit per frame, means: {s['ultralytics_predict_over_edgekit_frame_mean']:.3f}x",
              f"- Ultralytics predict / edgekit per frame: **{s['ultralytics_predict_over_edgekit_frame']:.3f}x**",
              f"- edgekit pipelined {s['pipelined_fps']:.1f} FPS vs bare sequential {s['limit_sequential_fps']:.1f} FPS "
              f"({s['pipelined_over_limit_fps']:.2f}x); with pipeline_sessions=2 {s['pipelined_sessions_fps']:.1f} FPS "
              f"({s['pipelined_sessions_over_limit_fps']:.2f}x)",
              f"- `edgekit bench` (run_bench, same bundle, after the interleaved rounds) end to end p50 "
              f"{s['edgekit_bench_end_to_end_p50_ms']:.2f} ms = {s['edgekit_bench_over_edgekit_frame']:.3f}x "
              f"edgekit_frame (target: 1 within noise)",
              f"- edgekit stage p50 ms: {report['edgekit_stage_p50_ms']}",
              f"- Ultralytics stage median ms (its Results.speed): {report['ultralytics_stage_median_ms']}",
              f"- detections matched edgekit vs Ultralytics: {d['matched']}/{d['total']} ({d['rate']:.3f}); "
              f"counts {d['edgekit']} vs {d['ultralytics']}"]
    (out / f"vs_ultralytics_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
