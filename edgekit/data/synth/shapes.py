"""The synthetic object catalogue: class shapes, their placement on an image and their drawing.

Each class is a set of polygons in a unit box (u along the object's length, v across it, both in
[-0.5, 0.5]), so the object's oriented bounding box is exactly that box rotated and scaled: the
label is the true extent of the drawn object, not an estimate. Classes differ in outline and in
surface pattern (wings, pointed hull, windscreens, rings, corrugation stripes); colours are random
per object so colour alone never tells a class.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Dict, List, Sequence, Tuple

import cv2
import numpy as np

from .textures import contrasting_colour

OBB_CLASS_NAMES: Tuple[str, ...] = ("plane", "ship", "vehicle", "storage-tank", "container")
# The hard difficulty adds look-alikes: a van has the vehicle's outline and a tanker the ship's hull;
# only their fine markings (a front-only windscreen and roof seams; round deck domes) tell them apart.
HARD_CLASS_NAMES: Tuple[str, ...] = OBB_CLASS_NAMES + ("van", "tanker")

# class -> (length as a fraction of the image side (min, max), width / length (min, max)).
CLASS_GEOMETRY: Dict[str, Tuple[Tuple[float, float], Tuple[float, float]]] = {
    "plane": ((0.18, 0.32), (0.85, 1.05)),
    "ship": ((0.20, 0.34), (0.24, 0.33)),
    "vehicle": ((0.10, 0.16), (0.45, 0.55)),
    "storage-tank": ((0.10, 0.20), (1.0, 1.0)),
    "container": ((0.15, 0.26), (0.34, 0.42)),
    "van": ((0.10, 0.16), (0.45, 0.55)),
    "tanker": ((0.20, 0.34), (0.24, 0.33)),
}

_SUBPIXEL_SHIFT = 4  # cv2 fixed-point bits: polygons are placed at 1/16 px precision
_CIRCLE = np.stack([np.cos(np.linspace(0, 2 * np.pi, 40, endpoint=False)),
                    np.sin(np.linspace(0, 2 * np.pi, 40, endpoint=False))], 1) * 0.5

Part = Tuple[np.ndarray, str]  # (K, 2) polygon in unit-box (u, v) coordinates, colour role


@dataclass(frozen=True)
class ObjectSpec:
    """One object: class, pose (centre px, length/width px, angle rad) and appearance."""

    class_id: int
    cx: float
    cy: float
    length: float
    width: float
    angle: float
    body: Tuple[float, float, float]
    accent: Tuple[float, float, float]
    variant: int = 0  # pattern variant (stripe count, markings); gives objects identities

    def corners(self) -> np.ndarray:
        """(4, 2) image-pixel corners of the oriented box, in drawing order."""
        unit = np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]], np.float64)
        return to_image(self, unit)

    def radius(self) -> float:
        return 0.5 * float(np.hypot(self.length, self.width))


def to_image(spec: ObjectSpec, uv: np.ndarray) -> np.ndarray:
    """Map unit-box (u, v) points onto the image through the object's pose."""
    c, s = np.cos(spec.angle), np.sin(spec.angle)
    u = uv[:, 0] * spec.length
    v = uv[:, 1] * spec.width
    return np.stack([spec.cx + u * c - v * s, spec.cy + u * s + v * c], 1)


def _rect(u0: float, u1: float, v0: float, v1: float) -> np.ndarray:
    return np.array([[u0, v0], [u1, v0], [u1, v1], [u0, v1]], np.float64)


def _plane_parts(variant: int) -> List[Part]:
    sweep = 0.08 + 0.04 * (variant % 3)
    fuselage = np.array([[-0.5, -0.06], [0.36, -0.06], [0.5, 0], [0.36, 0.06], [-0.5, 0.06]])
    wing = np.array([[0.16, 0.05], [0.16 - sweep - 0.12, 0.5], [0.04 - sweep - 0.12, 0.5], [0.0, 0.05]])
    tail = np.array([[-0.34, 0.05], [-0.46, 0.2], [-0.5, 0.2], [-0.46, 0.05]])
    mirror = np.array([1.0, -1.0])
    parts = [(wing, "body"), (wing * mirror, "body"), (tail, "body"), (tail * mirror, "body")]
    parts += [(fuselage, "body"), (_rect(0.2, 0.34, -0.035, 0.035), "accent")]
    if variant % 2:
        parts.append((_rect(-0.1, -0.02, -0.45, 0.45), "accent"))  # wing band marking
    return parts


def _ship_parts(variant: int) -> List[Part]:
    hull = np.array([[-0.5, -0.5], [0.22, -0.5], [0.5, 0.0], [0.22, 0.5], [-0.5, 0.5]])
    deck = np.array([[-0.44, -0.32], [0.18, -0.32], [0.4, 0.0], [0.18, 0.32], [-0.44, 0.32]])
    parts: List[Part] = [(hull, "body"), (deck, "accent"), (_rect(-0.4, -0.22, -0.26, 0.26), "body")]
    n_hatches = 2 + variant % 3
    for i in range(n_hatches):
        u0 = -0.15 + i * (0.3 / n_hatches)
        parts.append((_rect(u0, u0 + 0.2 / n_hatches, -0.18, 0.18), "body"))
    return parts


def _vehicle_parts(variant: int) -> List[Part]:
    body = np.array([[-0.5, -0.42], [-0.44, -0.5], [0.44, -0.5], [0.5, -0.42],
                     [0.5, 0.42], [0.44, 0.5], [-0.44, 0.5], [-0.5, 0.42]])
    windscreen = np.array([[0.12, -0.4], [0.3, -0.34], [0.3, 0.34], [0.12, 0.4]])
    rear = _rect(-0.38, -0.28, -0.36, 0.36)
    parts: List[Part] = [(body, "body"), (windscreen, "dark"), (rear, "dark")]
    if variant % 2:
        parts.append((_rect(-0.25, 0.08, -0.08, 0.08), "accent"))  # roof stripe
    return parts


def _tank_parts(variant: int) -> List[Part]:
    parts: List[Part] = [(_CIRCLE, "body"), (_CIRCLE * 0.8, "accent"), (_CIRCLE * 0.7, "body")]
    if variant % 2:
        parts.append((_CIRCLE * 0.25, "accent"))
    parts.append((_rect(-0.04, 0.04, -0.3, 0.3), "dark"))  # roof ladder/spine: breaks rotational symmetry
    return parts


def _container_parts(variant: int) -> List[Part]:
    parts: List[Part] = [(_rect(-0.5, 0.5, -0.5, 0.5), "body")]
    n_stripes = 7 + 2 * (variant % 4)
    for u in np.linspace(-0.45, 0.45, n_stripes):
        parts.append((_rect(u - 0.012, u + 0.012, -0.46, 0.46), "dark"))
    parts.append((_rect(0.44, 0.5, -0.5, 0.5), "accent"))  # door end
    return parts


def _van_parts(variant: int) -> List[Part]:
    """The vehicle's body outline; a narrow front windscreen and cross seams on a box roof instead."""
    body = _vehicle_parts(0)[0][0]
    parts: List[Part] = [(body, "body"), (np.array([[0.34, -0.4], [0.44, -0.34], [0.44, 0.34], [0.34, 0.4]]), "dark")]
    for u in (-0.3, -0.05, 0.2)[: 2 + variant % 2]:
        parts.append((_rect(u - 0.02, u + 0.02, -0.44, 0.44), "dark"))
    return parts


def _tanker_parts(variant: int) -> List[Part]:
    """The ship's hull and deck; a row of round domes on the deck instead of rectangular hatches."""
    hull, deck = _ship_parts(0)[0][0], _ship_parts(0)[1][0]
    parts: List[Part] = [(hull, "body"), (deck, "accent"), (_rect(-0.4, -0.22, -0.26, 0.26), "body")]
    n_domes = 2 + variant % 3
    for i in range(n_domes):
        u = -0.1 + (i + 0.5) * (0.34 / n_domes)
        parts.append((_CIRCLE * np.array([0.22 / n_domes * 2, 0.5]) + (u, 0.0), "body"))
    return parts


_PART_BUILDERS = (_plane_parts, _ship_parts, _vehicle_parts, _tank_parts, _container_parts, _van_parts, _tanker_parts)


def class_parts(class_id: int, variant: int = 0) -> List[Part]:
    """The unit-box polygons of a class (with a pattern variant) and their colour roles."""
    return [(np.asarray(poly, np.float64), role) for poly, role in _PART_BUILDERS[class_id](variant)]


def fill_polygon(img: np.ndarray, pts: np.ndarray, colour: Sequence[float]) -> None:
    """Fill an image-pixel polygon at subpixel precision (in place)."""
    fixed = np.round(pts * (1 << _SUBPIXEL_SHIFT)).astype(np.int32)
    cv2.fillPoly(img, [fixed], tuple(float(c) for c in colour), cv2.LINE_AA, _SUBPIXEL_SHIFT)


def draw_shadow(mask: np.ndarray, spec: ObjectSpec, offset: Tuple[float, float]) -> None:
    """Add the cast shadow of ``spec`` (its body parts shifted by ``offset`` px) to a float mask."""
    for poly, role in class_parts(spec.class_id, spec.variant):
        if role == "body":
            fill_polygon(mask, to_image(spec, poly) + np.asarray(offset), (1.0,))


def draw_object(img: np.ndarray, spec: ObjectSpec) -> None:
    """Draw ``spec`` onto a float32 BGR image in place."""
    colours = {"body": spec.body, "accent": spec.accent, "dark": tuple(0.35 * c for c in spec.body)}
    for poly, role in class_parts(spec.class_id, spec.variant):
        fill_polygon(img, to_image(spec, poly), colours[role])


def sample_object(rng: np.random.Generator, class_id: int, imgsz: int, ground: np.ndarray,
                  scale: float = 1.0) -> ObjectSpec:
    """Draw a random pose and appearance for ``class_id`` (centre at 0, 0; callers place it)."""
    (lmin, lmax), (amin, amax) = CLASS_GEOMETRY[HARD_CLASS_NAMES[class_id]]
    length = float(rng.uniform(lmin, lmax)) * imgsz * scale
    width = length * float(rng.uniform(amin, amax))
    body = contrasting_colour(rng, ground)
    # The accent contrasts with the body so markings stay visible whatever the body colour is.
    accent = np.clip(255.0 - body + rng.uniform(-40, 40, 3), 0, 255)
    return ObjectSpec(class_id, 0.0, 0.0, length, width, float(rng.uniform(0, 2 * np.pi)),
                      tuple(float(c) for c in body), tuple(float(c) for c in accent),
                      int(rng.integers(0, 8)))


def place(spec: ObjectSpec, cx: float, cy: float) -> ObjectSpec:
    """A copy of ``spec`` centred at (cx, cy)."""
    return replace(spec, cx=cx, cy=cy)


def outline_points(spec: ObjectSpec) -> np.ndarray:
    """(K, 2) image-pixel vertices of every drawn part: their bounds are the object's tight box."""
    return np.concatenate([to_image(spec, poly) for poly, _ in class_parts(spec.class_id, spec.variant)])
