"""Synthetic datasets: aerial OBB scenes and RefDet drone videos, deterministic per seed."""

from __future__ import annotations

from .obb import generate_obb_dataset, obb_label_lines
from .refdet import count_video_frames, generate_refdet_dataset, render_references
from .scene import Scene, render_obb_scene
from .shapes import OBB_CLASS_NAMES, ObjectSpec

__all__ = [
    "OBB_CLASS_NAMES",
    "ObjectSpec",
    "Scene",
    "count_video_frames",
    "generate_obb_dataset",
    "generate_refdet_dataset",
    "obb_label_lines",
    "render_obb_scene",
    "render_references",
]
