"""mAP50 of short from-scratch YOLOv8n-OBB runs on the synthetic OBB set, with vs without distillation.

Both arms run ``edgekit.train.obb.train_obb`` with the same data, seed, stages and epochs; the only
difference is ``distillation.enabled``. Reports the final (best-checkpoint) mAP50 / mAP50-95 of each
arm, their ratio, and wall time. A real DINOv3 teacher needs its weights in artifacts/models/dino/.

GPU (the lead's run)::

    python benchmarks/distill_map.py --device 0 --imgsz 320 --batch 32 --n-train 1000 --n-val 200 \
        --epochs-a 10 --epochs-b 30 --teacher-weights auto

CPU smoke test::

    python benchmarks/distill_map.py --device cpu --imgsz 64 --batch 2 --n-train 4 --n-val 2 \
        --epochs-a 1 --epochs-b 1 --teacher-weights random --tiny-teacher
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

os.environ.setdefault("YOLO_OFFLINE", "1")
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--imgsz", type=int, default=320)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--workers", type=int, default=4)
    p.add_argument("--n-train", type=int, default=1000)
    p.add_argument("--n-val", type=int, default=200)
    p.add_argument("--epochs-a", type=int, default=10)
    p.add_argument("--epochs-b", type=int, default=30)
    p.add_argument("--freeze-a", type=int, default=0,
                   help="stage A frozen layers; 0 by default since the students start from scratch")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--teacher", default="vit_small_patch16_dinov3")
    p.add_argument("--teacher-weights", default="auto")
    p.add_argument("--teacher-imgsz", type=int, default=None)
    p.add_argument("--tiny-teacher", action="store_true")
    p.add_argument("--work", type=Path, default=None, help="where datasets and runs go (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    return p.parse_args(argv)


def _overrides(args, data: Path, project: Path, distill: bool) -> List[str]:
    items = [f"data={data}", f"imgsz={args.imgsz}", f"batch={args.batch}", f"device={args.device}",
             f"workers={args.workers}", f"seed={args.seed}", f"project={project}", "logging.wandb=disabled",
             "logging.signal_maps_every=0", f"distillation.enabled={str(distill).lower()}",
             f"teacher.name={args.teacher}", f"teacher.weights={args.teacher_weights}",
             f"stages.a.epochs={args.epochs_a}", f"stages.a.freeze={args.freeze_a}", f"stages.b.epochs={args.epochs_b}"]
    if args.device == "cpu":
        items.append("amp=false")
    if args.teacher_imgsz:
        items.append(f"teacher.imgsz={args.teacher_imgsz}")
    if args.tiny_teacher:
        items.append("teacher.model_kwargs={embed_dim: 32, depth: 2, num_heads: 2}")
    return items


def run(args) -> Dict:
    from edgekit.data.synth.obb import generate_obb_dataset
    from edgekit.train.obb import train_obb
    from edgekit.train.obb.config import load_train_config

    work = args.work or Path(tempfile.mkdtemp(prefix="distill_map_"))
    data = generate_obb_dataset(work / "synth_obb", n_train=args.n_train, n_val=args.n_val, imgsz=args.imgsz,
                                seed=args.seed, progress=False)
    arms = {}
    for name, distill in (("plain", False), ("distill", True)):
        cfg = load_train_config(None, _overrides(args, data, work / "runs", distill))
        t0 = time.time()
        res = train_obb(cfg, run_id=f"{name}-{int(t0)}")
        arms[name] = {"map50": res.final_metrics.get("metrics/mAP50(B)"),
                      "map50_95": res.final_metrics.get("metrics/mAP50-95(B)"),
                      "wall_s": round(time.time() - t0, 2), "run_dir": str(res.run_dir)}
    p, d = arms["plain"]["map50"] or 0.0, arms["distill"]["map50"] or 0.0
    return {"benchmark": "distill_map", "config": {k: str(v) for k, v in vars(args).items()},
            "device": _device_name(args.device), "arms": arms,
            "map50_ratio_distill_over_plain": (d / p) if p else None,
            "map50_delta": d - p, "versions": _versions()}


def _device_name(device: str) -> str:
    import torch

    if device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(int(device.split(",")[0]))
    return platform.processor() or "cpu"


def _versions() -> Dict[str, str]:
    import timm
    import torch
    import ultralytics

    return {"python": platform.python_version(), "torch": torch.__version__, "cuda": str(torch.version.cuda),
            "ultralytics": ultralytics.__version__, "timm": timm.__version__}


def write(result: Dict, out: Path) -> Path:
    from edgekit.core.atomic import write_json_atomic, write_text_atomic

    c = result["config"]
    stem = f"distill_map_{c['imgsz']}px_{c['n_train']}img_{c['epochs_a']}-{c['epochs_b']}ep_{c['device']}"
    write_json_atomic(out / f"{stem}.json", result)
    a = result["arms"]
    ratio = result["map50_ratio_distill_over_plain"]
    md = ["# mAP50 with vs without DINOv3 distillation (synthetic OBB, from scratch)", "",
          f"Device: {result['device']}; imgsz {c['imgsz']}, {c['n_train']} train / {c['n_val']} val images, "
          f"stages {c['epochs_a']} + {c['epochs_b']} epochs, teacher {c['teacher']} ({c['teacher_weights']})", "",
          "| arm | mAP50 | mAP50-95 | wall s |", "|---|---|---|---|"]
    md += [f"| {k} | {v['map50']:.4f} | {v['map50_95']:.4f} | {v['wall_s']} |" for k, v in a.items()]
    md += ["", f"**mAP50 distill / plain: {ratio:.3f}**" if ratio else "**mAP50 ratio: n/a (plain mAP50 = 0)**",
           "", "Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), ""]
    return write_text_atomic(out / f"{stem}.md", "\n".join(md))


def main(argv=None) -> int:
    args = parse_args(argv)
    result = run(args)
    path = write(result, args.out)
    print(json.dumps({k: v for k, v in result.items() if k != "config"}, indent=2))
    print(f"wrote {path} (+ .json)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
