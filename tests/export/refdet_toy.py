"""A toy RefDet model that follows the RefDet contract exactly (small enough for CPU tests).

``encode_one(refs [1,3,R,R]) -> [1,D]`` L2-normalised, ``encode(refs [K,3,R,R]) -> [1,D]`` (mean of the
normalised embeddings, normalised again), ImageNet normalisation inside the model, and in eval mode
``model(images [B,3,H,W], embedding [B,D]) -> [B,5,A]`` = cx, cy, w, h (input pixels), sigmoid score;
the export wrappers ``ReferenceEncoderGraph``/``DetectorGraph`` have the contract's I/O. Scores are
the cosine between each 8-px cell's feature and the target embedding, so the target decides them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DIM, REF_SIZE, STRIDE, IMGSZ = 16, 32, 8, 64


class ToyRefDetModel(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        self.enc_conv = nn.Conv2d(3, DIM, 3, stride=2, padding=1)
        self.enc_fc = nn.Linear(DIM, DIM)
        self.backbone = nn.Sequential(nn.Conv2d(3, DIM, 3, padding=1), nn.ReLU(), nn.Conv2d(DIM, DIM, STRIDE, STRIDE))
        self.fuse = nn.Conv2d(DIM, DIM, 1)
        self.box = nn.Conv2d(DIM, 4, 1)

    def encode_one(self, refs: torch.Tensor) -> torch.Tensor:
        x = (refs - self.mean) / self.std
        f = torch.relu(self.enc_conv(x)).mean(dim=(2, 3))
        return F.normalize(self.enc_fc(f), dim=1)

    def encode(self, refs: torch.Tensor) -> torch.Tensor:
        embs = torch.cat([self.encode_one(refs[k:k + 1]) for k in range(refs.shape[0])])
        return F.normalize(embs.mean(0, keepdim=True), dim=1)

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        f = self.backbone((images - self.mean) / self.std)  # (B, D, h, w)
        f = self.fuse(f * (1 + embedding[:, :, None, None]))  # conditioned on the target
        b, _, h, w = f.shape
        sim = (F.normalize(f, dim=1) * embedding[:, :, None, None]).sum(1, keepdim=True)
        score = torch.sigmoid(12.0 * sim - 3.0)
        ys, xs = torch.meshgrid(torch.arange(h, dtype=f.dtype), torch.arange(w, dtype=f.dtype), indexing="ij")
        d = self.box(f)
        cx = (xs + 0.5) * STRIDE + torch.tanh(d[:, 0:1]) * STRIDE
        cy = (ys + 0.5) * STRIDE + torch.tanh(d[:, 1:2]) * STRIDE
        wh = STRIDE * (1.0 + 2.0 * torch.sigmoid(d[:, 2:4]))
        return torch.cat([cx, cy, wh, score], 1).flatten(2)  # (B, 5, A)


class ReferenceEncoderGraph(nn.Module):
    def __init__(self, model: ToyRefDetModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, refs: torch.Tensor) -> torch.Tensor:
        return self.model.encode_one(refs)


class DetectorGraph(nn.Module):
    def __init__(self, model: ToyRefDetModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.model(images, embedding)


def install(monkeypatch, ckpt_path) -> ToyRefDetModel:
    """Make ``edgekit export`` load the toy for ``ckpt_path`` (a real RefDet-marked checkpoint file)."""
    import edgekit.export.refdet as refdet
    from edgekit.export.adapters import LoadedCheckpoint

    model = ToyRefDetModel().eval()
    torch.save({"edgekit_task": "refdet", "format": 1, "imgsz": IMGSZ,
                "model_config": {"ref_size": REF_SIZE}}, str(ckpt_path))
    monkeypatch.setattr(refdet, "graph_wrappers", lambda: (ReferenceEncoderGraph, DetectorGraph))
    monkeypatch.setattr(refdet, "load_refdet", lambda path, trust=False: LoadedCheckpoint(
        path, model, "refdet", {0: "target"}, IMGSZ, {"model_config": {"ref_size": REF_SIZE}}))
    return model
