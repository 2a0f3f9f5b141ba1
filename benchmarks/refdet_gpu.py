"""RefDet on unseen targets: 3-shot AP50 and ST-IoU after a stated training budget, plus per-frame cost.

1. Synthesises a few-shot set: ``train/`` targets, ``test/`` targets never seen in training (another
   split of the generator: other identities), and a separate validation set (another seed) for best.pt.
2. Trains stage 2 (episodic, SupCon + CPE) for ``--budget-s * (1 - --stage3-share)`` seconds, then
   stage 3 (triplet, from stage 2's best.pt) for the rest, both through ``train_refdet`` (the CLI's code).
3. Evaluates each stage's final model 3-shot on every frame of every test video: each video's 3
   reference photos set the target; AP50 over all frames (one class), ST-IoU per video (the best box
   per frame when it scores >= 0.25), averaged over videos.
4. Parameters and GFLOPs (thop, 2 x MACs) of the per-frame graph (``DetectorGraph``) vs yolov8n
   (80 classes, Ultralytics' own model), and the Xavier NX FPS estimated by scaling the published
   yolov8n FP16 latency by the GFLOPs ratio (docs/refdet.md has the figure and its source).

Writes ``benchmarks/results/refdet_gpu_<device>.{json,md}``.

GPU (the lead's run, about 8.5 min in all)::

    python benchmarks/refdet_gpu.py --device 0 --budget-s 390 --workers 12

CPU smoke test (a minute; numbers meaningless)::

    python benchmarks/refdet_gpu.py --smoke-cpu
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
from typing import Any, Dict, List

os.environ.setdefault("YOLO_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
RESULTS = Path(__file__).resolve().parent / "results"
# Published Xavier NX latency of yolov8n @640, FP16, batch 1, JetPack 5 (docs/refdet.md, "Jetson estimate").
NX_YOLOV8N_ENGINE_MS = 8.2
NX_YOLOV8N_E2E_MS = 12.9
ST_IOU_CONF = 0.25


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="0")
    p.add_argument("--budget-s", type=float, default=390.0, help="training wall-clock budget, both stages")
    p.add_argument("--stage3-share", type=float, default=0.15, help="share of the budget for stage 3 (0: skip it)")
    p.add_argument("--n-train", type=int, default=96)
    p.add_argument("--n-test", type=int, default=12)
    p.add_argument("--n-val", type=int, default=4)
    p.add_argument("--frames", type=int, default=48)
    p.add_argument("--imgsz", type=int, default=256, help="frame side of the synthetic videos and of training")
    p.add_argument("--ref-size", type=int, default=112)
    p.add_argument("--workers", type=int, default=12)
    p.add_argument("--encoder-weights", default="random",
                   help="random (no DINOv2 weights on the GPU machine), auto or a file")
    p.add_argument("--set", dest="overrides", action="append", default=[], help="extra key=value for both stages")
    p.add_argument("--data-dir", type=Path, default=None, help="keep the data and runs here (default: a temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--tag", default=None, help="result file suffix (default: the device name)")
    p.add_argument("--smoke-cpu", action="store_true", help="tiny CPU run that checks the script end to end")
    args = p.parse_args(argv)
    if args.smoke_cpu:
        args.device, args.budget_s, args.n_train, args.n_test, args.n_val = "cpu", 20.0, 3, 2, 1
        args.frames, args.imgsz, args.ref_size, args.workers = 12, 64, 28, 0
        args.tag = args.tag or "cpu-smoke"
    return args


def recipe(args: argparse.Namespace, root: Path, stage: int, budget: float, weights: str = "") -> List[str]:
    """The training overrides (the recipe the result reports)."""
    over = [f"data={root / 'fewshot'}", f"val={root / 'val' / 'test'}", f"project={root / 'runs'}",
            f"device={args.device}", f"imgsz={args.imgsz}", f"workers={args.workers}", f"stage={stage}",
            "epochs=1000", f"max_time_s={budget}", "cache_size=100000",
            f"model.ref_size={args.ref_size}", f"model.encoder_weights={args.encoder_weights}",
            "episode.n_way=4", "episode.n_query=6", "episode.n_negative=3",
            # long epochs: each one ends in a validation and a ~0.4 GB last.pt (weights, EMA, optimizer)
            f"episode.episodes_per_epoch={250 if stage == 2 else 100}",
            "optim.lr0=0.002", "optim.warmup_steps=200", "optim.weight_decay=0.01", "optim.ema_tau=300",
            "validation.frames_per_video=16"]
    if args.encoder_weights == "random":  # nothing pretrained to protect: x0.25 (a from-scratch ViT at 2e-3 diverges easily)
        over.append("optim.lr_mult={encoder: 0.25}")
    if stage == 3:
        over += [f"weights={weights}", "use_triplet=true", "triplet_ratio=0.3", "negative_strategy=mixed",
                 "optim.warmup_steps=20", "optim.lr0=0.0005"]
    if args.smoke_cpu:
        over += ["model.encoder_kwargs={depth: 1}", "episode.n_way=2", "episode.n_query=2", "episode.n_negative=1",
                 "episode.episodes_per_epoch=2", "optim.warmup_steps=1", "validation.frames_per_video=3"]
    return over + list(args.overrides)


def synth(args: argparse.Namespace, root: Path) -> None:
    from edgekit.data.synth.refdet import generate_refdet_dataset

    generate_refdet_dataset(root / "fewshot", n_train=args.n_train, n_test=args.n_test, frames=args.frames,
                            imgsz=args.imgsz, seed=0, progress=False)
    # Validation targets (best.pt selection): another seed, so neither training nor test identities.
    generate_refdet_dataset(root / "val", n_train=1, n_test=args.n_val, frames=args.frames, imgsz=args.imgsz,
                            seed=1, progress=False)


def evaluate_3shot(best: Path, test_root: Path, device: str) -> Dict[str, Any]:
    """AP50 over every frame of every test video and mean per-video ST-IoU, each video's 3 photos as the target."""
    import numpy as np
    import torch

    from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint
    from edgekit.train.fewshot.data import RefDetDataset
    from edgekit.train.fewshot.episodes import ref_array
    from edgekit.train.fewshot.predict import decode_refdet, frame_tensor
    from edgekit.train.fewshot.trainer import select_device
    from edgekit.train.fewshot.valmetrics import average_precision, video_st_iou

    dev = select_device(device)
    model, meta = load_refdet_checkpoint(best)
    model.to(dev).eval()
    ds = RefDetDataset(test_root, cache_size=0)
    preds, gts, per_video = [], [], {}
    with torch.no_grad():
        for rec in ds.records:
            refs = torch.from_numpy(np.stack([ref_array(p, model.cfg.ref_size) for p in ds.references(rec.video_id)]))
            emb = model.encode(refs.to(dev))
            vp, vg = [], []
            for start in range(0, rec.frame_count, 32):
                frames = [ds.frame(rec.video_id, f) for f in range(start, min(start + 32, rec.frame_count))]
                xs, infos = zip(*(frame_tensor(f, meta["imgsz"]) for f in frames))
                raw = model(torch.cat(xs).to(dev), emb).float().cpu().numpy()
                for i, d in enumerate(decode_refdet(raw, infos, conf=0.001, iou=0.6, max_det=100)):
                    vp.append((d.xyxy, d.scores))
                    vg.append(rec.boxes_at(start + i))
            preds += vp
            gts += vg
            per_video[rec.video_id] = {"ap50": average_precision(vp, vg)["ap50"],
                                       "st_iou": video_st_iou(vp, vg, ST_IOU_CONF), "frames": len(vg)}
    ds.close()
    overall = average_precision(preds, gts, conf=ST_IOU_CONF)
    return {"ap50": overall["ap50"], "precision@0.25": overall["precision"], "recall@0.25": overall["recall"],
            "st_iou": float(np.mean([v["st_iou"] for v in per_video.values()])), "videos": len(per_video),
            "frames": len(gts), "per_video": per_video}


def complexity(best: Path, imgsz: int) -> Dict[str, Any]:
    """Parameters and GFLOPs of the per-frame graph vs yolov8n (thop, 2 x MACs) at ``imgsz`` and at 640."""
    import copy

    import thop
    import torch
    from ultralytics.nn.tasks import DetectionModel

    from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint
    from edgekit.train.fewshot.model import DetectorGraph

    model, _ = load_refdet_checkpoint(best)
    graph = DetectorGraph(model).eval()
    yolo = DetectionModel("yolov8n.yaml", verbose=False).eval()
    per_frame = sum(p.numel() for n, p in model.named_parameters() if not n.startswith(("encoder.", "ref_proj.")))
    out: Dict[str, Any] = {"refdet_per_frame_params": per_frame, "yolov8n_params": sum(p.numel() for p in yolo.parameters()),
                           "encoder_params": sum(p.numel() for n, p in model.named_parameters()
                                                 if n.startswith(("encoder.", "ref_proj.")))}
    for size in sorted({imgsz, 640}):
        x, e = torch.rand(1, 3, size, size), torch.rand(1, model.embedding_dim)
        macs_r = thop.profile(copy.deepcopy(graph), inputs=(x, e), verbose=False)[0]
        macs_y = thop.profile(copy.deepcopy(yolo), inputs=(x,), verbose=False)[0]
        out[f"gflops_refdet_{size}"] = round(2 * macs_r / 1e9, 3)
        out[f"gflops_yolov8n_{size}"] = round(2 * macs_y / 1e9, 3)
    ratio = out["gflops_refdet_640"] / out["gflops_yolov8n_640"]
    engine = NX_YOLOV8N_ENGINE_MS * ratio
    e2e = engine + (NX_YOLOV8N_E2E_MS - NX_YOLOV8N_ENGINE_MS)
    out.update(gflops_ratio_640=round(ratio, 3), nx_est_engine_ms_640=round(engine, 2), nx_est_e2e_ms_640=round(e2e, 2),
               nx_est_fps_640=round(1000 / e2e, 1))
    return out


def train_stage(args: argparse.Namespace, root: Path, stage: int, budget: float, weights: str = "") -> Dict[str, Any]:
    from edgekit.train.fewshot.api import train_refdet
    from edgekit.train.fewshot.config import load_refdet_config
    from edgekit.train.run import read_jsonl

    over = recipe(args, root, stage, budget, weights)
    t0 = time.perf_counter()
    result = train_refdet(load_refdet_config(None, over), run_id=f"stage{stage}", progress=False)
    train = read_jsonl(result.run_dir / "reports" / "train_metrics.jsonl")
    val = read_jsonl(result.run_dir / "reports" / "val_metrics.jsonl")
    return {"overrides": over, "wall_s": round(time.perf_counter() - t0, 1), "epochs": len(train),
            "steps": train[-1]["step"] if train else 0, "best": str(result.best),
            "last_train": train[-1] if train else {}, "best_val_ap50": max((r["ap50"] for r in val), default=None),
            "val_curve": [(r["epoch"], round(r["ap50"], 4), round(r["st_iou"], 4)) for r in val]}


def device_name(args: argparse.Namespace) -> str:
    if args.tag:
        return args.tag
    import torch

    if args.device != "cpu" and torch.cuda.is_available():
        return torch.cuda.get_device_name(0).lower().replace(" ", "-")
    return "cpu"


def run(args: argparse.Namespace) -> Dict[str, Any]:
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="refdet_bench_"))
    t0 = time.perf_counter()
    synth(args, root)
    result: Dict[str, Any] = {"device": device_name(args), "host": platform.node(), "synth_s": round(time.perf_counter() - t0, 1),
                              "data": {"train_targets": args.n_train, "test_targets": args.n_test, "val_targets": args.n_val,
                                       "frames_per_video": args.frames, "frame_px": args.imgsz},
                              "budget_s": args.budget_s, "stage3_share": args.stage3_share}
    b3 = args.budget_s * args.stage3_share
    s2 = train_stage(args, root, 2, args.budget_s - b3)
    result["stage2"] = {**s2, "test": evaluate_3shot(Path(s2["best"]), root / "fewshot" / "test", args.device)}
    write_json(args, result)  # a partial result survives a kill during stage 3
    final = result["stage2"]
    if b3 > 0:
        s3 = train_stage(args, root, 3, b3, weights=s2["best"])
        result["stage3"] = {**s3, "test": evaluate_3shot(Path(s3["best"]), root / "fewshot" / "test", args.device)}
        final = result["stage3"]
    result["final"] = {k: final["test"][k] for k in ("ap50", "st_iou", "precision@0.25", "recall@0.25")}
    result["complexity"] = complexity(Path(final["best"]), args.imgsz)
    result["total_s"] = round(time.perf_counter() - t0, 1)
    return result


def write_json(args: argparse.Namespace, result: Dict[str, Any]) -> Path:
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"refdet_gpu_{result['device']}.json"
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    return path


def markdown(r: Dict[str, Any]) -> str:
    c = r["complexity"]
    lines = [f"# RefDet on unseen targets ({r['device']})", "",
             f"Data: {r['data']['train_targets']} training targets, {r['data']['test_targets']} test targets never seen "
             f"in training, {r['data']['frames_per_video']} frames of {r['data']['frame_px']} px per video; "
             f"training budget {r['budget_s']:.0f} s (stage 3: {r['stage3_share']:.0%}).", "",
             "| model | train s | steps | test AP50 (3-shot) | test ST-IoU | P@0.25 | R@0.25 |", "|---|---|---|---|---|---|---|"]
    for name in ("stage2", "stage3"):
        if name in r:
            s, t = r[name], r[name]["test"]
            lines.append(f"| {name} | {s['wall_s']} | {s['steps']} | {t['ap50']:.3f} | {t['st_iou']:.3f} | "
                         f"{t['precision@0.25']:.3f} | {t['recall@0.25']:.3f} |")
    px = r["data"]["frame_px"]
    g_r, g_y = c[f"gflops_refdet_{px}"], c[f"gflops_yolov8n_{px}"]
    lines += ["", "| per-frame graph | params | GFLOPs @640 | GFLOPs @train size | est. Xavier NX FPS @640 (FP16) |",
              "|---|---|---|---|---|",
              f"| RefDet detector | {c['refdet_per_frame_params']:,} | {c['gflops_refdet_640']} | {g_r} | {c['nx_est_fps_640']} |",
              f"| yolov8n (80 cls) | {c['yolov8n_params']:,} | {c['gflops_yolov8n_640']} | {g_y} | "
              f"{1000 / NX_YOLOV8N_E2E_MS:.1f} (published) |", "",
              f"Reference encoder (once per target, not per frame): {c['encoder_params']:,} parameters.",
              f"NX estimate: published yolov8n@640 FP16 {NX_YOLOV8N_ENGINE_MS} ms engine / {NX_YOLOV8N_E2E_MS} ms end to "
              f"end, engine time scaled by the GFLOPs ratio {c['gflops_ratio_640']}, pre/post-processing kept: "
              f"{c['nx_est_e2e_ms_640']} ms.", "", f"Total wall time {r['total_s']} s (synthesis {r['synth_s']} s)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    result = run(args)
    stem = write_json(args, result).with_suffix("")
    stem.with_suffix(".md").write_text(markdown(result))
    print(markdown(result))
    print(f"wrote {stem}.json and .md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
