"""Difficulty levels of the synthetic aerial OBB scenes: easy, standard (the original scenes), hard.

``standard`` is :func:`~edgekit.data.synth.scene.render_obb_scene` itself, untouched, so a seed
keeps giving the very same bytes. ``easy`` and ``hard`` are :class:`DifficultyProfile` knobs over
the same building blocks. Hard is meant to stay well below saturation when a detector is trained
from scratch on a few hundred images: small and dense objects, two look-alike classes told apart
only by fine markings (:data:`~edgekit.data.synth.shapes.HARD_CLASS_NAMES`), more clutter plus
object-sized decoys without markings, frequent occlusion, stronger blur, noise and uneven lighting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import numpy as np

from .scene import Scene, draw_clutter, draw_objects_with_shadows, occlude, place_objects, render_obb_scene
from .shapes import HARD_CLASS_NAMES, OBB_CLASS_NAMES, fill_polygon
from .textures import contrasting_colour, fractal_noise, terrain_background

DIFFICULTIES = ("easy", "standard", "hard")


@dataclass(frozen=True)
class DifficultyProfile:
    """What a difficulty level changes; counts are per scene of side ``scene_side`` (scaled by area)."""

    name: str
    class_names: Tuple[str, ...]
    objects: Tuple[int, int]  # objects per scene, inclusive
    object_scale: Tuple[float, float]  # size factor per object over the class's usual size
    clutter: Tuple[int, int]  # buildings, tree clumps and blobs per scene
    decoys: Tuple[int, int]  # object-sized shapes without any class's markings
    occlusion: float  # probability that a tree clump covers part of an object
    sensor: float  # strength of blur, gain/bias change and noise (1 = standard)
    blur_kernels: Tuple[int, ...]
    lighting: float  # amplitude of a smooth illumination field over the scene (0 = even light)


PROFILES: Dict[str, DifficultyProfile] = {
    "easy": DifficultyProfile("easy", OBB_CLASS_NAMES, (2, 5), (1.0, 1.2), (0, 3), (0, 0), 0.0, 0.5, (3,), 0.0),
    "hard": DifficultyProfile("hard", HARD_CLASS_NAMES, (14, 30), (0.35, 0.75), (8, 18), (4, 10), 0.45, 1.6,
                              (3, 5, 7), 0.7),
}


def class_names(difficulty: str) -> Tuple[str, ...]:
    """The class names a dataset of ``difficulty`` is labelled with."""
    return PROFILES[difficulty].class_names if difficulty in PROFILES else OBB_CLASS_NAMES


def _draw_decoys(rng: np.random.Generator, img: np.ndarray, count: int, side: float) -> None:
    """Object-sized rotated rectangles and ellipses in object-like colours, without any markings."""
    h, w = img.shape[:2]
    for _ in range(count):
        length = side * float(rng.uniform(0.04, 0.2))
        width = length * float(rng.uniform(0.25, 1.0))
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        colour = contrasting_colour(rng, img[int(cy), int(cx)])
        if rng.random() < 0.5:
            unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])
        else:
            t = np.linspace(0, 2 * np.pi, 24, endpoint=False)
            unit = np.stack([np.cos(t), np.sin(t)], 1) * 0.5
        theta = float(rng.uniform(0, np.pi))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        fill_polygon(img, (unit * (length, width)) @ rot.T + (cx, cy), colour)


def degrade(rng: np.random.Generator, img: np.ndarray, profile: DifficultyProfile) -> np.ndarray:
    """Uneven lighting, blur, gain/bias change and noise on a float32 image; returns uint8 BGR."""
    import cv2

    h, w = img.shape[:2]
    if profile.lighting:
        field = fractal_noise(rng, h, w, octaves=2, base=2)[..., None]
        img = img * (1.0 - profile.lighting / 2 + profile.lighting * field)
    s = profile.sensor
    if rng.random() < min(0.9, 0.35 * s):
        k = int(rng.choice(profile.blur_kernels))
        img = cv2.GaussianBlur(img, (k, k), 0)
    gain = float(rng.uniform(1 - 0.15 * s, 1 + 0.15 * s))
    bias = float(rng.uniform(-15, 15)) * s
    sigma = float(rng.uniform(1.0, 6.0)) * s
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * sigma
    return np.clip(img * gain + bias + noise, 0, 255).astype(np.uint8)


def render_difficulty_scene(rng: np.random.Generator, imgsz: int, difficulty: str = "standard",
                            scene_side: Optional[int] = None) -> Scene:
    """Render one ``imgsz`` square aerial image at ``difficulty``.

    ``scene_side`` draws objects, clutter and their density as in a scene of that side (default
    ``imgsz``): a 320 px image with ``scene_side=640`` looks like a quarter of a 640 px scene.
    """
    if difficulty == "standard":
        if scene_side not in (None, imgsz):
            raise ValueError("scene_side is only supported by the easy and hard difficulties")
        return render_obb_scene(rng, imgsz)
    if difficulty not in PROFILES:
        raise ValueError(f"unknown difficulty {difficulty!r}; use one of {', '.join(DIFFICULTIES)}")
    p = PROFILES[difficulty]
    side = float(scene_side or imgsz)
    area = (imgsz / side) ** 2
    ground = terrain_background(rng, imgsz, imgsz)
    draw_clutter(rng, ground, int(round(rng.integers(p.clutter[0], p.clutter[1] + 1) * area)), side=side)
    _draw_decoys(rng, ground, int(round(rng.integers(p.decoys[0], p.decoys[1] + 1) * area)), side)
    count = max(1, int(round(rng.integers(p.objects[0], p.objects[1] + 1) * area)))
    class_ids = rng.integers(0, len(p.class_names), count)
    objects = place_objects(rng, ground, class_ids, int(side), scale=p.object_scale)
    draw_objects_with_shadows(rng, ground, objects, side=side)
    occlude(rng, ground, objects, prob=p.occlusion)
    return Scene(degrade(rng, ground, p), None, objects)


__all__ = ["DIFFICULTIES", "PROFILES", "DifficultyProfile", "class_names", "degrade", "render_difficulty_scene"]
