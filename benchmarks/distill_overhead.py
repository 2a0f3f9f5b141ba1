"""Train-step time: YOLOv8n-OBB with DINOv3 distillation vs plain Ultralytics OBB training, same run.

Every arm runs the real training step on the same batch, interleaved round by round (the order
rotates each round): Ultralytics' ``OBBModel.loss`` (forward + v8OBBLoss) + backward + AdamW step
under AMP. Each distillation variant adds edgekit's hooks, the frozen teacher (half precision on
CUDA), projectors and the masked cosine loss (the very ``Distiller``/``DistilledCriterion`` the
trainer uses), with the teacher run as the variant says:

- ``eager``: synchronously inside the loss, kernel by kernel (the pre-stream behaviour);
- ``stream``: started on a side CUDA stream when the image enters the student, joined in the loss;
- ``graph``: synchronously, as one CUDA graph replay (``teacher.cuda_graph: true``);
- ``stream-graph``: both (what the trainer does by default on CUDA).

Reports median ms/step per arm and each variant's ratio to plain, the teacher forward alone
(eager and graphed), and a loss check: every variant's distillation loss on the first batch
(before any step), which must agree within fp16 noise.

GPU (the lead's run)::

    python benchmarks/distill_overhead.py --device 0 --imgsz 640 --batch 16 --steps 50 --warmup 10 \
        --teacher-weights random --teacher-imgsz 640 --variants eager,stream,graph,stream-graph --out DIR

CPU smoke test::

    python benchmarks/distill_overhead.py --device cpu --imgsz 64 --batch 2 --steps 2 --warmup 1 \
        --teacher-weights random --tiny-teacher --variants eager,stream,stream-graph --out /tmp/bench
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import re
import statistics
import sys
import time
from functools import partial
from pathlib import Path
from typing import Dict, List, Tuple

os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"
# variant name -> (teacher on a side stream, teacher as a CUDA graph)
VARIANTS: Dict[str, Tuple[bool, bool]] = {"eager": (False, False), "stream": (True, False), "graph": (False, True),
                                          "stream-graph": (True, True)}


def _variant_list(text: str) -> List[str]:
    names = [v.strip().replace("+", "-") for v in text.split(",") if v.strip()]
    names = ["stream-graph" if n == "graph-stream" else n for n in names]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown variant(s) {unknown}; choose from {', '.join(VARIANTS)}")
    return list(dict.fromkeys(names))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu", help="cpu or a CUDA index, e.g. 0")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--steps", type=int, default=50, help="timed steps per arm")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps per arm first")
    p.add_argument("--teacher", default="vit_small_patch16_dinov3")
    p.add_argument("--teacher-weights", default="auto", help="auto (artifacts/models/dino), a path, or random")
    p.add_argument("--teacher-imgsz", type=int, default=None, help="teacher input side (multiple of 16)")
    p.add_argument("--teacher-dtype", default="auto", choices=["auto", "fp16", "bf16", "fp32"])
    p.add_argument("--teacher-cuda-graph", type=int, choices=[0, 1], default=1,
                   help="without --variants: 1 = one stream-graph arm, 0 = one stream arm; "
                        "with --variants, 0 refuses graph variants")
    p.add_argument("--variants", type=_variant_list, default=None,
                   help=f"comma-separated distillation variants timed side by side: {', '.join(VARIANTS)} "
                        "('+' accepted for '-')")
    p.add_argument("--tiny-teacher", action="store_true", help="a 2-block, 32-wide DINOv3 (CPU smoke tests)")
    p.add_argument("--amp", type=int, default=1, help="1: autocast fp16 on CUDA like Ultralytics' default")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON + Markdown results")
    args = p.parse_args(argv)
    if args.variants is None:
        args.variants = ["stream-graph" if args.teacher_cuda_graph else "stream"]
    elif not args.teacher_cuda_graph and any(VARIANTS[v][1] for v in args.variants):
        p.error("--teacher-cuda-graph 0 contradicts the graph variant(s) in --variants")
    return args


def _batch(b: int, size: int, device, n_obj: int = 8):
    import torch

    g = torch.Generator().manual_seed(0)
    n = b * n_obj
    xy = torch.rand(n, 2, generator=g) * 0.8 + 0.1
    wh = torch.rand(n, 2, generator=g) * 0.15 + 0.03
    wh = torch.stack([wh.max(1).values, wh.min(1).values], 1)  # Ultralytics convention: w >= h
    ang = torch.rand(n, 1, generator=g) * torch.pi - torch.pi / 4
    return {"img": torch.rand(b, 3, size, size, generator=g).to(device),
            "cls": torch.randint(0, 5, (n, 1), generator=g).float().to(device),
            "bboxes": torch.cat([xy, wh, ang], 1).to(device),
            "batch_idx": torch.arange(b).repeat_interleave(n_obj).float().to(device)}


def _student(device):
    from ultralytics.nn.tasks import OBBModel
    from ultralytics.utils import DEFAULT_CFG

    model = OBBModel("yolov8n-obb.yaml", nc=5, verbose=False).to(device)
    model.args = DEFAULT_CFG
    model.train()
    return model


def _arms(args, device):
    """{"plain": (model, optimizer, None), <variant>: (model, optimizer, distiller)}: same init weights in all."""
    import torch

    from edgekit.train.obb.config import DistillConfig, TeacherConfig
    from edgekit.train.obb.distill import Distiller, Projectors, probe_channels
    from edgekit.train.obb.teacher import Teacher, create_teacher_model, resolve_teacher_weights

    torch.manual_seed(0)
    plain = _student(device)
    kwargs = dict(embed_dim=32, depth=2, num_heads=2) if args.tiny_teacher else {}
    tcfg = TeacherConfig(name=args.teacher, weights=args.teacher_weights, imgsz=args.teacher_imgsz,
                         dtype=args.teacher_dtype, model_kwargs=kwargs)
    weights = resolve_teacher_weights(tcfg)
    vit = create_teacher_model(tcfg, weights)  # one frozen ViT shared by every variant's Teacher
    teachers = {g: Teacher(vit, tcfg.model_copy(update={"cuda_graph": g}), device, str(weights or "random"))
                for g in (False, True)}
    dcfg = DistillConfig()
    proj0 = Projectors(dcfg.layers, probe_channels(plain, dcfg.layers), teachers[False].width).to(device)
    arms = {"plain": (plain, torch.optim.AdamW(plain.parameters(), lr=1e-3), None)}
    for name in args.variants:
        stream, graph = VARIANTS[name]
        model, proj = copy.deepcopy(plain), copy.deepcopy(proj0)
        distiller = Distiller(teachers[graph], proj, dcfg, async_teacher=stream)
        distiller.weight = 1.0
        distiller.attach(model)
        arms[name] = (model, torch.optim.AdamW([*model.parameters(), *proj.parameters()], lr=1e-3), distiller)
    return arms, teachers


def _step(model, opt, scaler, batch, device, amp: bool) -> None:
    import torch

    with torch.autocast(device_type=device.type, enabled=amp):
        loss, _ = model.loss(batch)
    scaler.scale(loss.sum()).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


def _loss_check(arms, batch, device, amp: bool) -> Dict[str, float]:
    """Each arm's first-batch loss before any step (no grad); distillation variants must agree.

    Runs on every arm, plain included, so BatchNorm statistics move alike; captures the graphs too.
    """
    import torch

    out = {}
    for name, (model, _, distiller) in arms.items():
        with torch.no_grad(), torch.autocast(device_type=device.type, enabled=amp):
            _, items = model.loss(batch)
        if distiller is not None:
            out[name] = float(items["dino_loss"])
    return out


def _timed(fn, sync, n: int) -> List[float]:
    times = []
    for _ in range(n):
        sync()
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def run(args) -> Dict:
    import torch

    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}")
    amp = bool(args.amp) and device.type == "cuda"
    arms, teachers = _arms(args, device)
    batch = _batch(args.batch, args.imgsz, device)
    check = _loss_check(arms, batch, device, amp)
    scalers = {k: torch.amp.GradScaler(device.type, enabled=amp) for k in arms}
    times: Dict[str, List[float]] = {k: [] for k in arms}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    names = list(arms)
    for i in range(args.warmup + args.steps):
        k = i % len(names)
        for name in names[k:] + names[:k]:  # interleaved; who goes first rotates every round
            model, opt, _ = arms[name]
            t = _timed(partial(_step, model, opt, scalers[name], batch, device, amp), sync, 1)[0]
            if i >= args.warmup:
                times[name].append(t)
    n_fwd = max(3, args.steps // 2)
    with torch.no_grad():  # the teacher forward alone, for the breakdown
        t_fwd = {("graph" if g else "eager"): statistics.median(_timed(partial(t.features, batch["img"]), sync, n_fwd))
                 for g, t in teachers.items()}
    plain = statistics.median(times["plain"])
    variants = []
    for name in args.variants:
        stream, graph = VARIANTS[name]
        teacher = arms[name][2].teacher
        ms = statistics.median(times[name])
        variants.append({"name": name, "side_stream": stream and device.type == "cuda", "cuda_graph": graph,
                         "cuda_graph_active": bool(teacher.graph_shapes), "ms_per_step": ms,
                         "p90_ms": _p90(times[name]), "ratio": ms / plain, "dino_loss_first_batch": check[name]})
    best = min(variants, key=lambda v: v["ratio"])
    teacher = teachers[False]
    return {"benchmark": "distill_overhead", "config": {**vars(args), "out": str(args.out)},
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "amp": amp, "teacher_dtype": str(teacher.dtype), "teacher_source": teacher.source,
            "teacher_input": list(teacher.input_hw((args.imgsz, args.imgsz))),
            "plain_ms_per_step": plain, "plain_p90_ms": _p90(times["plain"]), "variants": variants,
            "teacher_forward_ms": t_fwd, "best_variant": best["name"], "best_ratio": best["ratio"],
            "loss_check_max_abs_diff": max(check.values()) - min(check.values()),
            "target_ratio": 1.25, "steps": args.steps, "versions": _versions()}


def _p90(values: List[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def _versions() -> Dict[str, str]:
    import timm
    import torch
    import ultralytics

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
            "ultralytics": ultralytics.__version__, "timm": timm.__version__}


def result_stem(result: Dict) -> str:
    """File stem naming size, batch, device and teacher input; only letters, digits, '.', '_' and '-'."""
    cfg = result["config"]
    dev = "cpu" if cfg["device"] == "cpu" else result["device"].lower()
    stem = f"distill_overhead_{cfg['imgsz']}px_b{cfg['batch']}_{dev}_teacher{result['teacher_input'][0]}"
    return re.sub(r"[^A-Za-z0-9._-]+", "-", stem)


def write(result: Dict, out: Path) -> Path:
    from edgekit.core.atomic import write_json_atomic, write_text_atomic

    stem = result_stem(result)
    write_json_atomic(out / f"{stem}.json", result)
    md = ["# Distillation overhead per train step", "",
          f"Device: {result['device']} (AMP {result['amp']}); batch {result['config']['batch']}, "
          f"{result['config']['imgsz']} px; teacher {result['config']['teacher']} "
          f"({result['teacher_source']}, {result['teacher_dtype']}, input {result['teacher_input']}); "
          f"{result['steps']} timed steps per arm, interleaved", "",
          "| arm | side stream | CUDA graph (active) | ms / step (median) | p90 | ratio to plain | dino loss, batch 1 |",
          "|---|---|---|---|---|---|---|",
          f"| plain Ultralytics OBB | - | - | {result['plain_ms_per_step']:.2f} | {result['plain_p90_ms']:.2f} "
          "| 1.000 | - |"]
    for v in result["variants"]:
        graph = f"{'yes' if v['cuda_graph'] else 'no'} ({'yes' if v['cuda_graph_active'] else 'no'})"
        md.append(f"| distill: {v['name']} | {'yes' if v['side_stream'] else 'no'} | {graph} | "
                  f"{v['ms_per_step']:.2f} | {v['p90_ms']:.2f} | {v['ratio']:.3f} | {v['dino_loss_first_batch']:.5f} |")
    fwd = ", ".join(f"{k} {v:.2f} ms" for k, v in result["teacher_forward_ms"].items())
    md += ["", f"Teacher forward alone (synchronous): {fwd}", "",
           f"**Best: {result['best_variant']}, {result['best_ratio']:.3f}x plain** (target <= {result['target_ratio']}x); "
           f"distillation losses of the variants agree within {result['loss_check_max_abs_diff']:.2e}", "",
           "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), ""]
    return write_text_atomic(out / f"{stem}.md", "\n".join(md))


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    path = write(result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k not in ("config", "versions")}, indent=2))
    print(f"wrote {path} (+ .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
