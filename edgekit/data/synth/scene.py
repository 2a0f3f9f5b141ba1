"""Aerial scene composition: terrain, clutter, placed objects, shadows, occluders, sensor effects.

:func:`render_obb_scene` is the single place an OBB training image is made; the dataset writer
and the tests both call it, so the tests can compare a finished image with its object-free
background.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np

from .shapes import (
    OBB_CLASS_NAMES,
    ObjectSpec,
    draw_object,
    draw_shadow,
    fill_polygon,
    place,
    sample_object,
)
from .textures import apply_sensor_effects, terrain_background

_MARGIN_PX = 1.0  # objects stay this far inside the border, so no label is ever clipped


@dataclass
class Scene:
    """A rendered image, the same scene before objects were drawn, and the objects' specs."""

    image: np.ndarray  # (H, W, 3) uint8 BGR, final
    background: Optional[np.ndarray]  # (H, W, 3) uint8 BGR: the same scene without objects, or None
    objects: List[ObjectSpec]


def draw_tree_clump(rng: np.random.Generator, img: np.ndarray, cx: float, cy: float, radius: float) -> None:
    """A cluster of dark-green discs: trees/bushes, used as clutter and as occluders."""
    for _ in range(int(rng.integers(3, 8))):
        r = radius * float(rng.uniform(0.4, 0.8))
        ox, oy = rng.uniform(-0.6, 0.6, 2) * radius
        colour = (float(rng.uniform(20, 70)), float(rng.uniform(60, 120)), float(rng.uniform(20, 60)))
        circle = np.stack([np.cos(np.linspace(0, 2 * np.pi, 20)), np.sin(np.linspace(0, 2 * np.pi, 20))], 1)
        fill_polygon(img, circle * r + (cx + ox, cy + oy), colour)


def _draw_building(rng: np.random.Generator, img: np.ndarray, size: float) -> None:
    """An L-shaped or rectangular roof in muted colours with a ridge line: not any class."""
    h, w = img.shape[:2]
    cx, cy = rng.uniform(0, 1, 2) * (w, h)
    a, b = size, size * float(rng.uniform(0.5, 1.0))
    cut = float(rng.uniform(0.3, 0.6))
    outline = np.array([[0, 0], [a, 0], [a, b * cut], [a * cut, b * cut], [a * cut, b], [0, b]])
    if rng.random() < 0.4:
        outline = np.array([[0, 0], [a, 0], [a, b], [0, b]])
    theta = float(rng.uniform(0, np.pi))
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    pts = (outline - (a / 2, b / 2)) @ rot.T + (cx, cy)
    grey = float(rng.uniform(70, 170))
    fill_polygon(img, pts, (grey + rng.uniform(-15, 15), grey, grey + rng.uniform(-15, 15)))
    cv2.line(img, tuple(int(v) for v in pts[0]), tuple(int(v) for v in pts[2]), (grey * 0.7,) * 3, 1)


def _draw_blob(rng: np.random.Generator, img: np.ndarray, size: float) -> None:
    """A random convex blob (rubble, pond, vegetation patch)."""
    h, w = img.shape[:2]
    pts = rng.uniform(-0.5, 0.5, (int(rng.integers(5, 9)), 2)) * size + rng.uniform(0, 1, 2) * (w, h)
    hull = cv2.convexHull(pts.astype(np.float32)).reshape(-1, 2).astype(np.float64)
    fill_polygon(img, hull, rng.uniform(30, 220, 3))


def draw_clutter(rng: np.random.Generator, img: np.ndarray, count: int, side: Optional[float] = None) -> None:
    """Distractor shapes that belong to no class, drawn under the objects.

    ``side`` is the frame size the clutter is scaled to (default: the image's own side; a large
    map passes its camera's frame size so clutter keeps its on-screen size).
    """
    side = float(min(img.shape[:2])) if side is None else float(side)
    for _ in range(count):
        kind = rng.random()
        if kind < 0.4:
            _draw_building(rng, img, side * float(rng.uniform(0.07, 0.18)))
        elif kind < 0.75:
            h, w = img.shape[:2]
            cx, cy = rng.uniform(0, 1, 2) * (w, h)
            draw_tree_clump(rng, img, cx, cy, side * float(rng.uniform(0.02, 0.05)))
        else:
            _draw_blob(rng, img, side * float(rng.uniform(0.04, 0.12)))


def fits(spec: ObjectSpec, placed: Sequence[ObjectSpec], w: int, h: int) -> bool:
    """Whether ``spec`` lies fully inside a (w, h) image and clear of the ``placed`` objects."""
    corners = spec.corners()
    if corners.min() < _MARGIN_PX or corners[:, 0].max() > w - 1 - _MARGIN_PX or corners[:, 1].max() > h - 1 - _MARGIN_PX:
        return False
    # Circumcircles may overlap a little (objects park close), but never swallow each other.
    return all(np.hypot(spec.cx - o.cx, spec.cy - o.cy) > 0.7 * (spec.radius() + o.radius()) for o in placed)


def place_objects(rng: np.random.Generator, ground: np.ndarray, class_ids: Sequence[int],
                  imgsz: int, tries: int = 30, scale: Optional[Tuple[float, float]] = None) -> List[ObjectSpec]:
    """Pose one object per class id at a free spot fully inside the image; drop those with none.

    ``scale`` (min, max): each try draws a size factor in that range (None: every object at 1.0 and
    no draw, so the standard scenes keep their random stream).
    """
    h, w = ground.shape[:2]
    placed: List[ObjectSpec] = []
    for class_id in class_ids:
        for _ in range(tries):
            cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
            local = ground[int(cy), int(cx)]
            factor = 1.0 if scale is None else float(rng.uniform(*scale))
            spec = place(sample_object(rng, int(class_id), imgsz, local, factor), cx, cy)
            if fits(spec, placed, w, h):
                placed.append(spec)
                break
    return placed


def draw_objects_with_shadows(rng: np.random.Generator, img: np.ndarray, objects: Sequence[ObjectSpec],
                              side: Optional[float] = None) -> None:
    """Cast one sun-direction shadow per object, then draw the objects on top (in place)."""
    side = float(min(img.shape[:2])) if side is None else float(side)
    sun = float(rng.uniform(0, 2 * np.pi))
    offset = (np.cos(sun) * side * 0.012, np.sin(sun) * side * 0.012)
    mask = np.zeros(img.shape[:2], np.float32)
    for spec in objects:
        draw_shadow(mask, spec, offset)
    img *= (1.0 - 0.45 * cv2.GaussianBlur(mask, (5, 5), 0))[..., None]
    for spec in objects:
        draw_object(img, spec)


def occlude(rng: np.random.Generator, img: np.ndarray, objects: Sequence[ObjectSpec], prob: float) -> None:
    """Cover part of some objects with a tree clump at their edge (the label keeps the full box)."""
    for spec in objects:
        if rng.random() >= prob:
            continue
        u, v = float(rng.choice([-0.5, 0.5])), float(rng.uniform(-0.5, 0.5))
        if rng.random() < 0.5:
            u, v = v, u
        c, s = np.cos(spec.angle), np.sin(spec.angle)
        px = spec.cx + u * spec.length * c - v * spec.width * s
        py = spec.cy + u * spec.length * s + v * spec.width * c
        draw_tree_clump(rng, img, px, py, 0.25 * float(np.sqrt(spec.length * spec.width)))


def render_obb_scene(rng: np.random.Generator, imgsz: int, n_objects: Tuple[int, int] = (3, 8),
                     class_ids: Optional[Sequence[int]] = None, keep_background: bool = False) -> Scene:
    """Render one aerial image with 3-8 oriented objects (inclusive), clutter and sensor effects.

    With ``keep_background`` the object-free scene is also returned, passed through the very same
    sensor effects (same blur, gain and noise draw), so the two differ only where objects are.
    """
    ground = terrain_background(rng, imgsz, imgsz)
    draw_clutter(rng, ground, int(rng.integers(2, 9)))
    background = ground.copy() if keep_background else None
    if class_ids is None:
        count = int(rng.integers(n_objects[0], n_objects[1] + 1))
        class_ids = rng.integers(0, len(OBB_CLASS_NAMES), count)
    objects = place_objects(rng, ground, class_ids, imgsz)
    img = ground
    draw_objects_with_shadows(rng, img, objects)
    occlude(rng, img, objects, prob=0.25)
    sensor_seed = int(rng.integers(2**32))
    image = apply_sensor_effects(np.random.default_rng(sensor_seed), img)
    if background is not None:
        background = apply_sensor_effects(np.random.default_rng(sensor_seed), background)
    return Scene(image, background, objects)


# Large aerial frames (``data synth obb --frame-size``): objects drawn as they would be in a scene of
# this side, so they stay 16-54 px long whatever the frame size (a 2048-px frame resized to 640 shrinks
# them to 5-17 px: the case tiling exists for).
SMALL_OBJECT_SCENE = 160
_LARGE_FRAME_DENSITY = (3, 8)  # objects per 640 x 640 px of frame, like one normal scene


def render_large_obb_scene(rng: np.random.Generator, frame_size: int) -> Scene:
    """Render a ``frame_size`` square aerial frame with many small oriented objects.

    Terrain, clutter and objects are the normal scene's, with object sizes fixed by
    :data:`SMALL_OBJECT_SCENE` and their count and the clutter scaled with the frame's area.
    """
    ground = terrain_background(rng, frame_size, frame_size)
    area = (frame_size / 640.0) ** 2
    draw_clutter(rng, ground, int(rng.integers(2, 9) * area), side=640.0)
    lo, hi = (max(1, int(round(n * area))) for n in _LARGE_FRAME_DENSITY)
    class_ids = rng.integers(0, len(OBB_CLASS_NAMES), int(rng.integers(lo, hi + 1)))
    objects = place_objects(rng, ground, class_ids, SMALL_OBJECT_SCENE)
    draw_objects_with_shadows(rng, ground, objects, side=SMALL_OBJECT_SCENE)
    occlude(rng, ground, objects, prob=0.1)
    return Scene(apply_sensor_effects(rng, ground), None, objects)
