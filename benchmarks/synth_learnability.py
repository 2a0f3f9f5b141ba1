"""Is the synthetic OBB dataset learnable? Train yolov8n-obb from scratch on CPU and record val mAP50.

Generates a dataset with :func:`edgekit.data.synth.generate_obb_dataset`, trains Ultralytics
``YOLO("yolov8n-obb.yaml")`` (random init, no downloads) on the CPU, and writes the final val
mAP50, wall times, the per-epoch curve and the machine's facts to a JSON file and a Markdown table
beside it. Target: mAP50 >= 0.5 within a few minutes on 2 CPU cores.

    python benchmarks/synth_learnability.py --epochs 6 --imgsz 192 --n-train 300 --n-val 60
    python benchmarks/synth_learnability.py --difficulty hard --device 0 --imgsz 640 --epochs 20 --batch 32

``--difficulty easy|standard|hard`` picks the scenes (``data synth obb --difficulty``); results of a
non-standard difficulty go to ``synth_learnability_<difficulty>.json`` (+ .md) unless ``--out`` says.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "synth_learnability.json"

# Short-schedule settings found by sweeps (see the .md). The one that matters most: Ultralytics
# accumulates gradients up to a nominal batch `nbs` (64), so at batch 8 it steps the optimizer only
# every 8th batch -- ~30 steps in a short run. nbs=batch steps every batch. Warmup is off because it
# lasts at least 100 iterations, about half of such a run; scale=0.25 narrows the zoom augmentation.
DEFAULT_HYP: Dict[str, Any] = {"optimizer": "SGD", "lr0": 0.01, "warmup_epochs": 0, "scale": 0.25}


def parse_args(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--imgsz", type=int, default=192)
    p.add_argument("--n-train", type=int, default=300)
    p.add_argument("--n-val", type=int, default=60)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--workers", type=int, default=0)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--difficulty", choices=("easy", "standard", "hard"), default="standard")
    p.add_argument("--scene-side", type=int, default=None,
                   help="easy/hard: draw each --imgsz image as a crop of a scene of this side (its object pixel sizes)")
    p.add_argument("--device", default="cpu", help="cpu or a CUDA index")
    p.add_argument("--out", type=Path, default=None, help="result JSON; a .md table is written beside it")
    p.add_argument("--hyp", nargs="*", default=[], metavar="KEY=VALUE",
                   help="Ultralytics train arguments over DEFAULT_HYP (and nbs=batch), e.g. lr0=0.005 (YAML values)")
    p.add_argument("--note", default="", help="free text stored with the result (e.g. 'CPU shared with other jobs')")
    return p.parse_args(argv)


def load_average() -> Any:
    """1/5/15-minute load averages: other jobs on the machine inflate wall times."""
    return [round(v, 2) for v in os.getloadavg()] if hasattr(os, "getloadavg") else None


def machine_facts() -> Dict[str, Any]:
    """CPU model, cores, load and library versions: what a reader needs to compare wall times."""
    import cv2
    import numpy
    import torch
    import ultralytics

    cpu_model = platform.processor() or "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "usable_cores": usable,
        "torch_threads": torch.get_num_threads(),
        "load_avg_1_5_15": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "ultralytics": ultralytics.__version__,
        "numpy": numpy.__version__,
        "opencv": cv2.__version__,
    }


def read_curve(results_csv: Path) -> List[Dict[str, float]]:
    """Per-epoch val mAP50 / mAP50-95 from Ultralytics' results.csv."""
    if not results_csv.is_file():
        return []
    curve = []
    with open(results_csv, newline="") as f:
        for row in csv.DictReader(f):
            row = {k.strip(): v for k, v in row.items()}
            curve.append({"epoch": int(float(row["epoch"])), "map50": round(float(row["metrics/mAP50(B)"]), 4),
                          "map50_95": round(float(row["metrics/mAP50-95(B)"]), 4)})
    return curve


def parse_hyp(pairs: List[str], batch: int) -> Dict[str, Any]:
    import yaml

    out: Dict[str, Any] = {**DEFAULT_HYP, "nbs": batch}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--hyp {pair!r}: expected KEY=VALUE, e.g. warmup_epochs=0")
        out[key] = yaml.safe_load(value)
    return out


def train_and_validate(data_yaml: Path, args: argparse.Namespace, project: Path) -> Dict[str, Any]:
    from ultralytics import YOLO

    model = YOLO("yolov8n-obb.yaml")
    cuda = args.device != "cpu"
    t0 = time.perf_counter()
    metrics = model.train(data=str(data_yaml), epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                          device=args.device, workers=args.workers, amp=cuda, plots=False, seed=args.seed,
                          project=str(project), name="train", exist_ok=True, verbose=False, pretrained=False,
                          **parse_hyp(args.hyp, args.batch))
    train_s = time.perf_counter() - t0
    per_class = {name: round(float(metrics.box.ap50[i]), 4) for i, name in enumerate(metrics.names.values())
                 if i < len(metrics.box.ap50)}
    return {
        "val_map50": round(float(metrics.box.map50), 4),
        "val_map50_95": round(float(metrics.box.map), 4),
        "val_per_class_ap50": per_class,
        "train_wall_s": round(train_s, 1),
        "curve": read_curve(project / "train" / "results.csv"),
    }


def write_markdown(result: Dict[str, Any], path: Path) -> None:
    from edgekit.core.atomic import write_text_atomic

    cfg, res, m = result["config"], result["result"], result["machine"]
    where = "CPU" if cfg.get("device", "cpu") == "cpu" else f"device {cfg['device']}"
    rows = [
        ("val mAP50", f"{res['val_map50']:.3f} (target >= 0.5: {'met' if res['val_map50'] >= 0.5 else 'NOT met'})"),
        ("val mAP50-95", f"{res['val_map50_95']:.3f}"),
        ("per-class AP50", ", ".join(f"{k} {v:.2f}" for k, v in res["val_per_class_ap50"].items())),
        ("train wall time", f"{res['train_wall_s']:.0f} s ({cfg['epochs']} epochs)"),
        ("dataset generation", f"{res['generate_wall_s']:.1f} s ({cfg['n_train']} train + {cfg['n_val']} val at {cfg['imgsz']} px)"),
        ("model", f"yolov8n-obb.yaml, random init, {where}, amp={where != 'CPU'}"),
        ("batch / workers / seed", f"{cfg['batch']} / {cfg['workers']} / {cfg['seed']}"),
        ("other train args", ", ".join(f"{k}={v}" for k, v in cfg["hyp"].items()) or "Ultralytics defaults"),
        ("CPU", f"{m['cpu_model']}, {m['usable_cores']} usable cores, torch threads {m['torch_threads']}"),
        ("load average (start -> end)", f"{m['load_avg_1_5_15']} -> {result['load_avg_end']}"),
        ("versions", f"torch {m['torch']}, ultralytics {m['ultralytics']}, numpy {m['numpy']}, python {m['python']}"),
    ]
    lines = [f"# Synthetic OBB learnability, {cfg.get('difficulty', 'standard')} scenes (yolov8n-obb from scratch, {where})",
             "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in rows]
    if result.get("note"):
        lines += ["", f"Note: {result['note']}"]
    if res["curve"]:
        lines += ["", "| epoch | mAP50 | mAP50-95 |", "|---|---|---|"]
        lines += [f"| {c['epoch']} | {c['map50']:.3f} | {c['map50_95']:.3f} |" for c in res["curve"]]
    lines += ["", f"Command: `{result['command']}`", ""]
    write_text_atomic(path, "\n".join(lines))


def main(argv: List[str]) -> int:
    args = parse_args(argv)
    os.environ.setdefault("YOLO_OFFLINE", "1")
    from edgekit.core.atomic import write_json_atomic
    from edgekit.data.synth import generate_obb_dataset

    facts = machine_facts()
    with tempfile.TemporaryDirectory(prefix="synth_learnability_") as tmp:
        t0 = time.perf_counter()
        root = generate_obb_dataset(Path(tmp) / "data", args.n_train, args.n_val, args.imgsz, args.seed,
                                    difficulty=args.difficulty, workers=min(8, os.cpu_count() or 1),
                                    scene_side=args.scene_side)
        gen_s = time.perf_counter() - t0
        res = train_and_validate(root / "data.yaml", args, Path(tmp) / "runs")
    res["generate_wall_s"] = round(gen_s, 2)
    result = {
        "benchmark": "synth_learnability",
        "command": shlex.join(["python", "benchmarks/synth_learnability.py", *argv]),
        "config": {**{k: getattr(args, k) for k in ("epochs", "imgsz", "n_train", "n_val", "batch", "workers", "seed",
                                                     "difficulty", "scene_side", "device")},
                   "hyp": parse_hyp(args.hyp, args.batch)},
        "result": res,
        "machine": facts,
        "load_avg_end": load_average(),
        "note": args.note,
    }
    if args.out is None:
        suffix = "" if args.difficulty == "standard" else f"_{args.difficulty}"
        args.out = DEFAULT_OUT.with_name(f"synth_learnability{suffix}.json")
    write_json_atomic(args.out, result)
    write_markdown(result, args.out.with_suffix(".md"))
    print(f"val mAP50 {res['val_map50']:.3f} in {res['train_wall_s']:.0f} s -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
