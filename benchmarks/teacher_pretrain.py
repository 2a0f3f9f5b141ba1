"""Pretrain a DINOv3-architecture teacher (timm ``vit_small_patch16_dinov3``) from scratch on hard synthetic scenes.

No real DINOv3 weights exist here, so this makes a teacher that *knows the domain*: the ViT is trained
with a dense objective built only from what the generator knows (no extra labels):

* per-patch class presence (one sigmoid per class; a patch counts for a class when >= 20 % of it is
  covered by that class's oriented box, or holds an object's centre),
* per-patch object-centre heatmap,
* per-patch orientation (cos 2θ, sin 2θ) where an object covers the patch,

through a linear head on the final normalised patch tokens (the very tokens ``train obb``
distils: ``teacher.layer=-1``, ``norm=True``), so what the teacher learns is linearly readable there.

Images are rendered at ``--canvas`` px as crops of ``--scene-side`` px scenes (same object pixel sizes
as the students' images), in many processes, kept on the GPU as uint8. Training runs for a fixed
wall-clock budget (``--seconds``; warmup then cosine by elapsed time), bf16 autocast, AdamW. RoPE
coordinate rescaling (x0.5-2) is on while training, and the last ``--full-frac`` of the time trains on
whole ``--scene-side`` scenes, so the teacher works on the students' larger grid.

Writes, under ``--out``:

* ``timm/vit_small_patch16_dinov3.safetensors`` - timm's key layout,
* ``meta/dinov3_vits16_pretrain_synth.pth`` - Meta's original DINOv3 key layout (docs/distillation.md),
* ``teacher_pretrain.json`` - settings, throughput, loss curve, held-out patch metrics (on crops and on
  whole scenes at the students' resolution), and the check
  that both files load through ``train obb``'s resolver into identical features.

GPU (the lead's run, via benchmarks/gpu/issue14.sh)::

    python benchmarks/teacher_pretrain.py --device cuda:0 --n-images 40000 --seconds 170 --out OUT/teacher

CPU smoke test (tiny ViT, seconds)::

    python benchmarks/teacher_pretrain.py --smoke-cpu --out /tmp/teacher
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

os.environ.setdefault("YOLO_OFFLINE", "1")
ARCH = "vit_small_patch16_dinov3"
META_NAME = "dinov3_vits16_pretrain_synth.pth"  # matches the resolver's dinov3_vits16_pretrain_* pattern
TIMM_NAME = f"{ARCH}.safetensors"
TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}
PATCH = 16
PRESENCE_COVER = 0.2  # fraction of a patch an object's box must cover for the patch to count for its class


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda:0")
    p.add_argument("--n-images", type=int, default=40000, help="training images (rendered once, kept on the GPU)")
    p.add_argument("--n-val", type=int, default=1024, help="held-out images for the patch metrics")
    p.add_argument("--canvas", type=int, default=320, help="rendered image side (a multiple of 16)")
    p.add_argument("--scene-side", type=int, default=640, help="objects are drawn as in a scene of this side")
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--seconds", type=float, default=170.0, help="wall-clock training budget")
    p.add_argument("--stop-at", type=float, default=None,
                   help="a Unix time training must end by (shortens --seconds when data generation ran late)")
    p.add_argument("--n-full", type=int, default=4000,
                   help="whole --scene-side scenes (the students' image and patch grid) for the end of training")
    p.add_argument("--full-frac", type=float, default=0.2, help="fraction of the time spent on the whole scenes")
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--layer-scale-init", type=float, default=0.1,
                   help="LayerScale start value (timm's default 1e-5 learns slowly in a short run)")
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--seed", type=int, default=1000, help="scene seeds (students' datasets use other streams)")
    p.add_argument("--model-kwargs", type=json.loads, default={}, help='extra timm kwargs, e.g. {"depth": 2}')
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke-cpu", action="store_true", help="tiny ViT, 64 px, a few seconds on CPU")
    if p.parse_args(argv).smoke_cpu:  # smoke defaults; options given explicitly still win
        p.set_defaults(device="cpu", n_images=64, n_val=16, n_full=16, canvas=64, scene_side=128, seconds=6.0, batch=16,
                       workers=2, model_kwargs=dict(TINY))
    return p.parse_args(argv)


# -- data: rendered scenes and their per-patch targets ----------------------------------------------
def patch_targets(objects, canvas: int, n_classes: int) -> np.ndarray:
    """(n_classes + 4, g, g) float16: class presence, centre, cos 2θ, sin 2θ, orientation mask (g = canvas/16)."""
    import cv2

    g, res = canvas // PATCH, canvas // 4  # boxes rasterised at 4 px per cell: exact enough for 16-px patches
    cover = np.zeros((res, res, n_classes), np.float32)
    angle = np.zeros((res, res, 3), np.float32)  # cos 2θ, sin 2θ, coverage
    centre = np.zeros((g, g), np.float32)
    forced: List[Tuple[int, int, int]] = []
    for o in objects:
        pts = [np.round((o.corners() / 4.0 - 0.5) * 16).astype(np.int32)]  # pixel j spans [4j, 4j + 4)
        layer = np.zeros((res, res), np.float32)
        cv2.fillPoly(layer, pts, 1.0, cv2.LINE_8, 4)
        cover[..., o.class_id] = np.maximum(cover[..., o.class_id], layer)
        angle[layer > 0] = (math.cos(2 * o.angle), math.sin(2 * o.angle), 1.0)
        gy, gx = min(int(o.cy // PATCH), g - 1), min(int(o.cx // PATCH), g - 1)
        centre[gy, gx] = 1.0
        forced.append((o.class_id, gy, gx))
    cov = cv2.resize(cover, (g, g), interpolation=cv2.INTER_AREA).reshape(g, g, n_classes)
    ang = cv2.resize(angle, (g, g), interpolation=cv2.INTER_AREA)
    presence = np.clip(cov / PRESENCE_COVER, 0.0, 1.0).transpose(2, 0, 1)
    for c, gy, gx in forced:  # an object smaller than a patch still marks the patch it sits in
        presence[c, gy, gx] = 1.0
    covered = ang[..., 2] > 0.3
    unit = ang[..., :2] / np.maximum(ang[..., 2:3], 1e-6)
    out = np.concatenate([presence, centre[None], unit.transpose(2, 0, 1) * covered, covered[None]], 0)
    return out.astype(np.float16)


def render_chunk(task: Tuple[int, int, int, int, int, str]) -> Tuple[np.ndarray, np.ndarray]:
    """Render images ``start..stop`` of stream ``seed``: (N, H, W, 3) uint8 RGB and (N, C, g, g) targets."""
    from edgekit.data.synth.difficulty import class_names, render_difficulty_scene

    seed, start, stop, canvas, scene_side, difficulty = task
    n_classes = len(class_names(difficulty))
    imgs, targets = [], []
    for i in range(start, stop):
        scene = render_difficulty_scene(np.random.default_rng([seed, 2, i]), canvas, difficulty, scene_side)
        imgs.append(scene.image[..., ::-1])  # BGR -> RGB, as Ultralytics hands images to the teacher
        targets.append(patch_targets(scene.objects, canvas, n_classes))
    return np.stack(imgs), np.stack(targets)


def render_set(n: int, seed: int, args, workers: int, canvas: Optional[int] = None) -> Tuple[np.ndarray, np.ndarray]:
    """Render ``n`` images of ``canvas`` px (default ``args.canvas``) in ``workers`` processes (chunks of 64), in order."""
    bounds = list(range(0, n, 64)) + [n]
    tasks = [(seed, a, b, canvas or args.canvas, args.scene_side, args.difficulty) for a, b in zip(bounds, bounds[1:])]
    if workers <= 1:
        parts = [render_chunk(t) for t in tasks]
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(render_chunk, tasks))
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


# -- model, objective, schedule -------------------------------------------------------------------
def build_model(args, n_classes: int):
    import timm
    import torch

    kwargs = {"init_values": args.layer_scale_init, **args.model_kwargs}
    model = timm.create_model(ARCH, pretrained=False, **kwargs)
    rope = getattr(model, "rope", None)
    if rope is not None and hasattr(rope, "rescale_coords"):
        # DINOv3's RoPE coordinate rescaling augmentation (factor 2): timm has the switch but no argument for it.
        rope.rescale_coords, rope.aug_active = 2.0, True
    head = torch.nn.Linear(model.embed_dim, n_classes + 3)
    return model, head


def dense_loss(logits, target, n_classes: int) -> Tuple[object, Dict[str, object]]:
    """Presence BCE + centre BCE (positives up-weighted: they are rare) + masked orientation MSE."""
    import torch.nn.functional as F

    k = n_classes
    t = target.float()
    pres = F.binary_cross_entropy_with_logits(logits[:, :k], t[:, :k])
    pos = t[:, k:k + 1]
    cen = F.binary_cross_entropy_with_logits(logits[:, k:k + 1], pos, weight=1.0 + 9.0 * pos)
    mask = t[:, k + 3:k + 4]
    ang = (((logits[:, k + 1:k + 3].tanh() - t[:, k + 1:k + 3]) ** 2) * mask).sum() / mask.sum().clamp(min=1.0)
    total = pres + 0.5 * cen + 0.5 * ang
    return total, {"presence": pres.detach(), "centre": cen.detach(), "angle": ang.detach()}  # tensors: no sync


def patch_logits(model, head, x):
    """(B, K+3, g, g) head outputs on the final normalised patch tokens (what ``train obb`` distils)."""
    tokens = model.forward_features(x)[:, model.num_prefix_tokens:]
    b, n, _ = tokens.shape
    g = int(round(math.sqrt(n)))
    return head(tokens).transpose(1, 2).reshape(b, -1, g, g)


def lr_at(frac: float, base: float, warmup: float = 0.05) -> float:
    if frac < warmup:
        return base * frac / warmup
    return base * 0.5 * (1 + math.cos(math.pi * min(1.0, (frac - warmup) / (1 - warmup))))


def to_input(imgs_u8, mean, std):
    return (imgs_u8.permute(0, 3, 1, 2).float() / 255.0 - mean) / std


def train(args, imgs, targets, n_classes: int, full=None) -> Tuple[object, object, Dict]:
    """Train for ``args.seconds``; the last ``args.full_frac`` of it on ``full`` (whole scenes, the students'
    grid) at a quarter of the batch, when given."""
    import torch

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    model, head = build_model(args, n_classes)
    model.to(device).train()
    head.to(device).train()
    params = list(model.parameters()) + list(head.parameters())
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.95),
                            fused=device.type == "cuda")
    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    sets = [(torch.from_numpy(imgs).to(device), torch.from_numpy(targets).to(device), args.batch)]
    if full is not None and len(full[0]):
        sets.append((torch.from_numpy(full[0]).to(device), torch.from_numpy(full[1]).to(device),
                     max(1, args.batch // 4)))
    gen = torch.Generator(device=device).manual_seed(args.seed)
    flips = random.Random(args.seed)
    budget = args.seconds if args.stop_at is None else max(10.0, min(args.seconds, args.stop_at - time.time()))
    curve, step, t0, seen = [], 0, time.perf_counter(), 0
    while True:
        frac = (time.perf_counter() - t0) / budget
        if frac >= 1.0:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(frac, args.lr)
        x_all, y_all, batch = sets[-1] if frac >= 1.0 - args.full_frac else sets[0]
        idx = torch.randint(0, x_all.shape[0], (batch,), device=device, generator=gen)
        x, y = to_input(x_all[idx], mean, std), y_all[idx]
        if flips.random() < 0.5:  # flip: mirror the orientation target too (θ -> π - θ)
            x, y = x.flip(-1), y.flip(-1)
            y[:, n_classes + 2] = -y[:, n_classes + 2]
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = patch_logits(model, head, x)
        loss, parts = dense_loss(logits.float(), y, n_classes)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seen += batch
        if step % 25 == 1:
            curve.append({"step": step, "s": round(time.perf_counter() - t0, 1), "loss": round(float(loss.detach()), 4),
                          **{k: round(float(v), 4) for k, v in parts.items()}})
    wall = time.perf_counter() - t0
    stats = {"budget_s": round(budget, 1), "steps": step, "images_seen": seen, "epochs": round(seen / (len(imgs) + len(sets[-1][0]) * (len(sets) - 1)), 2),
             "train_s": round(wall, 1),
             "images_per_s": round(seen / max(wall, 1e-9), 1), "curve": curve}
    return model.eval(), head.eval(), stats


def patch_metrics(model, head, imgs, targets, n_classes: int, device, batch: int = 128) -> Dict[str, float]:
    """Held-out patch metrics: presence F1 (>= 0.5), and class accuracy on patches holding one object centre."""
    import torch

    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    tp = fp = fn = correct = total = 0
    with torch.no_grad():
        for a in range(0, len(imgs), batch):
            x = to_input(torch.from_numpy(imgs[a:a + batch]).to(device), mean, std)
            y = torch.from_numpy(targets[a:a + batch]).to(device).float()
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = patch_logits(model, head, x).float()
            pred, true = out[:, :n_classes] > 0, y[:, :n_classes] >= 0.5
            tp += int((pred & true).sum())
            fp += int((pred & ~true).sum())
            fn += int((~pred & true).sum())
            single = (y[:, n_classes] > 0) & (true.sum(1) == 1)  # a centre patch of one class only
            correct += int(((out[:, :n_classes].argmax(1) == y[:, :n_classes].argmax(1)) & single).sum())
            total += int(single.sum())
    f1 = 2 * tp / max(2 * tp + fp + fn, 1)
    return {"presence_f1": round(f1, 4), "centre_class_acc": round(correct / max(total, 1), 4), "centre_patches": total}


# -- saving in both layouts -----------------------------------------------------------------------
def timm_to_meta(sd: Dict[str, object], periods=None) -> Dict[str, object]:
    """timm's DINOv3 keys -> Meta's original ones: the inverse of timm's ``eva.checkpoint_filter_fn``.

    ``reg_token`` -> ``storage_tokens``, ``blocks.N.gamma_1/2`` -> ``blocks.N.ls1/ls2.gamma``; Meta's
    files also hold what timm drops on load: ``mask_token``, ``rope_embed.periods`` and, for the
    bias-free qkv of ViT-S, a zero ``attn.qkv.bias`` with its ``bias_mask``.
    """
    import torch

    out = {}
    for k, v in sd.items():
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[k] = v.detach().clone().contiguous()
        if k.endswith("attn.qkv.weight") and k.replace("weight", "bias") not in sd:
            out[k.replace("weight", "bias")] = torch.zeros(v.shape[0])
            mask = torch.ones(v.shape[0])
            mask[v.shape[0] // 3: 2 * v.shape[0] // 3] = 0.0  # Meta masks the (absent) key bias
            out[k.replace("weight", "bias_mask")] = mask
    dim = sd["cls_token"].shape[-1]
    out["mask_token"] = torch.zeros(1, dim)
    if periods is not None:
        out["rope_embed.periods"] = periods.detach().float().cpu().clone()
    return out


def save_both(model, out: Path) -> Tuple[Path, Path]:
    """Write the backbone (no head) in timm's layout (.safetensors) and Meta's (.pth)."""
    import torch
    from safetensors.torch import save_file

    sd = {k: v.detach().float().cpu().contiguous() for k, v in model.state_dict().items()}
    timm_path, meta_path = out / "timm" / TIMM_NAME, out / "meta" / META_NAME
    for path in (timm_path, meta_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    save_file(sd, str(timm_path))
    periods = getattr(getattr(model, "rope", None), "periods", None)
    torch.save(timm_to_meta(sd, periods), meta_path)
    return timm_path, meta_path


def check_loading(model, paths: Sequence[Path], model_kwargs: Dict, device, imgs: np.ndarray) -> Dict[str, object]:
    """Load each file through ``train obb``'s resolver + builder; compare its features with the trained model's."""
    import copy

    import torch

    from edgekit.train.obb.config import TeacherConfig
    from edgekit.train.obb.teacher import Teacher, build_teacher

    x = torch.from_numpy(imgs[:4]).to(device).permute(0, 3, 1, 2).float() / 255.0
    cfg = TeacherConfig(weights="random", model_kwargs=model_kwargs, dtype="fp32", cuda_graph=False)
    reference = Teacher(copy.deepcopy(model).float(), cfg, device, source="trained").features(x)
    diffs = {}
    for path in paths:
        loaded = build_teacher(cfg.model_copy(update={"weights": str(path)}), device)
        diffs[path.parent.name] = float((loaded.features(x) - reference).abs().max())
    return {"files": [str(p) for p in paths], "feature_shape": list(reference.shape),
            "max_abs_diff_vs_trained": diffs}


def run(args) -> Dict[str, object]:
    import torch

    from edgekit.data.synth.difficulty import class_names

    n_classes = len(class_names(args.difficulty))
    t0 = time.perf_counter()
    imgs, targets = render_set(args.n_images, args.seed, args, args.workers)
    val_imgs, val_targets = render_set(args.n_val, args.seed + 1, args, args.workers)
    full = render_set(args.n_full, args.seed + 2, args, args.workers, args.scene_side) if args.n_full else None
    val_full = render_set(max(1, args.n_val // 4), args.seed + 3, args, args.workers, args.scene_side)
    gen_s = time.perf_counter() - t0
    print(f"teacher data: {len(imgs)} + {len(val_imgs)} images at {args.canvas}px in {gen_s:.1f}s", flush=True)
    device = torch.device(args.device)
    model, head, stats = train(args, imgs, targets, n_classes, full)
    metrics = patch_metrics(model, head, val_imgs, val_targets, n_classes, device)
    full_metrics = patch_metrics(model, head, *val_full, n_classes, device, batch=32)
    rand_model, rand_head = build_model(args, n_classes)
    baseline = patch_metrics(rand_model.to(device).eval(), rand_head.to(device).eval(), val_imgs, val_targets,
                             n_classes, device)
    timm_path, meta_path = save_both(model, args.out)
    loading = check_loading(model, [timm_path, meta_path], args.model_kwargs, device, val_imgs)
    return {"benchmark": "teacher_pretrain", "arch": ARCH, "device": _device_name(device),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "classes": list(class_names(args.difficulty)), "generate_s": round(gen_s, 1), "train": stats,
            "val_patch_metrics": metrics, "random_init_patch_metrics": baseline, "loading": loading,
            "val_full_scene_patch_metrics": full_metrics,
            "weights": {"timm": str(timm_path), "meta": str(meta_path)}}


def _device_name(device) -> str:
    import torch

    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    result = run(args)
    (args.out / "teacher_pretrain.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("train", "val_patch_metrics", "random_init_patch_metrics", "loading")},
                     indent=1)[:3000], flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
