"""Contrastive pretraining of RefDet's reference encoder on synthetic identities (a benchmark step, not a product command).

No DINOv2 weights exist on the benchmark machines, and a ViT from random weights that only sees the
episodic SupCon of ``train refdet`` (``n_way`` identities per step) learns the training identities
instead of "what makes two photos the same object" (``benchmarks/results/refdet_gpu_nvidia-h200_run1.md``).
This step stands in for the pretrained DINOv2 a real user puts in ``artifacts/models/dinov2/``:

* views: every training target's reference photos plus crops of it from annotated frames of its
  video (ground-level photo vs aerial crop: the matching the detector must do), as the encoder sees
  them (``ref_array``: letterboxed to ``ref_size``);
* batches of ``--ids`` identities x 2 views, augmented on the GPU (mirror, quarter turn, contrast,
  brightness, per-channel gain), SupCon (``edgekit.train.fewshot.losses.supcon_loss``) on the
  normalised projection of the encoder's [CLS, mean patch] feature (the feature ``RefDetModel.embed`` reads);
* a fixed wall-clock budget (warmup, then cosine by elapsed time), bf16 autocast on CUDA, AdamW.

The encoder (timm layout, no projection head) is written as ``<dir>/<encoder>.safetensors``: training
then reads it with ``model.encoder_weights=auto model.encoder_weights_dir=<dir>``, through the product's
weight resolver, exactly as it reads real DINOv2 weights. Reported: top-1 retrieval accuracy of held-out
targets (each aerial crop against the mean reference embedding of every held-out target) before and after.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import numpy as np

CROPS_PER_TARGET = 4
_Views = Tuple[np.ndarray, np.ndarray, np.ndarray]  # uint8 [N,3,R,R], identity [N], is_reference [N]


def _video_views(job: Tuple[str, List[str], int]) -> Tuple[List[np.ndarray], List[np.ndarray]]:
    """(reference views, crop views) of each listed video of a RefDet root, uint8 CHW at ``ref_size``."""
    from edgekit.train.fewshot.augment import crop_box
    from edgekit.train.fewshot.data import RefDetDataset
    from edgekit.train.fewshot.episodes import ref_array

    root, video_ids, ref_size = job
    ds = RefDetDataset(root, cache_size=0)
    out_refs, out_crops = [], []
    try:
        for vid in video_ids:
            rec = ds.record(vid)
            refs = [ref_array(p, ref_size) for p in ds.references(vid)]
            frames = rec.annotated_frames
            pick = [frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(CROPS_PER_TARGET, len(frames)))]
            crops = [ref_array(crop_box(ds.frame(vid, f), rec.boxes_at(f)[0]), ref_size) for f in sorted(set(pick))]
            out_refs.append((np.stack(refs) * 255).round().astype(np.uint8))
            out_crops.append((np.stack(crops) * 255).round().astype(np.uint8) if crops
                             else np.zeros((0, 3, ref_size, ref_size), np.uint8))
    finally:
        ds.close()
    return out_refs, out_crops


def collect_views(root: Path, ref_size: int, workers: int) -> _Views:
    """Every annotated target of ``root``: its references and up to ``CROPS_PER_TARGET`` aerial crops."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    from edgekit.data.formats.refdet import read_refdet_annotations

    ids = [v.video_id for v in read_refdet_annotations(root) if any(t.bboxes for t in v.annotations)]
    chunks = [ids[i::max(1, workers)] for i in range(max(1, workers))]
    jobs = [(str(root), c, ref_size) for c in chunks if c]
    if workers > 1:
        with ProcessPoolExecutor(len(jobs), mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_video_views, jobs))
    else:
        parts = [_video_views(j) for j in jobs]
    images, labels, is_ref = [], [], []
    label = 0
    for refs, crops in parts:
        for r, c in zip(refs, crops):
            images += [r, c]
            labels += [label] * (len(r) + len(c))
            is_ref += [True] * len(r) + [False] * len(c)
            label += 1
    return np.concatenate(images), np.asarray(labels, np.int64), np.asarray(is_ref)


def _augment(x, gen):
    """GPU augmentation of a float 0..1 batch: mirror, quarter turn, contrast, brightness, channel gain."""
    import torch

    n = len(x)
    flip = torch.rand(n, device=x.device, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    k = torch.randint(0, 4, (n,), device=x.device, generator=gen)
    for turns in (1, 2, 3):  # square views: a quarter turn keeps the shape
        x = torch.where((k == turns)[:, None, None, None], torch.rot90(x, turns, (2, 3)), x)
    u = lambda *s: torch.rand(*s, device=x.device, generator=gen)  # noqa: E731
    contrast, bright, gain = 0.75 + 0.5 * u(n, 1, 1, 1), 0.2 * u(n, 1, 1, 1) - 0.1, 0.85 + 0.3 * u(n, 3, 1, 1)
    return (((x - 0.5) * contrast + 0.5 + bright) * gain).clamp(0, 1)


class _Head:
    """The encoder plus a projection of [CLS, mean patch] (as ``RefDetModel.embed``) to a unit vector."""

    def __init__(self, cfg, device, dim: int = 128) -> None:
        import torch

        from edgekit.train.fewshot.model import IMAGENET_MEAN, IMAGENET_STD, build_encoder

        self.encoder = build_encoder(cfg, load_weights=False).to(device)
        c = int(self.encoder.num_features)
        self.proj = torch.nn.Sequential(torch.nn.Linear(2 * c, 2 * c), torch.nn.GELU(), torch.nn.Linear(2 * c, dim)).to(device)
        self.mean = torch.tensor(IMAGENET_MEAN, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(IMAGENET_STD, device=device).view(1, 3, 1, 1)

    def parameters(self):
        return [*self.encoder.parameters(), *self.proj.parameters()]

    def feature(self, x):
        import torch

        tokens = self.encoder.forward_features((x - self.mean) / self.std)
        prefix = int(getattr(self.encoder, "num_prefix_tokens", 1))
        return torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], 1)

    def __call__(self, x):
        import torch.nn.functional as F

        return F.normalize(self.proj(self.feature(x)), dim=1)


def retrieval_top1(head: _Head, views: _Views, device, batch: int = 256) -> float:
    """Each crop vs every target's mean reference feature (cosine of the encoder feature); top-1 accuracy."""
    import torch
    import torch.nn.functional as F

    images, labels, is_ref = views
    feats = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(images[i:i + batch]).to(device).float() / 255
            feats.append(F.normalize(head.feature(x).float(), dim=1))
    f, lab = torch.cat(feats), torch.from_numpy(labels).to(device)
    ref, crop = torch.from_numpy(is_ref).to(device), ~torch.from_numpy(is_ref).to(device)
    n = int(lab.max()) + 1
    protos = F.normalize(torch.zeros(n, f.shape[1], device=device).index_add_(0, lab[ref], f[ref]), dim=1)
    pred = (f[crop] @ protos.t()).argmax(1)
    return float((pred == lab[crop]).float().mean()) if bool(crop.any()) else 0.0


def _pair_batch(labels: np.ndarray, ids: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``ids`` random identities x 2 distinct views each."""
    starts = np.flatnonzero(np.r_[True, labels[1:] != labels[:-1]])
    ends = np.r_[starts[1:], len(labels)]
    chosen = rng.choice(len(starts), size=min(ids, len(starts)), replace=False)
    out = []
    for c in chosen:
        a, b = rng.choice(np.arange(starts[c], ends[c]), size=2, replace=False)
        out += [a, b]
    return np.asarray(out)


def pretrain_encoder(cfg, train_root: Path, val_root: Path, out_dir: Path, device: str, seconds: float,
                     workers: int = 0, ids: int = 192, lr: float = 5e-4, seed: int = 0) -> Dict[str, Any]:
    """Train the encoder of ``cfg`` (a ``RefDetModelConfig``) for ``seconds``; write it; return the stats."""
    import torch
    from safetensors.torch import save_file

    from edgekit.train.fewshot.losses import supcon_loss
    from edgekit.train.fewshot.trainer import select_device

    t0 = time.perf_counter()
    dev = select_device(device)
    torch.manual_seed(seed)
    train, val = collect_views(train_root, cfg.ref_size, workers), collect_views(val_root, cfg.ref_size, workers)
    collect_s = time.perf_counter() - t0
    head = _Head(cfg, dev)
    top1_before = retrieval_top1(head, val, dev)
    images = torch.from_numpy(train[0]).to(dev)
    opt = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=0.05)
    rng, gen = np.random.default_rng(seed), torch.Generator(device=dev).manual_seed(seed)
    amp = dict(device_type="cuda", dtype=torch.bfloat16, enabled=dev.type == "cuda")
    losses, step, t1 = [], 0, time.perf_counter()
    while (elapsed := time.perf_counter() - t1) < seconds:
        share = elapsed / seconds
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / 50) * 0.5 * (1 + math.cos(math.pi * share))
        idx = _pair_batch(train[1], ids, rng)
        x = _augment(images[torch.from_numpy(idx).to(dev)].float() / 255, gen)
        with torch.autocast(**amp):
            z = head(x)
        loss = supcon_loss(z.float(), torch.from_numpy(train[1][idx]).to(dev), temperature=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(head.parameters(), 1.0)
        opt.step()
        step += 1
        if step % 25 == 0:
            losses.append((step, round(float(loss), 4)))
    train_s = time.perf_counter() - t1
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{cfg.encoder}.safetensors"
    save_file({k: v.detach().contiguous().cpu() for k, v in head.encoder.state_dict().items()}, str(path))
    return {"weights": str(path), "train_views": int(len(train[0])), "train_identities": int(train[1].max()) + 1,
            "val_identities": int(val[1].max()) + 1, "steps": step, "ids_per_batch": min(ids, int(train[1].max()) + 1), "lr": lr,
            "collect_s": round(collect_s, 1), "train_s": round(train_s, 1), "loss_curve": losses[-20:],
            "val_top1_random_init": round(top1_before, 4), "val_top1_pretrained": round(retrieval_top1(head, val, dev), 4),
            "wall_s": round(time.perf_counter() - t0, 1)}


__all__ = ["pretrain_encoder", "collect_views", "retrieval_top1"]
