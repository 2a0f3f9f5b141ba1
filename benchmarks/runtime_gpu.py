"""GPU runtime, side by side in one run: edgekit's torch fast path vs Ultralytics ``predict`` vs the limit.

Same model, same frames, same GPU, interleaved in chunks (every method runs a chunk of frames in
turn, several rounds) so clock and thermal drift hit all alike:

* ``limit_graph``: the bare model as a CUDA graph (fp16, fused) replayed on an input already on the
  GPU, normalised; the fastest the network itself can go. ``limit_eager``: the same, eager.
* ``ultralytics_predict``: ``YOLO.predict(frame, half=True)`` per frame; ``ultralytics_stream``:
  ``predict(frames, stream=True)`` over a chunk.
* ``edgekit_frame``: ``Detector`` + ``TorchRunner(uint8_input, half, fuse, cuda_graph, trim_conf)``,
  one frame at a time, end to end (letterbox on the CPU, uint8 upload, normalise + forward as one
  graph, trimmed copy-back, decode + rotated NMS on the CPU); ``edgekit_pipelined``: the same
  detector in :class:`edgekit.deploy.pipeline.Pipeline`, reported as FPS.

The detections of edgekit and Ultralytics are matched per frame (IoU >= 0.5, same class).

    python benchmarks/runtime_gpu.py --frames 200 --weights runs/x/checkpoints/best.pt --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def frames_from_synth(n: int, imgsz: int, seed: int, work: Path) -> List[np.ndarray]:
    import cv2

    out = work / "frames"
    if not (out / "data.yaml").is_file():
        subprocess.run([sys.executable, "-m", "edgekit", "data", "synth", "obb", "--out", str(out), "--n-train", "1",
                        "--n-val", str(n), "--imgsz", str(imgsz), "--seed", str(seed)], check=True)
    paths = sorted((out / "images" / "val").glob("*.jpg"))[:n]
    return [cv2.imread(str(p)) for p in paths]


def load_model(weights: str, nc: int):
    import torch
    from ultralytics import YOLO

    if weights:
        return YOLO(weights)
    torch.manual_seed(0)
    yolo = YOLO("yolov8n-obb.yaml")
    # Untrained weights score ~0.5 everywhere; spread the class branch so NMS sees a realistic load.
    for seq in yolo.model.model[-1].cv3:
        for p in seq.parameters():
            p.data.normal_(0, 0.3)
    return yolo


def timed_chunks(methods: Dict[str, Callable[[List[np.ndarray]], Any]], frames: List[np.ndarray], rounds: int
                 ) -> Dict[str, List[float]]:
    """Per-frame milliseconds of each method, interleaved chunk by chunk."""

    chunk = max(1, len(frames) // rounds)
    per_frame: Dict[str, List[float]] = {k: [] for k in methods}
    for r in range(rounds):
        part = frames[r * chunk:(r + 1) * chunk]
        for name, fn in methods.items():
            t = time.perf_counter()
            for ms in fn(part):
                per_frame[name].append(ms)
            print(f"round {r + 1}/{rounds} {name}: {len(part)} frames in {time.perf_counter() - t:.1f} s", flush=True)
    return per_frame


def stats(ms: List[float]) -> Dict[str, float]:
    a = np.asarray(ms)
    return {"p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)), "p99": float(np.percentile(a, 99)),
            "mean": float(a.mean()), "std": float(a.std()), "n": int(a.size)}


def main() -> None:  # noqa: C901 - a benchmark script reads best top to bottom
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--imgsz", type=int, default=640)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--weights", default="")
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--work", default="/tmp/edgekit-runtime-gpu")
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--smoke-cpu", action="store_true", help="run every path on the CPU (a check of the script)")
    args = ap.parse_args()

    import torch

    from edgekit.core.letterbox import LetterboxSpec, preprocess
    from edgekit.core.postprocess import PostprocessSpec
    from edgekit.deploy.detector import Detector
    from edgekit.deploy.pipeline import Pipeline
    from edgekit.deploy.runners.torch import TorchRunner

    cuda = torch.cuda.is_available() and not args.smoke_cpu
    assert cuda or args.smoke_cpu, "needs a CUDA GPU (or --smoke-cpu to check the script)"
    dev, sync = ("cuda", torch.cuda.synchronize) if cuda else ("cpu", lambda: None)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    frames = frames_from_synth(args.frames, args.imgsz, 0, work)
    yolo = load_model(args.weights, 5)
    nc = len(yolo.names)
    spec = LetterboxSpec(imgsz=args.imgsz)
    post = PostprocessSpec(conf=args.conf, iou=0.7)

    # ---- the limit: fused fp16 forward, input on the GPU already ----------------------------------
    import copy

    net = copy.deepcopy(yolo.model).fuse().to(dev).eval()
    net = net.half() if cuda else net
    x_gpu = torch.from_numpy(preprocess(frames[0], spec)[0]).to(dev)
    x_gpu = x_gpu.half() if cuda else x_gpu
    graph = None
    with torch.inference_mode():
        for _ in range(5):
            net(x_gpu)
    if cuda:
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.inference_mode():
            for _ in range(3):
                net(x_gpu)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph), torch.inference_mode():
            net(x_gpu)

    def limit_graph(part):
        if graph is None:
            return limit_eager(part)
        out = []
        for _ in part:
            t = time.perf_counter()
            graph.replay()
            sync()
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def limit_eager(part):
        out = []
        with torch.inference_mode():
            for _ in part:
                t = time.perf_counter()
                net(x_gpu)
                sync()
                out.append((time.perf_counter() - t) * 1e3)
        return out

    # ---- Ultralytics --------------------------------------------------------------------------------
    ul_kwargs = dict(half=cuda, device=0 if cuda else "cpu", imgsz=args.imgsz, conf=args.conf, iou=0.7, verbose=False)
    yolo.predict(frames[0], **ul_kwargs)
    ul_dets: Dict[int, Any] = {}

    def ul_predict(part):
        out = []
        for f in part:
            t = time.perf_counter()
            r = yolo.predict(f, **ul_kwargs)[0]
            obb = r.obb
            res = (obb.xywhr.cpu().numpy(), obb.conf.cpu().numpy(), obb.cls.cpu().numpy())
            out.append((time.perf_counter() - t) * 1e3)
            ul_dets[id(f)] = res
        return out

    def ul_stream(part):
        t = time.perf_counter()
        n = 0
        for r in yolo.predict(part, stream=True, **ul_kwargs):
            r.obb.xywhr.cpu()
            n += 1
        per = (time.perf_counter() - t) * 1e3 / max(n, 1)
        return [per] * n

    # ---- edgekit ------------------------------------------------------------------------------------
    runner = TorchRunner(copy.deepcopy(yolo.model), device=dev, uint8_input=spec, half=cuda, fuse=True,
                         cuda_graph=cuda, trim_conf=args.conf, num_classes=nc)
    det = Detector(runner, letterbox=spec, postprocess=post).__enter__()
    for f in frames[:5]:
        det(f)
    ek_dets: Dict[int, Any] = {}
    stage_ms: Dict[str, List[float]] = {"preprocess": [], "infer": [], "postprocess": []}

    def ek_frame(part):
        out = []
        for f in part:
            t = time.perf_counter()
            d = det(f)
            out.append((time.perf_counter() - t) * 1e3)
            ek_dets[id(f)] = d
            for k in stage_ms:
                stage_ms[k].append(det.timings[f"{k}_s"] * 1e3)
        return out

    def ek_pipelined(part):
        pipe = Pipeline(det, queue_size=2)
        t = time.perf_counter()
        n = sum(1 for _ in pipe.run(part))
        return [(time.perf_counter() - t) * 1e3 / max(n, 1)] * n

    methods = {"limit_graph": limit_graph, "limit_eager": limit_eager, "ultralytics_predict": ul_predict,
               "ultralytics_stream": ul_stream, "edgekit_frame": ek_frame, "edgekit_pipelined": ek_pipelined}
    per_frame = timed_chunks(methods, frames, args.rounds)
    det.__exit__(None, None, None)

    # ---- agreement: the same matching as the CPU side-by-side ----------------------------------------
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vs_ultralytics import agreement

    agree = agreement(frames, ek_dets, ul_dets)
    matched, total = agree["matched"], agree["total"]

    result = {name: stats(ms) for name, ms in per_frame.items()}
    lim = result["limit_graph"]["p50"]
    summary = {
        "edgekit_frame_over_limit": result["edgekit_frame"]["p50"] / lim,
        "ultralytics_over_edgekit": result["ultralytics_predict"]["p50"] / result["edgekit_frame"]["p50"],
        "pipelined_fps": 1e3 / result["edgekit_pipelined"]["mean"],
        "pipelined_fps_over_limit_fps": (1e3 / result["edgekit_pipelined"]["mean"]) / (1e3 / lim),
        "edgekit_stage_p50_ms": {k: float(np.percentile(v, 50)) for k, v in stage_ms.items()},
        "detections_matched": matched, "detections_total": total,
        "agreement": agree["rate"],
    }
    machine = {"gpu": torch.cuda.get_device_name(0) if cuda else "cpu (smoke)", "torch": torch.__version__, "python": platform.python_version(),
               "cpu_count": __import__("os").cpu_count()}
    import ultralytics

    machine["ultralytics"] = ultralytics.__version__
    report = {"frames": len(frames), "imgsz": args.imgsz, "rounds": args.rounds, "conf": args.conf,
              "weights": args.weights or "yolov8n-obb.yaml, untrained (class branch spread)",
              "machine": machine, "per_method_ms": result, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = machine["gpu"].lower().replace(" ", "-")
    (out / f"runtime_gpu_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# GPU runtime, {machine['gpu']} ({len(frames)} frames at {args.imgsz}, {args.rounds} interleaved rounds)",
             "", f"weights: {report['weights']}; torch {machine['torch']}, ultralytics {machine['ultralytics']}", "",
             "| method | p50 ms | p90 ms | p99 ms | mean ms | n |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s in result.items():
        lines.append(f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['mean']:.2f} | {s['n']} |")
    lines += ["", f"- edgekit per frame / CUDA-graph limit: **{summary['edgekit_frame_over_limit']:.2f}x**",
              f"- Ultralytics predict / edgekit per frame: **{summary['ultralytics_over_edgekit']:.2f}x**",
              f"- edgekit pipelined: {summary['pipelined_fps']:.0f} FPS = "
              f"{summary['pipelined_fps_over_limit_fps']:.2f}x of 1 / limit",
              f"- edgekit stage p50 (ms): {summary['edgekit_stage_p50_ms']}",
              f"- detections matched edgekit vs Ultralytics: {matched}/{total} ({summary['agreement']:.3f})"]
    (out / f"runtime_gpu_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
