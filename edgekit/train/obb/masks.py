"""Object masks rasterised from ground-truth oriented boxes, vectorised in torch.

A grid cell is "object" when its centre lies inside a true rotated rectangle (not its axis-aligned
hull). Boxes come as Ultralytics hands them to the loss: ``batch["bboxes"]`` (N, 5) normalised
xywhr, angle in radians, with ``batch["batch_idx"]`` naming each box's image. Normalised x/w scale
by the image width and y/h by its height, exactly as ``v8OBBLoss`` does, so the mask and the loss
see the same boxes.
"""

from __future__ import annotations

from typing import Tuple

import torch


def obb_mask(bboxes: torch.Tensor, batch_idx: torch.Tensor, batch_size: int, grid_hw: Tuple[int, int],
             img_hw: Tuple[int, int]) -> torch.Tensor:
    """(B, gh, gw) float mask: 1 where a cell centre is inside any of its image's rotated boxes.

    ``bboxes`` (N, 5) normalised xywhr; ``batch_idx`` (N,) image index of each box; ``img_hw`` the
    image size in pixels the boxes are normalised to; ``grid_hw`` the mask resolution.
    """
    gh, gw = int(grid_hw[0]), int(grid_hw[1])
    ih, iw = float(img_hw[0]), float(img_hw[1])
    device = bboxes.device
    mask = torch.zeros(batch_size, gh * gw, dtype=torch.float32, device=device)
    if bboxes.numel() == 0:
        return mask.view(batch_size, gh, gw)
    b = bboxes.detach().float().reshape(-1, 5)
    # Python-float scaling: a torch.tensor([...], device=cuda) here would be a host->device copy
    # that stalls the CPU behind the main stream every step.
    cx, cy, w, h = b[:, 0] * iw, b[:, 1] * ih, b[:, 2] * iw, b[:, 3] * ih
    cos, sin = torch.cos(b[:, 4]), torch.sin(b[:, 4])
    # Cell centres in image pixels.
    ys = (torch.arange(gh, device=device, dtype=torch.float32) + 0.5) * (ih / gh)
    xs = (torch.arange(gw, device=device, dtype=torch.float32) + 0.5) * (iw / gw)
    py, px = torch.meshgrid(ys, xs, indexing="ij")
    px, py = px.reshape(1, -1), py.reshape(1, -1)  # (1, P)
    dx, dy = px - cx[:, None], py - cy[:, None]  # (N, P)
    # Rotate the offsets into each box's frame: u along the box's w axis, v along its h axis.
    u = dx * cos[:, None] + dy * sin[:, None]
    v = -dx * sin[:, None] + dy * cos[:, None]
    inside = (u.abs() <= w[:, None] / 2) & (v.abs() <= h[:, None] / 2)  # (N, P)
    idx = batch_idx.detach().long().reshape(-1).to(device)
    mask.index_add_(0, idx, inside.float())
    return mask.clamp_(max=1.0).view(batch_size, gh, gw)


__all__ = ["obb_mask"]
