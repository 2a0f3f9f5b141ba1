"""Synthetic RefDet dataset: drone videos over a textured map, one target each, three reference photos.

Layout (the shared RefDet convention), for each of ``train`` and ``test``::

    ROOT/<split>/samples/<video_id>/drone_video.mp4
    ROOT/<split>/samples/<video_id>/object_images/img_{1,2,3}.jpg
    ROOT/<split>/annotations/annotations.json
        [{"video_id": str, "annotations": [{"bboxes": [{"frame": int, "x1", "y1", "x2", "y2": int}]}]}]

Every video has its own target identity (shape family, colours, marking pattern), drawn from a
generator seeded by (seed, split, index), so test targets never occur in training. A camera pans, zooms and
turns over a map 4x the frame size, flying past the target, so the target enters, leaves and may
be hidden by a drifting cloud; only frames where it is visible are annotated, with the
axis-aligned box of its drawn outline. Distractors share the target's shape family but not its
colours or pattern. References show the target alone on a plain ground-level-like backdrop, at
another angle, scale, perspective and lighting.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from ...core.atomic import write_json_atomic
from ...core.errors import ConfigError, DataError
from ...core.outdir import prepare_output, staged_output
from .scene import draw_clutter, draw_objects_with_shadows, fits
from .shapes import OBB_CLASS_NAMES, ObjectSpec, draw_object, outline_points, place, sample_object
from .textures import (
    apply_sensor_effects,
    contrasting_colour,
    fractal_noise,
    plain_background,
    terrain_background,
)
from .workers import exit_with_parent

SPLITS = ("train", "test")
WRITER = "data synth refdet"  # the output marker's writer (edgekit.core.outdir)
MAP_SCALE = 4  # map side / frame side
N_REFERENCES = 3
MIN_VISIBLE_FRACTION = 0.6  # of the target's box inside the frame and not under cloud
_JPEG = [cv2.IMWRITE_JPEG_QUALITY, 92]


@dataclass
class Flight:
    """A camera path over the map: per-frame centre (map px), zoom and heading (rad)."""

    centres: np.ndarray  # (F, 2)
    zooms: np.ndarray  # (F,)
    headings: np.ndarray  # (F,)

    def map_to_frame(self, t: int, pts: np.ndarray, imgsz: int) -> np.ndarray:
        c, s = np.cos(self.headings[t]), np.sin(self.headings[t])
        rel = pts - self.centres[t]
        rotated = np.stack([rel[:, 0] * c + rel[:, 1] * s, -rel[:, 0] * s + rel[:, 1] * c], 1)
        return rotated * self.zooms[t] + imgsz / 2.0

    def frame_to_map_matrix(self, t: int, imgsz: int) -> np.ndarray:
        """2x3 affine for ``cv2.warpAffine(..., WARP_INVERSE_MAP)``: frame pixel -> map pixel."""
        c, s = np.cos(self.headings[t]), np.sin(self.headings[t])
        lin = np.array([[c, -s], [s, c]]) / self.zooms[t]
        return np.hstack([lin, (self.centres[t] - lin @ np.full(2, imgsz / 2.0))[:, None]])


def _fly_past(rng: np.random.Generator, target_xy: np.ndarray, frames: int, imgsz: int) -> Flight:
    """A path that starts and ends about a frame away from the target and passes over it."""
    direction = rng.normal(size=2)
    direction /= np.linalg.norm(direction)
    perp = np.array([-direction[1], direction[0]])
    start = target_xy + direction * imgsz * rng.uniform(0.7, 1.1) + perp * imgsz * rng.uniform(-0.15, 0.15)
    end = target_xy - direction * imgsz * rng.uniform(0.7, 1.1) + perp * imgsz * rng.uniform(-0.15, 0.15)
    s = np.linspace(0.0, 1.0, frames)[:, None]
    wobble = np.sin(2 * np.pi * s * rng.uniform(0.5, 1.5)) * imgsz * rng.uniform(0.0, 0.12)
    centres = start + (end - start) * s + perp * wobble
    zooms = np.linspace(*rng.uniform(0.8, 1.25, 2), frames)
    heading0 = rng.uniform(0, 2 * np.pi)
    headings = heading0 + np.linspace(0.0, rng.uniform(-0.6, 0.6), frames)
    return Flight(centres, zooms, headings)


def _cloud_alpha(centre: np.ndarray, radius: float, texture: np.ndarray) -> np.ndarray:
    """(H, W) opacity of a ragged cloud centred at ``centre`` (frame px)."""
    h, w = texture.shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dist = np.hypot(xx - centre[0], yy - centre[1]) / radius
    return np.clip(1.8 * (1 - dist) + 0.8 * (texture - 0.5), 0.0, 0.95)


def _plan_cloud(rng: np.random.Generator, boxes: List[Optional[Dict[str, int]]], imgsz: int
                ) -> Optional[Tuple[np.ndarray, np.ndarray, float]]:
    """A cloud that drifts over the target mid-way through its visible stretch, or None (clear sky).

    Returns per-frame cloud centres (F, 2), its noise texture and its radius. Timing it on the target
    makes "visible, hidden, visible again" happen instead of hoping a random cloud meets it.
    """
    visible = [t for t, box in enumerate(boxes) if box is not None]
    if len(visible) < 6 or rng.random() < 0.4:
        return None
    t_c = visible[len(visible) // 2]
    box = boxes[t_c]
    meet = np.array([(box["x1"] + box["x2"]) / 2.0, (box["y1"] + box["y2"]) / 2.0])
    heading = rng.uniform(0, 2 * np.pi)
    speed = imgsz * rng.uniform(1.5, 2.5) / len(boxes)  # crosses the frame in about half the video
    steps = np.arange(len(boxes)) - t_c
    centres = meet + np.outer(steps, [np.cos(heading), np.sin(heading)]) * speed
    texture = fractal_noise(rng, imgsz, imgsz, octaves=3, base=4)
    return centres, texture, imgsz * float(rng.uniform(0.2, 0.3))


def _target_box(flight: Flight, t: int, outline: np.ndarray, imgsz: int) -> Optional[Dict[str, int]]:
    """The target's clipped axis-aligned box in frame ``t``, or None where it is not visible."""
    pts = flight.map_to_frame(t, outline, imgsz)
    x1, y1 = pts.min(0)
    x2, y2 = pts.max(0)
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, imgsz - 1.0), min(y2, imgsz - 1.0)
    full, inside = (x2 - x1) * (y2 - y1), max(cx2 - cx1, 0.0) * max(cy2 - cy1, 0.0)
    if full <= 0 or inside < MIN_VISIBLE_FRACTION * full or min(cx2 - cx1, cy2 - cy1) < 4:
        return None
    return {"frame": t, "x1": int(np.floor(cx1)), "y1": int(np.floor(cy1)),
            "x2": int(np.ceil(cx2)), "y2": int(np.ceil(cy2))}


def _hidden_by(cloud: np.ndarray, box: Dict[str, int]) -> bool:
    return float(cloud[box["y1"]:box["y2"], box["x1"]:box["x2"]].mean()) > 1 - MIN_VISIBLE_FRACTION


def _sample_target(rng: np.random.Generator, ground: np.ndarray, centre: np.ndarray, imgsz: int) -> ObjectSpec:
    class_id = int(rng.integers(len(OBB_CLASS_NAMES)))
    local = ground[int(centre[1]), int(centre[0])]
    return place(sample_object(rng, class_id, imgsz, local), float(centre[0]), float(centre[1]))


def _distractor_of(rng: np.random.Generator, target: ObjectSpec, ground: np.ndarray, imgsz: int) -> ObjectSpec:
    """Same shape family as the target; another body colour (far from the target's) and pattern."""
    spec = sample_object(rng, target.class_id, imgsz, ground[0, 0])
    body = np.asarray(spec.body)
    while np.linalg.norm(body - np.asarray(target.body)) < 90:
        body = contrasting_colour(rng, ground[0, 0], min_gap=0.0)
    variant = (target.variant + int(rng.integers(1, 8))) % 8
    return replace(spec, body=tuple(float(c) for c in body), variant=variant)


def _populate_map(rng: np.random.Generator, ground: np.ndarray, target: ObjectSpec, flight: Flight,
                  imgsz: int) -> List[ObjectSpec]:
    """Distractors and other-class objects placed near the flight path, clear of each other."""
    candidates = [_distractor_of(rng, target, ground, imgsz) for _ in range(int(rng.integers(2, 5)))]
    others = rng.integers(0, len(OBB_CLASS_NAMES), int(rng.integers(3, 8)))
    candidates += [sample_object(rng, int(c), imgsz, ground[0, 0]) for c in others]
    placed = [target]
    h, w = ground.shape[:2]
    for spec in candidates:
        for _ in range(30):
            t = int(rng.integers(len(flight.centres)))
            cx, cy = flight.centres[t] + rng.uniform(-0.45, 0.45, 2) * imgsz
            candidate = place(spec, float(cx), float(cy))
            if fits(candidate, placed, w, h):
                placed.append(candidate)
                break
    return placed


def _render_video_frames(rng: np.random.Generator, frames: int, imgsz: int
                         ) -> Tuple[List[np.ndarray], List[Dict[str, int]], ObjectSpec]:
    """Frames (uint8 BGR), the target's boxes in the frames where it is visible, the target spec."""
    side = MAP_SCALE * imgsz
    ground = terrain_background(rng, side, side)
    draw_clutter(rng, ground, int(rng.integers(25, 50)), side=imgsz)
    target = _sample_target(rng, ground, np.full(2, side / 2.0) + rng.uniform(-0.2, 0.2, 2) * imgsz, imgsz)
    flight = _fly_past(rng, np.array([target.cx, target.cy]), frames, imgsz)
    objects = _populate_map(rng, ground, target, flight, imgsz)
    draw_objects_with_shadows(rng, ground, objects, side=imgsz)
    world = np.clip(ground, 0, 255).astype(np.uint8)
    outline = outline_points(target)
    boxes = [_target_box(flight, t, outline, imgsz) for t in range(frames)]
    cloud_plan = _plan_cloud(rng, boxes, imgsz)
    gain = float(rng.uniform(0.85, 1.15))
    images = []
    for t in range(frames):
        frame = cv2.warpAffine(world, flight.frame_to_map_matrix(t, imgsz), (imgsz, imgsz),
                               flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
        frame = frame.astype(np.float32) * gain
        if cloud_plan is not None:
            centres, texture, radius = cloud_plan
            cloud = _cloud_alpha(centres[t], radius, texture)
            frame = frame * (1 - cloud[..., None]) + 235.0 * cloud[..., None]
            if boxes[t] is not None and _hidden_by(cloud, boxes[t]):
                boxes[t] = None
        images.append(apply_sensor_effects(rng, frame, strength=0.5))
    return images, [box for box in boxes if box is not None], target


def render_references(rng: np.random.Generator, target: ObjectSpec, size: int) -> List[np.ndarray]:
    """Three ground-level-like photos of ``target``: new angle, scale, perspective and lighting."""
    refs = []
    for _ in range(N_REFERENCES):
        canvas = plain_background(rng, size, size)
        scale = size * rng.uniform(0.55, 0.8) / (2 * target.radius())
        spec = replace(target, cx=size / 2.0, cy=size / 2.0, length=target.length * scale,
                       width=target.width * scale, angle=float(rng.uniform(0, 2 * np.pi)))
        draw_object(canvas, spec)
        corners = np.float32([[0, 0], [size, 0], [size, size], [0, size]])
        skewed = corners + rng.uniform(-0.08, 0.08, (4, 2)).astype(np.float32) * size
        persp = cv2.getPerspectiveTransform(corners, skewed)
        canvas = cv2.warpPerspective(canvas, persp, (size, size), borderMode=cv2.BORDER_REPLICATE)
        channel_gain = rng.uniform(0.75, 1.25, 3).astype(np.float32)  # colour cast of another camera
        contrast = float(rng.uniform(0.7, 1.3))
        canvas = (canvas - 128.0) * contrast + 128.0 + float(rng.uniform(-30, 30))
        refs.append(apply_sensor_effects(rng, canvas * channel_gain, strength=0.3))
    return refs


def _write_sample(sample_dir: Path, images: List[np.ndarray], refs: List[np.ndarray], fps: int) -> None:
    video = sample_dir / "drone_video.mp4"
    imgsz = images[0].shape[1], images[0].shape[0]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), float(fps), imgsz)
    if not writer.isOpened():
        raise DataError(f"OpenCV cannot write {video} with the 'mp4v' codec",
                        "install an opencv build with FFmpeg (opencv-python-headless wheels have it)")
    for img in images:
        writer.write(img)
    writer.release()
    readable = count_video_frames(video)
    if readable != len(images):
        raise DataError(f"{video}: wrote {len(images)} frames but {readable} read back", "check the OpenCV video backend")
    (sample_dir / "object_images").mkdir()
    for i, ref in enumerate(refs, 1):
        cv2.imwrite(str(sample_dir / "object_images" / f"img_{i}.jpg"), ref, _JPEG)


def count_video_frames(path: Path) -> int:
    """Frames actually decodable from ``path`` (container frame counts can be wrong)."""
    cap = cv2.VideoCapture(str(path))
    n = 0
    while cap.isOpened():
        ok, _ = cap.read()
        if not ok:
            break
        n += 1
    cap.release()
    return n


def _check_args(n_train: int, n_test: int, frames: int, imgsz: int, fps: int) -> None:
    for key, value, low in (("n_train", n_train, 1), ("n_test", n_test, 1), ("frames", frames, 2),
                            ("imgsz", imgsz, 64), ("fps", fps, 1)):
        if value < low:
            raise ConfigError(f"{key}={value} is out of range", f"pass {key} >= {low}")
    if imgsz % 2:
        raise ConfigError(f"imgsz={imgsz} must be even (mp4v frame sizes)", f"pass imgsz={imgsz + 1}")


def _render_sample(job: Tuple[Path, int, int, int, int, int, int]) -> Dict[str, Any]:
    """Render and write video ``k`` of split ``split_index`` under ``tmp``; returns its annotation record.

    One generator per (seed, split, video): a video does not depend on the split sizes nor on which
    process renders it, so ``workers`` never changes the dataset.
    """
    tmp, seed, split_index, k, frames, imgsz, fps = job
    rng = np.random.default_rng([seed, 17, split_index, k])
    images, boxes, target = _render_video_frames(rng, frames, imgsz)
    refs = render_references(rng, target, max(64, imgsz // 2))
    split = SPLITS[split_index]
    video_id = f"{split}_{k:03d}_{OBB_CLASS_NAMES[target.class_id]}"
    sample_dir = Path(tmp) / split / "samples" / video_id
    sample_dir.mkdir(parents=True)
    _write_sample(sample_dir, images, refs, fps)
    return {"video_id": video_id, "annotations": [{"bboxes": boxes}]}


def generate_refdet_dataset(out: Union[str, Path], n_train: int = 6, n_test: int = 2, frames: int = 48,
                            imgsz: int = 320, fps: int = 12, seed: int = 0, *, progress: bool = True,
                            workers: int = 0) -> Path:
    """Render a synthetic RefDet dataset (``out/train``, ``out/test``) and return ``out``.

    Staged next to ``out`` and renamed into place when complete; an earlier dataset of this command
    at ``out`` is replaced, any other non-empty directory is refused (:mod:`edgekit.core.outdir`).
    ``workers > 0`` renders videos in that many processes (same files as ``workers=0``: every video has
    its own seeded generator), for sets of thousands of targets.

    >>> root = generate_refdet_dataset("/tmp/synth_refdet", n_train=1, n_test=1, frames=8, imgsz=128,
    ...                                progress=False)
    >>> len(list((root / "test" / "samples").iterdir()))
    1
    """
    _check_args(n_train, n_test, frames, imgsz, fps)
    if workers < 0:
        raise ConfigError(f"workers={workers} is negative", "pass workers >= 0 (0: render in this process)")
    final_root = prepare_output(out, WRITER)
    counts = {"train": n_train, "test": n_test}
    with staged_output(final_root, WRITER) as tmp, tqdm(total=n_train + n_test, desc="synth refdet", unit="video",
                                                disable=not progress) as bar:
        for split_index, split in enumerate(SPLITS):
            jobs = [(tmp, seed, split_index, k, frames, imgsz, fps) for k in range(counts[split])]
            records = list(_map(jobs, workers, bar))
            write_json_atomic(tmp / split / "annotations" / "annotations.json", records)
    return final_root


def _map(jobs: List[Tuple[Path, int, int, int, int, int, int]], workers: int, bar: tqdm) -> List[Dict[str, Any]]:
    """``_render_sample`` over ``jobs`` in order, in this process or a process pool (stdlib: no extra dependency)."""
    if workers == 0 or len(jobs) < 2:
        out = []
        for job in jobs:
            out.append(_render_sample(job))
            bar.update(1)
        return out
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn, not fork: a parent holding CUDA or OpenCV threads must not be forked mid-state.
    with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=multiprocessing.get_context("spawn"),
                             initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        out = []
        for record in pool.map(_render_sample, jobs, chunksize=max(1, len(jobs) // (8 * workers))):
            out.append(record)
            bar.update(1)
        return out
