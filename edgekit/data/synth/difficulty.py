"""Difficulty levels of the synthetic aerial OBB scenes: easy, standard (the original scenes), hard.

``standard`` is :func:`~edgekit.data.synth.scene.render_obb_scene` itself, untouched, so a seed
keeps giving the very same bytes. ``easy`` and ``hard`` are :class:`DifficultyProfile` knobs over
the same building blocks. Hard is meant to stay well below saturation when a detector is trained
from scratch on a few hundred images: small and dense objects, two look-alike classes told apart
only by fine markings (:data:`~edgekit.data.synth.shapes.HARD_CLASS_NAMES`), more clutter plus
object-sized decoys without markings, frequent occlusion, stronger blur, noise and uneven lighting.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .scene import (
    Scene,
    draw_clutter,
    draw_objects_with_shadows,
    fits,
    occlude,
    place_objects,
    render_obb_scene,
)
from .shapes import (
    HARD_CLASS_NAMES,
    OBB_CLASS_NAMES,
    ObjectSpec,
    class_parts,
    draw_object,
    draw_shadow,
    fill_polygon,
    place,
    sample_object,
    to_image,
)
from .textures import fractal_noise, terrain_background

DIFFICULTIES = ("easy", "standard", "hard")


@dataclass(frozen=True)
class DifficultyProfile:
    """What a difficulty level changes; counts are per scene of side ``scene_side`` (scaled by area)."""

    name: str
    class_names: Tuple[str, ...]
    objects: Tuple[int, int]  # objects per scene, inclusive
    object_scale: Tuple[float, float]  # size factor per object over the class's usual size
    clutter: Tuple[int, int]  # buildings, tree clumps and blobs per scene
    decoys: Tuple[int, int]  # class outlines without the class's markings (unlabelled)
    occlusion: float  # probability that a tree clump covers part of an object
    sensor: float  # strength of blur, gain/bias change and noise (1 = standard)
    blur_kernels: Tuple[int, ...]
    lighting: float  # amplitude of a smooth illumination field over the scene (0 = even light)
    contrast: Tuple[float, float] = (1.0, 1.0)  # object colours pulled towards the ground (1 = unchanged)


PROFILES: Dict[str, DifficultyProfile] = {
    "easy": DifficultyProfile("easy", OBB_CLASS_NAMES, (2, 5), (1.0, 1.2), (0, 3), (0, 0), 0.0, 0.5, (3,), 0.0),
    # Calibration: docs/distillation.md ("Round 2"); the first version ((14, 30) objects at 0.35-0.75x,
    # 4-10 plain-rectangle decoys, full contrast) saturated at ~95 mAP50 from 100 images.
    "hard": DifficultyProfile("hard", HARD_CLASS_NAMES, (20, 40), (0.18, 0.38), (12, 24), (25, 45), 0.5, 1.8,
                              (3, 5, 7), 0.9, (0.4, 0.75)),
}


def class_names(difficulty: str) -> Tuple[str, ...]:
    """The class names a dataset of ``difficulty`` is labelled with."""
    return PROFILES[difficulty].class_names if difficulty in PROFILES else OBB_CLASS_NAMES


def _fade(spec: ObjectSpec, ground: np.ndarray, rng: np.random.Generator, contrast: Tuple[float, float]) -> ObjectSpec:
    """Pull the body colour towards the local ground and the markings towards the body."""
    if contrast == (1.0, 1.0):
        return spec
    g = ground[int(spec.cy), int(spec.cx)].astype(np.float64)
    k, m = float(rng.uniform(*contrast)), float(rng.uniform(*contrast))
    body = g + (np.asarray(spec.body) - g) * k
    accent = body + (np.asarray(spec.accent) - body) * m
    return replace(spec, body=tuple(float(c) for c in body), accent=tuple(float(c) for c in accent))


def _place_decoys(rng: np.random.Generator, ground: np.ndarray, count: int, side: float,
                  p: DifficultyProfile, objects: Sequence[ObjectSpec]) -> List[ObjectSpec]:
    """Poses for ``count`` decoys: class outlines at object sizes, clear of the labelled objects."""
    h, w = ground.shape[:2]
    decoys: List[ObjectSpec] = []
    for class_id in rng.integers(0, len(p.class_names), count):
        cx, cy = float(rng.uniform(0, w)), float(rng.uniform(0, h))
        spec = place(sample_object(rng, int(class_id), int(side), ground[int(cy), int(cx)],
                                   float(rng.uniform(*p.object_scale))), cx, cy)
        if fits(spec, objects, w, h):
            decoys.append(_fade(spec, ground, rng, p.contrast))
    return decoys


def _draw_body_only(img: np.ndarray, spec: ObjectSpec) -> None:
    """A decoy: the class's body polygons in its body colour, no accent or dark markings."""
    for poly, role in class_parts(spec.class_id, spec.variant):
        if role == "body":
            fill_polygon(img, to_image(spec, poly), spec.body)


def _draw_scene_objects(rng: np.random.Generator, img: np.ndarray, objects: Sequence[ObjectSpec],
                        decoys: Sequence[ObjectSpec], side: float) -> None:
    """One sun for objects and decoys alike (a shadow tells nothing), decoys under the objects."""
    import cv2

    sun = float(rng.uniform(0, 2 * np.pi))
    offset = (np.cos(sun) * side * 0.012 * 0.4, np.sin(sun) * side * 0.012 * 0.4)  # small things, short shadows
    mask = np.zeros(img.shape[:2], np.float32)
    for spec in list(decoys) + list(objects):
        draw_shadow(mask, spec, offset)
    img *= (1.0 - 0.4 * cv2.GaussianBlur(mask, (3, 3), 0))[..., None]
    for spec in decoys:
        _draw_body_only(img, spec)
    for spec in objects:
        draw_object(img, spec)


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
    n_decoys = int(round(rng.integers(p.decoys[0], p.decoys[1] + 1) * area))
    count = max(1, int(round(rng.integers(p.objects[0], p.objects[1] + 1) * area)))
    class_ids = rng.integers(0, len(p.class_names), count)
    objects = [_fade(o, ground, rng, p.contrast) for o in place_objects(rng, ground, class_ids, int(side), scale=p.object_scale)]
    if p.decoys[1] == 0:  # easy: the standard scene's shadows and drawing
        draw_objects_with_shadows(rng, ground, objects, side=side)
    else:
        _draw_scene_objects(rng, ground, objects, _place_decoys(rng, ground, n_decoys, side, p, objects), side)
    occlude(rng, ground, objects, prob=p.occlusion)
    return Scene(degrade(rng, ground, p), None, objects)


__all__ = ["DIFFICULTIES", "PROFILES", "DifficultyProfile", "class_names", "degrade", "render_difficulty_scene"]
