"""Pretrain a DINOv3-architecture teacher (timm ``vit_small_patch16_dinov3``) from scratch on hard synthetic scenes.

No real DINOv3 weights exist here, so this makes a teacher that *knows the domain*: the ViT is trained
with a dense objective built only from what the generator knows (no extra labels):

* per-patch class presence (one sigmoid per class; a patch counts for a class when >= 20 % of it is
  covered by that class's oriented box, or holds an object's centre),
* per-patch object-centre heatmap,
* per-patch orientation (cos 2θ, sin 2θ) where an object covers the patch,

through a linear head on the final normalised patch tokens (the very tokens ``train obb``
distils: ``teacher.layer=-1``, ``norm=True``), so what the teacher learns is linearly readable there.

Whole ``--scene-side`` px scenes (the students' images) are rendered by a background process pool while
the GPU already trains (:class:`SceneStream`), kept on the GPU as uint8 and reused with patch-aligned
``--canvas`` crops, quarter turns, mirrors and colour jitter. Training runs for a fixed wall-clock
budget (``--seconds``; warmup then cosine by elapsed time), bf16 autocast, AdamW. RoPE coordinate
rescaling (x0.5-2) is on while training, and the last ``--full-frac`` of the time trains on whole
scenes, so the teacher works on the students' grid. Positive patches are up-weighted
(``--pos-weight``): the first version, without it, learned to predict no presence at all.

Writes, under ``--out``:

* ``timm/vit_small_patch16_dinov3.safetensors`` - timm's key layout,
* ``meta/dinov3_vits16_pretrain_synth.pth`` - Meta's original DINOv3 key layout (docs/distillation.md),
* ``teacher_pretrain.json`` - settings, throughput, loss curve, held-out patch metrics on whole scenes
  (presence F1 at p >= 0.5 and at the best threshold, centre-patch class accuracy; the same for a
  random init), and the check that both files load through ``train obb``'s resolver into identical features.

GPU (the lead's run, via benchmarks/gpu/issue14.sh)::

    python benchmarks/teacher_pretrain.py --device cuda:0 --n-images 8000 --seconds 190 --out OUT/teacher

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
    p.add_argument("--n-images", type=int, default=8000,
                   help="unique training scenes, rendered in the background while training (reused with augmentation)")
    p.add_argument("--min-start", type=int, default=256, help="training starts when this many scenes are rendered")
    p.add_argument("--n-val", type=int, default=256, help="held-out whole scenes for the patch metrics")
    p.add_argument("--canvas", type=int, default=320, help="training crop side (a multiple of 16)")
    p.add_argument("--scene-side", type=int, default=640, help="rendered scene side (the students' imgsz)")
    p.add_argument("--difficulty", default="hard")
    p.add_argument("--seconds", type=float, default=190.0, help="wall-clock training budget")
    p.add_argument("--stop-at", type=float, default=None,
                   help="a Unix time training must end by (shortens --seconds when the start ran late)")
    p.add_argument("--full-frac", type=float, default=0.2, help="fraction of the time spent on whole scenes")
    p.add_argument("--pos-weight", type=float, default=10.0,
                   help="weight of positive patches in the presence and centre losses (they are under 1 %%)")
    p.add_argument("--batch", type=int, default=256,
                   help="crops per step (a quarter of it for whole scenes); 256: twice the steps of 512 while the GPU stays busy")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument("--layer-scale-init", type=float, default=0.1,
                   help="LayerScale start value (timm's default 1e-5 learns slowly in a short run)")
    p.add_argument("--workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) - 2)))
    p.add_argument("--seed", type=int, default=1000, help="scene seeds (students' datasets use other streams)")
    p.add_argument("--model-kwargs", type=json.loads, default={}, help='extra timm kwargs, e.g. {"depth": 2}')
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--smoke-cpu", action="store_true", help="tiny ViT, 64 px, a few seconds on CPU")
    if p.parse_args(argv).smoke_cpu:  # smoke defaults; options given explicitly still win
        p.set_defaults(device="cpu", n_images=64, n_val=16, min_start=16, canvas=64, scene_side=128, seconds=6.0, batch=16,
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


def render_chunk(task: Tuple[int, int, int, int, str]) -> Tuple[np.ndarray, np.ndarray]:
    """Render whole scenes ``start..stop`` of stream ``seed``: (N, S, S, 3) uint8 RGB and (N, C, S/16, S/16) targets."""
    from edgekit.data.synth.difficulty import class_names, render_difficulty_scene

    seed, start, stop, side, difficulty = task
    n_classes = len(class_names(difficulty))
    imgs, targets = [], []
    for i in range(start, stop):
        scene = render_difficulty_scene(np.random.default_rng([seed, 2, i]), side, difficulty)
        imgs.append(scene.image[..., ::-1])  # BGR -> RGB, as Ultralytics hands images to the teacher
        targets.append(patch_targets(scene.objects, side, n_classes))
    return np.stack(imgs), np.stack(targets)


class SceneStream:
    """Whole ``--scene-side`` scenes rendered by a background process pool while the GPU trains.

    Every chunk is submitted at once (before CUDA starts, so the forked workers hold no CUDA state);
    :meth:`drain` moves finished chunks into a device buffer that training samples from, so training
    starts after the first chunk instead of after the whole set (the first version rendered 45k images
    up front: 124 s of a 217 s budget). Scenes are reused with random crops, flips, quarter turns and
    colour jitter (:func:`augment`), so a few thousand unique scenes suffice.
    """

    def __init__(self, n: int, seed: int, args, workers: int, chunk: int = 16) -> None:
        from concurrent.futures import ProcessPoolExecutor

        bounds = list(range(0, n, chunk)) + [n]
        self.tasks = [(seed, a, b, args.scene_side, args.difficulty) for a, b in zip(bounds, bounds[1:])]
        self.pool = ProcessPoolExecutor(max_workers=workers) if workers > 0 else None
        self.pending = [self.pool.submit(render_chunk, t) for t in self.tasks] if self.pool else []
        self.n, self.filled, self.imgs, self.targets = n, 0, None, None

    def _store(self, part: Tuple[np.ndarray, np.ndarray], device) -> None:
        import torch

        x, y = torch.from_numpy(part[0]).to(device), torch.from_numpy(part[1]).to(device)
        if self.imgs is None:
            self.imgs = torch.empty((self.n, *x.shape[1:]), dtype=x.dtype, device=device)
            self.targets = torch.empty((self.n, *y.shape[1:]), dtype=y.dtype, device=device)
        k = min(len(x), self.n - self.filled)
        self.imgs[self.filled:self.filled + k] = x[:k]
        self.targets[self.filled:self.filled + k] = y[:k]
        self.filled += k

    def drain(self, device, wait_for: int = 1) -> int:
        """Move finished chunks to ``device``; block until at least ``wait_for`` scenes are there."""
        if self.pool is None:  # no workers: render in this process (smoke runs)
            while self.tasks and (self.filled < wait_for or self.filled == 0):
                self._store(render_chunk(self.tasks.pop(0)), device)
            return self.filled
        while True:
            done = [f for f in self.pending if f.done()]
            self.pending = [f for f in self.pending if not f.done()]
            for f in done:
                self._store(f.result(), device)
            if self.filled >= min(wait_for, self.n) or not self.pending:
                return self.filled
            time.sleep(0.05)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


def render_set(n: int, seed: int, args, workers: int) -> Tuple[np.ndarray, np.ndarray]:
    """Render ``n`` whole scenes in ``workers`` processes (chunks of 16), in order (held-out sets)."""
    bounds = list(range(0, n, 16)) + [n]
    tasks = [(seed, a, b, args.scene_side, args.difficulty) for a, b in zip(bounds, bounds[1:])]
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


def dense_loss(logits, target, n_classes: int, pos_weight: float) -> Tuple[object, Dict[str, object]]:
    """Presence BCE + centre BCE (positives up-weighted by ``pos_weight``: under 1 % of the patches hold
    a given class, and without the weight the head learned to predict nothing, F1 0) + masked orientation MSE."""
    import torch
    import torch.nn.functional as F

    k = n_classes
    t = target.float()
    pw = torch.full((k, 1, 1), float(pos_weight), device=logits.device)
    pres = F.binary_cross_entropy_with_logits(logits[:, :k], t[:, :k], pos_weight=pw)
    pos = t[:, k:k + 1]
    cen = F.binary_cross_entropy_with_logits(logits[:, k:k + 1], pos, weight=1.0 + (pos_weight - 1.0) * pos)
    mask = t[:, k + 3:k + 4]
    ang = (((logits[:, k + 1:k + 3].tanh() - t[:, k + 1:k + 3]) ** 2) * mask).sum() / mask.sum().clamp(min=1.0)
    total = pres + 0.5 * cen + 0.5 * ang
    return total, {"presence": pres.detach(), "centre": cen.detach(), "angle": ang.detach()}  # tensors: no sync


def augment(imgs, targets, canvas: int, n_classes: int, rng: random.Random, mean, std, jitter: bool = True):
    """A batch of stored scenes -> (normalised input, targets): a random patch-aligned ``canvas`` crop, a
    quarter turn and a mirror (the orientation target turned with them), per-image colour jitter."""
    import torch

    g, c = imgs.shape[1] // PATCH, canvas // PATCH
    if c < g:
        oy, ox = rng.randrange(g - c + 1), rng.randrange(g - c + 1)
        imgs = imgs[:, oy * PATCH:(oy + c) * PATCH, ox * PATCH:(ox + c) * PATCH]
        targets = targets[:, :, oy:oy + c, ox:ox + c]
    x = imgs.permute(0, 3, 1, 2).float() / 255.0
    y = targets.float()
    k = rng.randrange(4)
    if k:  # a quarter turn adds 90 degrees to θ: cos 2θ and sin 2θ change sign
        x, y = torch.rot90(x, k, (-2, -1)), torch.rot90(y, k, (-2, -1))
        if k % 2:
            y[:, n_classes + 1:n_classes + 3] *= -1
    if rng.random() < 0.5:  # mirror: θ -> π - θ, sin 2θ changes sign
        x, y = x.flip(-1), y.flip(-1)
        y[:, n_classes + 2] *= -1
    if jitter:
        b = x.shape[0]
        u = torch.rand(b, 5, 1, 1, device=x.device)
        level = x.mean((1, 2, 3), keepdim=True)
        x = (x - level) * (0.7 + 0.6 * u[:, :1]) + level  # contrast
        x = x * (0.85 + 0.3 * u[:, 1:4]) + (u[:, 4:5] - 0.5) * 0.16  # per-channel gain, brightness
        x = x.clamp(0.0, 1.0)
    return (x - mean) / std, y


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


def train(args, stream: SceneStream, n_classes: int) -> Tuple[object, object, Dict]:
    """Train for ``args.seconds`` (or until ``args.stop_at``) on ``stream``'s scenes: ``args.canvas`` crops, the
    last ``args.full_frac`` of the time on whole scenes (the students' grid) at a quarter of the batch."""
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
    gen = torch.Generator(device=device).manual_seed(args.seed)
    rng = random.Random(args.seed)
    t_start = time.perf_counter()
    stream.drain(device, wait_for=min(args.min_start, stream.n))
    waited = time.perf_counter() - t_start
    budget = args.seconds if args.stop_at is None else max(10.0, min(args.seconds, args.stop_at - time.time()))
    curve, step, t0, seen = [], 0, time.perf_counter(), 0
    while True:
        frac = (time.perf_counter() - t0) / budget
        if frac >= 1.0:
            break
        if step % 10 == 0:
            stream.drain(device, wait_for=0)
        for group in opt.param_groups:
            group["lr"] = lr_at(frac, args.lr)
        whole = frac >= 1.0 - args.full_frac
        batch = max(1, args.batch // 4) if whole else args.batch
        idx = torch.randint(0, stream.filled, (batch,), device=device, generator=gen)
        x, y = augment(stream.imgs[idx], stream.targets[idx], args.scene_side if whole else args.canvas, n_classes,
                       rng, mean, std)
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
            logits = patch_logits(model, head, x)
        loss, parts = dense_loss(logits.float(), y, n_classes, args.pos_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        seen += batch
        if step % 25 == 1:
            curve.append({"step": step, "s": round(time.perf_counter() - t0, 1), "scenes": stream.filled,
                          "loss": round(float(loss.detach()), 4), **{k: round(float(v), 4) for k, v in parts.items()}})
    wall = time.perf_counter() - t0
    stats = {"budget_s": round(budget, 1), "waited_for_first_scenes_s": round(waited, 1), "steps": step,
             "images_seen": seen, "unique_scenes": stream.filled, "views_per_scene": round(seen / max(stream.filled, 1), 1),
             "train_s": round(wall, 1), "images_per_s": round(seen / max(wall, 1e-9), 1), "curve": curve}
    return model.eval(), head.eval(), stats


THRESHOLDS = tuple(round(0.05 * i, 2) for i in range(1, 20))


def patch_metrics(model, head, imgs, targets, n_classes: int, device, batch: int = 32) -> Dict[str, float]:
    """Held-out patch metrics: presence F1 at p >= 0.5 and at the best of :data:`THRESHOLDS` (with the
    training ``pos_weight``, p = 0.5 already sits at a low posterior), and class accuracy on patches
    holding one object centre of one class."""
    import torch

    mean = torch.tensor((0.485, 0.456, 0.406), device=device).view(1, 3, 1, 1)
    std = torch.tensor((0.229, 0.224, 0.225), device=device).view(1, 3, 1, 1)
    counts = torch.zeros(len(THRESHOLDS), 3, dtype=torch.float64)
    correct = total = 0
    with torch.no_grad():
        for a in range(0, len(imgs), batch):
            x = to_input(torch.from_numpy(imgs[a:a + batch]).to(device), mean, std)
            y = torch.from_numpy(targets[a:a + batch]).to(device).float()
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                out = patch_logits(model, head, x).float()
            prob, true = out[:, :n_classes].sigmoid(), y[:, :n_classes] >= 0.5
            for i, thr in enumerate(THRESHOLDS):
                pred = prob >= thr
                counts[i] += torch.tensor([int((pred & true).sum()), int((pred & ~true).sum()), int((~pred & true).sum())],
                                          dtype=torch.float64)
            single = (y[:, n_classes] > 0) & (true.sum(1) == 1)  # a centre patch of one class only
            correct += int(((out[:, :n_classes].argmax(1) == y[:, :n_classes].argmax(1)) & single).sum())
            total += int(single.sum())
    f1 = [float(2 * tp / max(2 * tp + fp + fn, 1.0)) for tp, fp, fn in counts.tolist()]
    best = max(range(len(f1)), key=f1.__getitem__)
    return {"presence_f1": round(f1[THRESHOLDS.index(0.5)], 4), "presence_f1_best": round(f1[best], 4),
            "best_threshold": THRESHOLDS[best], "centre_class_acc": round(correct / max(total, 1), 4),
            "centre_patches": total}


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
    from edgekit.data.synth.difficulty import class_names

    n_classes = len(class_names(args.difficulty))
    t0 = time.perf_counter()
    # Both pools fork before CUDA starts in this process.
    val = render_set(args.n_val, args.seed + 1, args, args.workers)
    stream = SceneStream(args.n_images, args.seed, args, args.workers)
    print(f"teacher data: {args.n_val} held-out scenes in {time.perf_counter() - t0:.1f}s; "
          f"{args.n_images} training scenes of {args.scene_side}px streaming from {args.workers} workers", flush=True)
    import torch

    device = torch.device(args.device)
    try:
        model, head, stats = train(args, stream, n_classes)
    finally:
        stream.close()
    metrics = patch_metrics(model, head, *val, n_classes, device)
    rand_model, rand_head = build_model(args, n_classes)
    baseline = patch_metrics(rand_model.to(device).eval(), rand_head.to(device).eval(), *val, n_classes, device)
    timm_path, meta_path = save_both(model, args.out)
    loading = check_loading(model, [timm_path, meta_path], args.model_kwargs, device, val[0])
    return {"benchmark": "teacher_pretrain", "arch": ARCH, "device": _device_name(device),
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
            "classes": list(class_names(args.difficulty)), "train": stats,
            "val_patch_metrics": metrics, "random_init_patch_metrics": baseline, "loading": loading,
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
