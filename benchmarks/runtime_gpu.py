"""GPU runtime, side by side in one run: edgekit's torch fast path vs Ultralytics ``predict`` vs the limit.

Same model, same frames, same GPU, interleaved in chunks (every method runs a chunk of frames in
turn, several rounds) so clock and thermal drift hit all alike:

* ``limit_graph``: the bare model as a CUDA graph (fp16, fused) replayed on an input already on the
  GPU, normalised; the fastest the network itself can go. ``limit_eager``: the same, eager.
* ``ultralytics_predict``: ``YOLO.predict(frame, half=True)`` per frame; ``ultralytics_stream``:
  ``predict(frames, stream=True)`` over a chunk.
* ``edgekit_frame``: ``Detector`` + ``TorchRunner(uint8_input, half, fuse, cuda_graph, decode)``,
  one frame at a time, end to end (letterbox on the CPU, uint8 upload, normalise + forward + OBB
  decode with rotated NMS as one CUDA graph, only the kept boxes copied back);
  ``edgekit_frame_channels_last``: the same with ``channels_last=True`` (next to ``limit_graph_channels_last``,
  the bare forward in that memory order, so either ratio can be read);
  ``edgekit_frame_host_decode``: the same without ``decode`` (the whole raw output copied back,
  decoded by numpy on the CPU), the previous form; ``edgekit_frame_trim``: ``device_nms=False``, the
  device only compacts the candidates (a prefix sum, no sort, no ``k x k`` ProbIoU) and the host
  suppresses those few rows; ``edgekit_pipelined`` / ``edgekit_pipelined_trim``: those detectors in
  :class:`edgekit.deploy.pipeline.Pipeline` (``--slots`` graph slots: frame i+1 is submitted while
  frame i runs), each chunk fed ``--pipeline-repeat`` times so the pipeline's fill and drain are
  amortised as on a stream, reported as FPS.

The detections of edgekit and Ultralytics are matched per frame (IoU >= 0.5, same class), and the GPU
decode is compared with the host decode of the same frames (exact equality expected; fp16 graphs
of the two runners may pick other kernels, so a rare ulp-level difference is reported, not hidden).
Without ``--weights`` a yolov8n-obb is trained here first (synthetic scenes at ``--imgsz``,
``--train-epochs``) so the model detects at a realistic load; ``--smoke-cpu`` runs every path on the
CPU with untrained weights, as a check of the script.

    python benchmarks/runtime_gpu.py --frames 200 --out benchmarks/results          # trains, then measures
    python benchmarks/runtime_gpu.py --smoke-cpu --frames 8 --imgsz 320 --rounds 2 --out /tmp/rt
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


def train_weights(work: Path, imgsz: int, epochs: int, device: str) -> str:
    """A yolov8n-obb trained briefly on synthetic scenes (same generator as the frames, other seed), with the
    settings benchmarks/results/synth_learnability.md found to learn in a few epochs (nbs = batch, SGD, no warmup)."""
    from ultralytics import YOLO

    last = work / "train" / "weights" / "last.pt"
    if last.is_file():
        return str(last)
    data = work / "train_data"
    if not (data / "data.yaml").is_file():
        subprocess.run([sys.executable, "-m", "edgekit", "data", "synth", "obb", "--out", str(data), "--n-train", "300",
                        "--n-val", "16", "--imgsz", str(imgsz), "--seed", "1"], check=True)
    YOLO("yolov8n-obb.yaml").train(data=str(data / "data.yaml"), epochs=epochs, imgsz=imgsz, batch=16, nbs=16,
                                   workers=4, device=device, plots=False, val=False, seed=0, optimizer="SGD", lr0=0.01,
                                   warmup_epochs=0, scale=0.25, project=str(work), name="train", exist_ok=True,
                                   verbose=False)
    return str(last)


def load_model(weights: str, nc: int):
    import torch
    from ultralytics import YOLO

    if weights:
        from edgekit.checkpoints import guarded_loading

        with guarded_loading():  # weights_only + allow-list, as every checkpoint edgekit reads
            return YOLO(weights)
    torch.manual_seed(0)
    yolo = YOLO("yolov8n-obb.yaml")
    # Untrained weights score ~0.5 everywhere; spread the class branch so NMS sees a realistic load.
    for seq in yolo.model.model[-1].cv3:
        for p in seq.parameters():
            p.data.normal_(0, 0.3)
    return yolo


def capture_forward(net: Any, x: Any) -> Any:
    """A CUDA graph of ``net(x)`` (warmed up on a side stream first)."""
    import torch

    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream), torch.inference_mode():
        for _ in range(3):
            net(x)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.inference_mode():
        net(x)
    return graph


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
    ap.add_argument("--weights", default="", help="Ultralytics OBB .pt (default: train one here, or untrained on CPU)")
    ap.add_argument("--train-epochs", type=int, default=12)
    ap.add_argument("--conf", type=float, default=0.25)
    ap.add_argument("--max-candidates", type=int, default=256, help="candidates the GPU decode examines")
    ap.add_argument("--pipeline-repeat", type=int, default=4, help="times each chunk is fed to the pipeline")
    ap.add_argument("--slots", type=int, default=3, help="CUDA-graph slots of each runner (frames in flight)")
    ap.add_argument("--compile", action="store_true",
                    help="also the torch.compile forms: decode fused, decode + forward fused, and the compiled limit")
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
    if not args.weights and cuda:
        args.weights = train_weights(work, args.imgsz, args.train_epochs, "0")
    yolo = load_model(args.weights, 5)
    spec = LetterboxSpec(imgsz=args.imgsz)
    post = PostprocessSpec(conf=args.conf, iou=0.7)

    # ---- the limit: fused fp16 forward, input on the GPU already ----------------------------------
    import copy

    net = copy.deepcopy(yolo.model).fuse().to(dev).eval()
    net = net.half() if cuda else net
    x_gpu = torch.from_numpy(preprocess(frames[0], spec)[0]).to(dev)
    x_gpu = x_gpu.half() if cuda else x_gpu
    with torch.inference_mode():
        for _ in range(5):
            net(x_gpu)
    graph = capture_forward(net, x_gpu) if cuda else None
    # the same in channels-last memory order (what the runner's channels_last option runs)
    net_cl = copy.deepcopy(net).to(memory_format=torch.channels_last)
    x_cl = x_gpu.contiguous(memory_format=torch.channels_last)
    graph_cl = capture_forward(net_cl, x_cl) if cuda else None

    def replayed(g):
        def run(part):
            if g is None:
                return limit_eager(part)
            out = []
            for _ in part:
                t = time.perf_counter()
                g.replay()
                sync()
                out.append((time.perf_counter() - t) * 1e3)
            return out
        return run

    limit_graph, limit_graph_cl = replayed(graph), replayed(graph_cl)
    if args.compile:  # the limit of a compiled forward, so a compiled runner is also read against its own kind
        net_c = torch.compile(copy.deepcopy(net), dynamic=False)
        limit_graph_compiled = replayed(capture_forward(net_c, x_gpu) if cuda else None)

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
    fast = dict(device=dev, uint8_input=spec, half=cuda, fuse=True, cuda_graph=cuda, slots=args.slots)
    dec = dict(decode=post, max_candidates=args.max_candidates)
    runner = TorchRunner(copy.deepcopy(yolo.model), **dec, **fast)
    trim_runner = TorchRunner(copy.deepcopy(yolo.model), device_nms=False, **dec, **fast)
    det = Detector(runner, letterbox=spec, postprocess=post).__enter__()
    trim_det = Detector(trim_runner, letterbox=spec, postprocess=post).__enter__()
    host_det = Detector(TorchRunner(copy.deepcopy(yolo.model), **fast), letterbox=spec, postprocess=post).__enter__()
    cl_det = Detector(TorchRunner(copy.deepcopy(yolo.model), channels_last=True, **dec, **fast), letterbox=spec,
                      postprocess=post).__enter__()
    cl_trim_det = Detector(TorchRunner(copy.deepcopy(yolo.model), channels_last=True, device_nms=False, **dec, **fast),
                           letterbox=spec, postprocess=post).__enter__()
    # A/B of this release's two host/device changes, each against the default runner above:
    # torch ops (the decode alone about 110 kernels) instead of the Triton kernels (normalise, decode), np.copyto instead of the
    # threaded copy of the frame into the pinned input
    torchdec_runner = TorchRunner(copy.deepcopy(yolo.model), kernels="torch", **dec, **fast)
    torchdec_det = Detector(torchdec_runner, letterbox=spec, postprocess=post).__enter__()
    npcopy_det = Detector(TorchRunner(copy.deepcopy(yolo.model), threaded_copy=False, **dec, **fast), letterbox=spec,
                          postprocess=post).__enter__()
    extra_dets: Dict[str, Any] = {}
    if args.compile:
        for form in ("decode", "all"):
            extra_dets[form] = Detector(TorchRunner(copy.deepcopy(yolo.model), compile=form, **dec, **fast),
                                        letterbox=spec, postprocess=post).__enter__()
    every_det = (det, trim_det, host_det, cl_det, cl_trim_det, torchdec_det, npcopy_det, *extra_dets.values())
    for f in frames[:5]:
        for d in every_det:
            d(f)
    ek_dets: Dict[int, Any] = {}
    trim_dets: Dict[int, Any] = {}
    host_dets: Dict[int, Any] = {}
    stage_ms: Dict[str, List[float]] = {"preprocess": [], "infer": [], "postprocess": []}
    trim_stage_ms: Dict[str, List[float]] = {"preprocess": [], "infer": [], "postprocess": []}
    pipe_fps: Dict[str, List[float]] = {"nms": [], "trim": []}

    def staged(detector, dets, stages):
        def run(part):
            out = []
            for f in part:
                t = time.perf_counter()
                d = detector(f)
                out.append((time.perf_counter() - t) * 1e3)
                dets[id(f)] = d
                for k in stages:
                    stages[k].append(detector.timings[f"{k}_s"] * 1e3)
            return out
        return run

    ek_frame, ek_frame_trim = staged(det, ek_dets, stage_ms), staged(trim_det, trim_dets, trim_stage_ms)

    def pipelined(detector, fps):
        def run(part):
            pipe = Pipeline(detector, queue_size=args.slots)
            stream = [f for _ in range(args.pipeline_repeat) for f in part]
            t = time.perf_counter()
            n = sum(1 for _ in pipe.run(stream))
            wall = time.perf_counter() - t
            fps.append(n / wall)
            return [wall * 1e3 / max(n, 1)] * len(part)
        return run

    torchdec_dets: Dict[int, Any] = {}
    # Host parts alone, on the same frames (a frame fresh from memory, as from a decoder): the copy into a
    # pinned buffer by numpy (one thread) and by torch (its intra-op threads); the host side of the decode
    # (rows -> Detections in frame pixels); and the runner's own graph replayed without any host work.
    pinned = torch.empty((args.imgsz, args.imgsz, 3), dtype=torch.uint8, pin_memory=cuda)
    pinned_np = pinned.numpy()

    def host_copy(use_torch):
        def run(part):
            out = []
            for f in part:
                t = time.perf_counter()
                if use_torch and f.shape == pinned_np.shape:
                    pinned.copy_(torch.from_numpy(f))
                else:
                    np.copyto(pinned_np[:f.shape[0], :f.shape[1]], f[:args.imgsz, :args.imgsz])
                out.append((time.perf_counter() - t) * 1e3)
            return out
        return run

    def host_post(part):
        out = []
        for f in part:
            outputs, info = runner.collect(runner.submit(det.prepare(f, True)[0])), det.prepare(f)[1]
            t = time.perf_counter()
            det.decode(outputs, info)
            out.append((time.perf_counter() - t) * 1e3)
        return out

    def runner_graph(write: bool, event: bool):
        """The runner's first slot graph replayed alone (no host work); ``write``: each replay after the frame
        was written into its pinned input; ``event``: waited on as the runner's collect does."""
        def run(part):
            if not runner._slots:
                return [0.0] * len(part)
            slot, out = runner._slots[0], []
            for f in part:
                if write:
                    runner.host_copy(slot.host_np, f if f.shape == slot.host_np.shape[1:] else slot.host_np[0])
                t = time.perf_counter()
                slot.graph.replay()
                if event:
                    slot.event.record()
                    slot.event.synchronize()
                else:
                    sync()
                out.append((time.perf_counter() - t) * 1e3)
            return out
        return run

    def runner_submit_collect(part):  # the runner's own Python around its graph: submit + collect, frame in place
        out = []
        for f in part:
            feed = det.prepare(f, True)[0]
            t = time.perf_counter()
            runner.collect(runner.submit(feed, check_inputs=False))
            out.append((time.perf_counter() - t) * 1e3)
        return out

    methods = {"limit_graph": limit_graph, "limit_graph_channels_last": limit_graph_cl, "limit_eager": limit_eager,
               "ultralytics_predict": ul_predict, "ultralytics_stream": ul_stream, "edgekit_frame": ek_frame,
               "edgekit_frame_trim": ek_frame_trim, "edgekit_frame_channels_last": staged(cl_det, {}, {}),
               "edgekit_frame_channels_last_trim": staged(cl_trim_det, {}, {}), "edgekit_frame_host_decode": staged(host_det, host_dets, {}),
               "edgekit_pipelined": pipelined(det, pipe_fps["nms"]),
               "edgekit_pipelined_trim": pipelined(trim_det, pipe_fps["trim"]),
               "edgekit_frame_torch_decode": staged(torchdec_det, torchdec_dets, {}),
               "edgekit_frame_numpy_copy": staged(npcopy_det, {}, {}),
               "runner_graph_only": runner_graph(False, False),
               "runner_graph_after_host_write": runner_graph(True, False), "runner_graph_event_wait": runner_graph(True, True),
               "runner_submit_collect": runner_submit_collect, "host_copy_numpy": host_copy(False), "host_copy_torch": host_copy(True),
               "host_post_decoded_rows": host_post}
    compiled_dets: Dict[str, Dict[int, Any]] = {form: {} for form in extra_dets}
    if args.compile:
        methods["limit_graph_compiled"] = limit_graph_compiled
        pipe_fps["compiled_all"] = []
        for form, d in extra_dets.items():
            methods[f"edgekit_frame_compiled_{form}"] = staged(d, compiled_dets[form], {})
        methods["edgekit_pipelined_compiled_all"] = pipelined(extra_dets["all"], pipe_fps["compiled_all"])
    per_frame = timed_chunks(methods, frames, args.rounds)
    fallbacks = {"nms": runner.decode_fallbacks, "trim": trim_runner.decode_fallbacks,
                 "torch_decode": torchdec_runner.decode_fallbacks}
    for d in every_det:
        d.__exit__(None, None, None)

    # ---- agreement: the same matching as the CPU side-by-side ----------------------------------------
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from vs_ultralytics import agreement

    agree = agreement(frames, ek_dets, ul_dets)
    matched, total = agree["matched"], agree["total"]
    same = sum(1 for f in frames if id(f) in ek_dets and id(f) in host_dets and _same(ek_dets[id(f)], host_dets[id(f)]))
    same_torchdec = sum(1 for f in frames if id(f) in torchdec_dets and id(f) in host_dets
                        and _same(torchdec_dets[id(f)], host_dets[id(f)]))
    same_trim = sum(1 for f in frames if id(f) in trim_dets and id(f) in host_dets
                    and _same(trim_dets[id(f)], host_dets[id(f)]))

    result = {name: stats(ms) for name, ms in per_frame.items()}
    lim = result["limit_graph"]["p50"]
    fps = {k: float(np.mean(v)) for k, v in pipe_fps.items()}
    frame = result["edgekit_frame"]["p50"]
    summary = {
        "edgekit_frame_over_limit": frame / lim,
        "edgekit_frame_trim_over_limit": result["edgekit_frame_trim"]["p50"] / lim,
        "ultralytics_over_edgekit": result["ultralytics_predict"]["p50"] / frame,
        "ultralytics_over_edgekit_trim": result["ultralytics_predict"]["p50"] / result["edgekit_frame_trim"]["p50"],
        "ultralytics_stream_over_edgekit": result["ultralytics_stream"]["p50"] / frame,
        "host_decode_over_gpu_decode": result["edgekit_frame_host_decode"]["p50"] / frame,
        "channels_last_frame_over_limit": result["edgekit_frame_channels_last"]["p50"] / lim,
        "channels_last_trim_frame_over_limit": result["edgekit_frame_channels_last_trim"]["p50"] / lim,
        "channels_last_frame_over_channels_last_limit": (result["edgekit_frame_channels_last"]["p50"]
                                                         / result["limit_graph_channels_last"]["p50"]),
        "channels_last_trim_frame_over_channels_last_limit": (result["edgekit_frame_channels_last_trim"]["p50"]
                                                              / result["limit_graph_channels_last"]["p50"]),
        "pipelined_fps": fps["nms"], "pipelined_trim_fps": fps["trim"],
        "pipelined_fps_over_limit_fps": fps["nms"] / (1e3 / lim),
        "pipelined_trim_fps_over_limit_fps": fps["trim"] / (1e3 / lim),
        "edgekit_stage_p50_ms": {k: float(np.percentile(v, 50)) for k, v in stage_ms.items()},
        "edgekit_trim_stage_p50_ms": {k: float(np.percentile(v, 50)) for k, v in trim_stage_ms.items()},
        "gpu_decode_fallbacks": fallbacks,
        "gpu_decode_equals_host_decode_frames": same, "trim_equals_host_decode_frames": same_trim,
        "torch_decode_equals_host_decode_frames": same_torchdec,
        "kernels_used": runner.kernels_used,
        "torch_decode_over_default": result["edgekit_frame_torch_decode"]["p50"] / frame,
        "numpy_copy_over_default": result["edgekit_frame_numpy_copy"]["p50"] / frame,
        "runner_graph_over_limit": result["runner_graph_only"]["p50"] / lim,
        "frames_compared": len(frames),
        "detections_matched": matched, "detections_total": total,
        "agreement": agree["rate"],
    }
    # Each target for each form of the runtime (device NMS = the default, trim = device_nms=False)
    if args.compile:
        summary["compiled_equal_to_host_decode_frames"] = {
            form: sum(1 for f in frames if id(f) in got and id(f) in host_dets and _same(got[id(f)], host_dets[id(f)]))
            for form, got in compiled_dets.items()}
        for form in extra_dets:
            summary[f"edgekit_frame_compiled_{form}_over_limit"] = result[f"edgekit_frame_compiled_{form}"]["p50"] / lim
        summary["edgekit_frame_compiled_all_over_compiled_limit"] = (result["edgekit_frame_compiled_all"]["p50"]
                                                                     / result["limit_graph_compiled"]["p50"])
        summary["pipelined_compiled_all_fps_over_limit_fps"] = fps["compiled_all"] / (1e3 / lim)
    targets = {}
    for form, key in (("nms", ""), ("trim", "_trim")):
        targets[f"[{form}] edgekit_frame_over_limit <= 1.3"] = summary[f"edgekit_frame{key}_over_limit"] <= 1.3
        targets[f"[{form}] ultralytics_over_edgekit >= 4"] = summary[f"ultralytics_over_edgekit{key}"] >= 4.0
        targets[f"[{form}] pipelined_fps_over_limit_fps >= 0.9"] = summary[f"pipelined{key}_fps_over_limit_fps"] >= 0.9
    machine = {"gpu": torch.cuda.get_device_name(0) if cuda else "cpu (smoke)", "torch": torch.__version__, "python": platform.python_version(),
               "cpu_count": __import__("os").cpu_count()}
    import ultralytics

    machine["ultralytics"] = ultralytics.__version__
    report = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "frames": len(frames), "imgsz": args.imgsz,
              "rounds": args.rounds, "conf": args.conf, "max_candidates": args.max_candidates, "slots": args.slots,
              "pipeline_repeat": args.pipeline_repeat, "targets_met": targets,
              "weights": args.weights or "yolov8n-obb.yaml, untrained (class branch spread)",
              "machine": machine, "per_method_ms": result, "summary": summary}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = machine["gpu"].lower().replace(" ", "-")
    tag = tag if cuda else "smoke-cpu"
    (out / f"runtime_gpu_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# GPU runtime, {machine['gpu']} ({len(frames)} frames at {args.imgsz}, {args.rounds} interleaved rounds)",
             "", f"weights: {report['weights']}; torch {machine['torch']}, ultralytics {machine['ultralytics']}", "",
             f"command: `{report['command']}`", "",
             "| method | p50 ms | p90 ms | p99 ms | mean ms | n |", "| --- | --- | --- | --- | --- | --- |"]
    for name, s in result.items():
        lines.append(f"| {name} | {s['p50']:.2f} | {s['p90']:.2f} | {s['p99']:.2f} | {s['mean']:.2f} | {s['n']} |")
    lines += ["", f"- edgekit per frame / CUDA-graph limit: **{summary['edgekit_frame_over_limit']:.2f}x** "
              f"(device NMS); **{summary['edgekit_frame_trim_over_limit']:.2f}x** (trim on the device, NMS on the host)",
              f"- Ultralytics predict / edgekit per frame: **{summary['ultralytics_over_edgekit']:.2f}x** (device NMS); "
              f"**{summary['ultralytics_over_edgekit_trim']:.2f}x** (trim)",
              f"- Ultralytics stream=True / edgekit per frame: {summary['ultralytics_stream_over_edgekit']:.2f}x",
              f"- host decode / GPU decode, edgekit per frame: {summary['host_decode_over_gpu_decode']:.2f}x",
              f"- channels-last runner per frame / limit: {summary['channels_last_frame_over_limit']:.2f}x, trim "
              f"{summary['channels_last_trim_frame_over_limit']:.2f}x (/ channels-last limit: "
              f"{summary['channels_last_frame_over_channels_last_limit']:.2f}x, trim "
              f"{summary['channels_last_trim_frame_over_channels_last_limit']:.2f}x)",
              f"- edgekit pipelined ({args.slots} graph slots): {summary['pipelined_fps']:.0f} FPS = "
              f"{summary['pipelined_fps_over_limit_fps']:.2f}x of 1 / limit (device NMS); "
              f"{summary['pipelined_trim_fps']:.0f} FPS = {summary['pipelined_trim_fps_over_limit_fps']:.2f}x (trim)",
              f"- edgekit stage p50 (ms), device NMS: {_rounded(summary['edgekit_stage_p50_ms'])}; trim: "
              f"{_rounded(summary['edgekit_trim_stage_p50_ms'])}",
              f"- GPU decode: frames that fell back to the host decode (more than {args.max_candidates} candidates): "
              f"{fallbacks}; equal to the host decode on {same}/{len(frames)} frames (device NMS), "
              f"{same_trim}/{len(frames)} (trim)",
              f"- kernels: {summary['kernels_used']} (default); with torch ops instead, per frame is "
              f"{summary['torch_decode_over_default']:.2f}x the default (equal to the host decode on "
              f"{same_torchdec}/{len(frames)} frames); np.copyto instead of the threaded copy: "
              f"{summary['numpy_copy_over_default']:.2f}x; the runner's graph alone (upload, normalise, forward, "
              f"decode, copy back; no host work): {summary['runner_graph_over_limit']:.2f}x the limit",
              f"- detections matched edgekit vs Ultralytics: {matched}/{total} ({summary['agreement']:.3f})",
              f"- targets: {targets}"]
    if args.compile:
        lines += [f"- torch.compile forms: decode fused {summary['edgekit_frame_compiled_decode_over_limit']:.2f}x the "
                  f"limit; decode + forward fused {summary['edgekit_frame_compiled_all_over_limit']:.2f}x the limit, "
                  f"{summary['edgekit_frame_compiled_all_over_compiled_limit']:.2f}x the compiled forward's own limit; "
                  f"pipelined {summary['pipelined_compiled_all_fps_over_limit_fps']:.2f}x of 1 / limit; frames equal "
                  f"to the host decode: {summary['compiled_equal_to_host_decode_frames']}"]
    (out / f"runtime_gpu_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _rounded(stages: Dict[str, float]) -> Dict[str, float]:
    return {k: round(v, 3) for k, v in stages.items()}


def _same(a: Any, b: Any) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.class_ids, b.class_ids))


if __name__ == "__main__":
    main()
