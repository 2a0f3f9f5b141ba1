"""Train-step time: YOLOv8n-OBB with DINOv3 distillation vs plain Ultralytics OBB training, same run.

Both arms run the real training step on the same batch, interleaved round by round: Ultralytics'
``OBBModel.loss`` (forward + v8OBBLoss) + backward + AdamW step under AMP; the distillation arm adds
edgekit's hooks, the frozen teacher (half precision on CUDA), projectors and the masked cosine loss
(the very ``Distiller``/``DistilledCriterion`` the trainer uses). Reports median ms/step and the ratio.

GPU (the lead's run)::

    python benchmarks/distill_overhead.py --device 0 --imgsz 640 --batch 16 --steps 50 --teacher-weights auto
    python benchmarks/distill_overhead.py --device 0 --imgsz 640 --batch 16 --steps 50 --teacher-imgsz 320

CPU smoke test::

    python benchmarks/distill_overhead.py --device cpu --imgsz 64 --batch 2 --steps 2 --warmup 1 \
        --teacher-weights random --tiny-teacher
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"


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
    p.add_argument("--tiny-teacher", action="store_true", help="a 2-block, 32-wide DINOv3 (CPU smoke tests)")
    p.add_argument("--amp", type=int, default=1, help="1: autocast fp16 on CUDA like Ultralytics' default")
    p.add_argument("--out", type=Path, default=RESULTS, help="directory for the JSON + Markdown results")
    return p.parse_args(argv)


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
    """{"plain": (model, optimizer, distiller=None), "distill": (...)}: same init weights in both."""
    import copy

    import torch

    from edgekit.train.obb.config import DistillConfig, TeacherConfig
    from edgekit.train.obb.distill import Distiller, Projectors, probe_channels
    from edgekit.train.obb.teacher import build_teacher

    torch.manual_seed(0)
    plain = _student(device)
    dist = copy.deepcopy(plain)
    kwargs = dict(embed_dim=32, depth=2, num_heads=2) if args.tiny_teacher else {}
    tcfg = TeacherConfig(name=args.teacher, weights=args.teacher_weights, imgsz=args.teacher_imgsz,
                         dtype=args.teacher_dtype, model_kwargs=kwargs)
    teacher = build_teacher(tcfg, device)
    dcfg = DistillConfig()
    proj = Projectors(dcfg.layers, probe_channels(dist, dcfg.layers), teacher.width).to(device)
    distiller = Distiller(teacher, proj, dcfg)
    distiller.weight = 1.0
    distiller.attach(dist)
    opt_p = torch.optim.AdamW(plain.parameters(), lr=1e-3)
    opt_d = torch.optim.AdamW([*dist.parameters(), *proj.parameters()], lr=1e-3)
    return {"plain": (plain, opt_p, None), "distill": (dist, opt_d, distiller)}, teacher


def _step(model, opt, scaler, batch, device, amp: bool) -> None:
    import torch

    with torch.autocast(device_type=device.type, enabled=amp):
        loss, _ = model.loss(batch)
    scaler.scale(loss.sum()).backward()
    scaler.step(opt)
    scaler.update()
    opt.zero_grad(set_to_none=True)


def run(args) -> Dict:
    import torch

    device = torch.device("cpu" if args.device == "cpu" else f"cuda:{args.device}")
    amp = bool(args.amp) and device.type == "cuda"
    arms, teacher = _arms(args, device)
    batch = _batch(args.batch, args.imgsz, device)
    scalers = {k: torch.amp.GradScaler(device.type, enabled=amp) for k in arms}
    times: Dict[str, List[float]] = {k: [] for k in arms}
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for i in range(args.warmup + args.steps):
        order = list(arms) if i % 2 == 0 else list(arms)[::-1]  # interleaved, alternating who goes first
        for name in order:
            model, opt, _ = arms[name]
            sync()
            t0 = time.perf_counter()
            _step(model, opt, scalers[name], batch, device, amp)
            sync()
            if i >= args.warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    with torch.no_grad():  # the teacher forward alone, for the breakdown
        t_times = []
        for _ in range(max(3, args.steps // 2)):
            sync()
            t0 = time.perf_counter()
            teacher.features(batch["img"])
            sync()
            t_times.append((time.perf_counter() - t0) * 1e3)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"benchmark": "distill_overhead", "config": vars(args) | {"out": str(args.out)},
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
            "amp": amp, "teacher_dtype": str(teacher.dtype), "teacher_source": teacher.source,
            "teacher_input": list(teacher.input_hw((args.imgsz, args.imgsz))),
            "plain_ms_per_step": med["plain"], "distill_ms_per_step": med["distill"],
            "teacher_forward_ms": statistics.median(t_times), "ratio": med["distill"] / med["plain"],
            "target_ratio": 1.25, "steps": args.steps, "versions": _versions()}


def _versions() -> Dict[str, str]:
    import timm
    import torch
    import ultralytics

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
            "ultralytics": ultralytics.__version__, "timm": timm.__version__}


def write(result: Dict, out: Path) -> Path:
    from edgekit.core.atomic import write_json_atomic, write_text_atomic

    stem = f"distill_overhead_{result['config']['imgsz']}px_b{result['config']['batch']}_{result['config']['device']}"
    write_json_atomic(out / f"{stem}.json", result)
    md = ["# Distillation overhead per train step", "",
          f"Device: {result['device']} (AMP {result['amp']}); teacher {result['config']['teacher']} "
          f"({result['teacher_source']}, {result['teacher_dtype']}, input {result['teacher_input']})", "",
          "| arm | ms / step (median) |", "|---|---|",
          f"| plain Ultralytics OBB | {result['plain_ms_per_step']:.2f} |",
          f"| + DINOv3 distillation | {result['distill_ms_per_step']:.2f} |",
          f"| teacher forward alone | {result['teacher_forward_ms']:.2f} |", "",
          f"**Ratio distill / plain: {result['ratio']:.3f}x** (target <= {result['target_ratio']}x)", "",
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
