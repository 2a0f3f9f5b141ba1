"""The torch runner's device work around the forward, each form alone as a CUDA graph, side by side.

* decode of one (4 + nc + 1, 8400) fp16 output: the Triton kernel (``edgekit.deploy.runners.triton_obb_decode``,
  three launches) for a sweep of block sizes / warps, vs the torch ops (``torch_decode.decode_obb_rows``, ~110 kernels);
* input conversion of a 640 x 640 uint8 frame: the Triton kernel vs the torch ops (NCHW and channels-last).

Each graph is replayed ``--reps`` times with a synchronize after each (the per-frame cost, launch included),
and an empty graph gives the floor of replay + synchronize. The raw outputs are synthetic (clustered boxes,
``--candidates`` anchors above conf), the same for every form; the decode results are checked equal to
the numpy decode.

    python benchmarks/triton_kernels_gpu.py --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def synthetic_raw(rng, anchors: int, nc: int, candidates: int) -> np.ndarray:
    raw = np.zeros((4 + nc + 1, anchors), np.float32)
    raw[4:4 + nc] = rng.random((nc, anchors)) * 0.2
    hot = rng.choice(anchors, candidates, replace=False)
    raw[4 + rng.integers(0, nc, candidates), hot] = rng.uniform(0.3, 0.95, candidates)
    centres = rng.uniform(0, 640, (max(candidates // 4, 1), 2))[rng.integers(0, max(candidates // 4, 1), anchors)]
    raw[:2] = (centres + rng.normal(0, 4, centres.shape)).T
    raw[2:4] = rng.uniform(8, 60, (2, anchors))
    raw[-1] = rng.uniform(-np.pi / 4, 3 * np.pi / 4, anchors)
    return raw.astype(np.float16).astype(np.float32)


def graph_ms(torch, fn, reps: int) -> float:
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        fn()
    for _ in range(20):
        graph.replay()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        graph.replay()
        torch.cuda.synchronize()
        times.append((time.perf_counter() - t) * 1e3)
    return float(np.percentile(times, 50))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--candidates", type=int, default=60)
    ap.add_argument("--nc", type=int, default=5)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()

    import torch

    from edgekit.core.letterbox import LetterboxSpec
    from edgekit.core.postprocess import PostprocessSpec, decode_obb, detections_from_rows
    from edgekit.deploy.runners import triton_normalise, triton_obb_decode
    from edgekit.deploy.runners.torch_decode import decode_obb_rows

    assert torch.cuda.is_available(), "needs a CUDA GPU"
    post = PostprocessSpec(conf=0.25, iou=0.7)
    raw_np = synthetic_raw(np.random.default_rng(0), 8400, args.nc, args.candidates)
    raw = torch.from_numpy(raw_np).half().cuda()
    want = decode_obb(raw_np, post)[0]
    params = triton_obb_decode.decode_params(post, "cuda")
    res = {"floor_empty_graph": graph_ms(torch, lambda: None, args.reps)}
    rows = decode_obb_rows(raw, post, 256).cpu().numpy()
    res["decode_torch_ops"] = graph_ms(torch, lambda: decode_obb_rows(raw, post, 256), args.reps)
    equal = {"floor_empty_graph": "", "decode_torch_ops": bool(_same(detections_from_rows(rows), want))}
    sweep = [(1024, 64, 32, 4), (1024, 64, 32, 8), (512, 64, 16, 4), (2048, 64, 32, 4), (1024, 32, 16, 4),
             (1024, 64, 64, 4), (1024, 32, 32, 2)]
    for block_a, block_e, block_c, warps in sweep:
        triton_obb_decode.CONFIG.update(BLOCK_A=block_a, BLOCK_E=block_e, BLOCK_C=block_c, num_warps=warps)
        name = f"decode_triton_A{block_a}_E{block_e}_C{block_c}_w{warps}"
        out = triton_obb_decode.decode_rows(raw, post, 256, params).cpu().numpy()
        equal[name] = bool(_same(detections_from_rows(out[: int(out[0, 0]) + 1]), want))
        res[name] = graph_ms(torch, lambda: triton_obb_decode.decode_rows(raw, post, 256, params), args.reps)
    spec = LetterboxSpec(imgsz=640)
    frame = torch.randint(0, 256, (1, 640, 640, 3), dtype=torch.uint8, device="cuda")
    order = torch.tensor([2, 1, 0], device="cuda")
    scale = torch.tensor(spec.scale, dtype=torch.float32, device="cuda")
    nparams = triton_normalise.normalise_params(spec, "cuda")
    for fmt_name, fmt in (("nchw", torch.contiguous_format), ("channels_last", torch.channels_last)):
        def ops(fmt_name=fmt_name):
            if fmt_name == "nchw":
                return (frame.permute(0, 3, 1, 2).index_select(1, order).float() * scale).half()
            return (frame.index_select(3, order).permute(0, 3, 1, 2).float() * scale).half()

        def kernel(fmt=fmt):
            x = torch.empty((1, 3, 640, 640), dtype=torch.float16, device="cuda", memory_format=fmt)
            return triton_normalise.normalise(frame, x, nparams, rgb=True, affine=False)

        res[f"normalise_torch_ops_{fmt_name}"] = graph_ms(torch, ops, args.reps)
        res[f"normalise_triton_{fmt_name}"] = graph_ms(torch, kernel, args.reps)
        equal[f"normalise_torch_ops_{fmt_name}"] = "reference"
        equal[f"normalise_triton_{fmt_name}"] = bool(torch.equal(ops(), kernel()))
    report = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "reps": args.reps,
              "candidates": args.candidates, "kept": len(want), "p50_ms": res, "equal_to_reference": equal}
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    tag = report["gpu"].lower().replace(" ", "-")
    (out_dir / f"triton_kernels_{tag}.json").write_text(json.dumps(report, indent=2) + "\n")
    lines = [f"# Device work around the forward, each form alone as a CUDA graph ({report['gpu']})", "",
             f"torch {report['torch']}; p50 of {args.reps} replays, each with a synchronize; decode of a synthetic "
             f"(4 + {args.nc} + 1, 8400) fp16 output with {args.candidates} anchors above conf ({len(want)} kept)", "",
             "| form | p50 ms | over the empty graph ms | equal to the reference |", "| --- | --- | --- | --- |"]
    for name, ms in res.items():
        lines.append(f"| {name} | {ms:.4f} | {ms - res['floor_empty_graph']:.4f} | {equal[name]} |")
    (out_dir / f"triton_kernels_{tag}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def _same(a, b) -> bool:
    return (np.array_equal(a.boxes, b.boxes) and np.array_equal(a.scores, b.scores)
            and np.array_equal(a.class_ids, b.class_ids))


if __name__ == "__main__":
    main()
