"""Procedural textures for synthetic aerial imagery: fractal noise, terrain maps, sensor noise.

Everything is vectorised numpy/OpenCV (noise grids upsampled with ``cv2.resize``) so a 320 px
scene costs a few milliseconds. All randomness comes from the ``numpy.random.Generator`` passed in,
so a seed fixes every pixel.
"""

from __future__ import annotations

import cv2
import numpy as np

# Palettes (BGR, 0-255) for the ground cover an aerial camera sees; one is mixed per scene so
# backgrounds differ in hue as well as in pattern.
TERRAIN_PALETTES = (
    ((60, 110, 90), (80, 140, 120), (70, 100, 130)),  # grass / meadow
    ((90, 140, 170), (110, 160, 190), (80, 120, 150)),  # dry soil / desert
    ((100, 100, 100), (130, 125, 120), (85, 90, 95)),  # urban concrete
    ((70, 90, 60), (50, 80, 70), (90, 120, 100)),  # forest edge
    ((120, 110, 95), (95, 105, 110), (140, 135, 125)),  # port / apron tarmac
)


def fractal_noise(rng: np.random.Generator, h: int, w: int, octaves: int = 4, base: int = 3) -> np.ndarray:
    """Return (h, w) float32 value noise in [0, 1]: random grids of growing resolution, upsampled.

    Hand-written because it is four ``cv2.resize`` calls; noise libraries (e.g. ``noise``) are
    per-pixel Python loops and far slower.
    """
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for octave in range(octaves):
        cells = base * (2**octave)
        grid = rng.random((cells + 1, cells + 1), dtype=np.float32)
        out += amp * cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)
        total += amp
        amp *= 0.5
    out /= total
    lo, hi = float(out.min()), float(out.max())
    return (out - lo) / max(hi - lo, 1e-6)


def _field_patches(rng: np.random.Generator, h: int, w: int, n_colours: int) -> np.ndarray:
    """Return an (h, w) int map of rotated rectangular field patches (farmland / lots)."""
    cells = int(rng.integers(2, 6))
    grid = rng.integers(0, n_colours, (cells, cells)).astype(np.uint8)
    big = max(h, w) * 2
    patches = cv2.resize(grid, (big, big), interpolation=cv2.INTER_NEAREST)
    angle = float(rng.uniform(0, 180))
    rot = cv2.getRotationMatrix2D((big / 2, big / 2), angle, 1.0)
    rot[:, 2] -= ((big - w) / 2, (big - h) / 2)
    return cv2.warpAffine(patches, rot, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_REFLECT)


def _draw_roads(rng: np.random.Generator, img: np.ndarray, n_roads: int) -> None:
    h, w = img.shape[:2]
    for _ in range(n_roads):
        shade = float(rng.uniform(55, 110))
        width = max(2, int(rng.uniform(0.02, 0.05) * min(h, w)))
        p0 = (int(rng.uniform(-0.2, 1.2) * w), int(rng.uniform(-0.2, 0) * h))
        p1 = (int(rng.uniform(-0.2, 1.2) * w), int(rng.uniform(1, 1.2) * h))
        if rng.random() < 0.5:  # horizontal-ish instead of vertical-ish
            p0, p1 = (p0[1], p0[0]), (p1[1], p1[0])
        cv2.line(img, p0, p1, (shade, shade, shade + 5), width, cv2.LINE_AA)
        if rng.random() < 0.6:  # lane marking
            cv2.line(img, p0, p1, (200, 200, 200), max(1, width // 8), cv2.LINE_AA)


def terrain_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Return an (h, w, 3) float32 BGR aerial ground texture: terrain noise, fields and roads."""
    palette = np.asarray(TERRAIN_PALETTES[int(rng.integers(len(TERRAIN_PALETTES)))], np.float32)
    palette = np.clip(palette + rng.uniform(-25, 25, (1, 3)).astype(np.float32), 0, 255)
    mix = fractal_noise(rng, h, w, octaves=3, base=2)[..., None]
    img = palette[0] * (1 - mix) + palette[1] * mix
    if rng.random() < 0.6:
        fields = _field_patches(rng, h, w, len(palette))
        field_img = palette[fields]
        blend = float(rng.uniform(0.3, 0.7))
        img = img * (1 - blend) + field_img * blend
    detail = fractal_noise(rng, h, w, octaves=4, base=int(rng.integers(6, 14)))
    img = img * (0.8 + 0.4 * detail[..., None])
    _draw_roads(rng, img, int(rng.integers(0, 3)))
    return np.clip(img, 0, 255).astype(np.float32)


def plain_background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Return a low-texture (h, w, 3) float32 backdrop, like a ground-level photo of one object."""
    base = rng.uniform(120, 230, 3).astype(np.float32)
    shade = fractal_noise(rng, h, w, octaves=2, base=2)[..., None]
    return np.clip(base * (0.85 + 0.25 * shade), 0, 255).astype(np.float32)


def apply_sensor_effects(rng: np.random.Generator, img: np.ndarray, strength: float = 1.0) -> np.ndarray:
    """Blur, lighting change and Gaussian noise on a float32 image; returns uint8 BGR."""
    if rng.random() < 0.35 * strength:
        k = int(rng.choice([3, 5]))
        img = cv2.GaussianBlur(img, (k, k), 0)
    gain = float(rng.uniform(0.85, 1.15)) if strength else 1.0
    bias = float(rng.uniform(-15, 15)) * strength
    sigma = float(rng.uniform(1.0, 6.0)) * strength
    noise = rng.standard_normal(img.shape[:2], dtype=np.float32)[..., None] * sigma
    return np.clip(img * gain + bias + noise, 0, 255).astype(np.uint8)


def contrasting_colour(rng: np.random.Generator, ground: np.ndarray, min_gap: float = 70.0) -> np.ndarray:
    """Return a random BGR colour whose brightness differs from ``ground`` by at least ``min_gap``."""
    colour = rng.uniform(20, 235, 3).astype(np.float32)
    gap = float(colour.mean() - np.mean(ground))
    if abs(gap) < min_gap:
        direction = 1.0 if (gap > 0 or np.mean(ground) < 110) else -1.0
        colour = colour + direction * (min_gap - abs(gap)) + direction * 10
    return np.clip(colour, 0, 255)

