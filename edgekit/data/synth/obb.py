"""Synthetic aerial OBB dataset writer: the YOLO-OBB layout plus data.yaml, deterministic per seed.

Layout (the shared convention every stage reads)::

    ROOT/data.yaml                  path: <absolute ROOT>, train/val image dirs, names
    ROOT/images/{train,val}/*.jpg
    ROOT/labels/{train,val}/*.txt   "cls x1 y1 x2 y2 x3 y3 x4 y4", normalised to [0, 1]

Each image gets its own generator seeded by (seed, split, index), so any image can be re-rendered
alone and changing ``n_train`` never changes the validation images. Objects are always placed
fully inside the image, so no label is clipped.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np
from tqdm import tqdm

from ...core.errors import ConfigError, DataError
from ...core.outdir import prepare_output, staged_output
from ..layout import DatasetLayout
from .difficulty import DIFFICULTIES, class_names, render_difficulty_scene
from .scene import render_large_obb_scene
from .shapes import ObjectSpec
from .workers import exit_with_parent

SPLITS = ("train", "val")
_JPEG_QUALITY = 92
MIN_IMGSZ = 64
MIN_FRAME_SIZE = 256  # large frames: smaller ones are normal scenes (use imgsz)
WRITER = "data synth obb"  # the output marker's writer (edgekit.core.outdir)


def obb_label_lines(objects: Sequence[ObjectSpec], imgsz: int) -> List[str]:
    """YOLO-OBB label lines for ``objects`` on a square ``imgsz`` image."""
    lines = []
    for spec in objects:
        corners = np.clip(spec.corners() / float(imgsz), 0.0, 1.0)
        coords = " ".join(f"{v:.6f}" for v in corners.reshape(-1))
        lines.append(f"{spec.class_id} {coords}")
    return lines


def _check_args(n_train: int, n_val: int, imgsz: int, frame_size: Optional[int] = None,
                difficulty: str = "standard") -> None:
    if difficulty not in DIFFICULTIES:
        raise ConfigError(f"difficulty={difficulty!r} is not a synthetic difficulty", f"pass one of {', '.join(DIFFICULTIES)}")
    if frame_size is not None and difficulty != "standard":
        raise ConfigError(f"frame_size with difficulty={difficulty}: large frames have their own object sizes",
                          "leave out frame_size, or use difficulty standard")
    if frame_size is not None and frame_size < MIN_FRAME_SIZE:
        raise ConfigError(f"frame_size={frame_size} is too small for a large-frame scene",
                          f"pass frame_size >= {MIN_FRAME_SIZE} (or leave it out for normal scenes)")
    if n_train < 1 or n_val < 1:
        raise ConfigError(f"n_train={n_train}, n_val={n_val}: both splits need images", "pass n_train >= 1 and n_val >= 1")
    if imgsz < MIN_IMGSZ:
        raise ConfigError(f"imgsz={imgsz} is too small for the synthetic scenes", f"pass imgsz >= {MIN_IMGSZ}")


def _write_image(root: Path, seed: int, imgsz: int, frame_size: Optional[int], difficulty: str, side: int,
                 scene_side: Optional[int], task: Tuple[int, str, int]) -> Optional[str]:
    """Render and write one image and its label; the image's file name if it could not be written."""
    split_index, split, i = task
    rng = np.random.default_rng([seed, split_index, i])
    if frame_size:
        scene = render_large_obb_scene(rng, frame_size)
    else:
        scene = render_difficulty_scene(rng, imgsz, difficulty, scene_side)
    stem = f"{split}_{i:06d}"
    if not cv2.imwrite(str(root / "images" / split / f"{stem}.jpg"), scene.image,
                       [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY]):
        return f"{stem}.jpg"
    lines = obb_label_lines(scene.objects, side)
    (root / "labels" / split / f"{stem}.txt").write_text("\n".join(lines) + ("\n" if lines else ""), encoding="utf-8")
    return None


@contextmanager
def _pool(workers: int) -> Iterator[Optional[ProcessPoolExecutor]]:
    """A process pool of ``workers`` processes, or None (render in this process) for 0."""
    if workers <= 0:
        yield None
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=exit_with_parent, initargs=(os.getpid(),)) as pool:
        yield pool


def generate_obb_dataset(out: Union[str, Path], n_train: int = 200, n_val: int = 50, imgsz: int = 320,
                         seed: int = 0, *, progress: bool = True, frame_size: Optional[int] = None,
                         difficulty: str = "standard", workers: int = 0, scene_side: Optional[int] = None) -> Path:
    """Render a synthetic aerial OBB dataset into ``out`` and return its root.

    The tree is staged next to ``out`` and renamed into place when complete (an earlier dataset of
    this command at ``out`` is replaced; any other non-empty directory is refused with a
    :class:`DataError`, see :mod:`edgekit.core.outdir`), so an interrupted run leaves no half dataset.

    ``frame_size`` renders large ``frame_size`` square frames with many small objects instead
    (:func:`~edgekit.data.synth.scene.render_large_obb_scene`; ``imgsz`` is then unused): the data
    ``edgekit data tile`` and sliced inference are for.

    ``workers`` > 0 renders in that many processes (the output is the same: every image has its own
    seed). ``difficulty`` (:mod:`~edgekit.data.synth.difficulty`): ``standard`` (default) is the original
    scene, byte for byte; ``easy`` fewer, larger, cleaner objects; ``hard`` small dense objects, two
    look-alike classes (so data.yaml names seven classes), decoys, occlusion, blur and uneven light.
    ``scene_side`` (easy/hard only) draws each image as a crop of a scene of that side (object pixel
    sizes of that scene at a smaller ``imgsz``; benchmarks use it for cheap calibration runs).

    >>> root = generate_obb_dataset("/tmp/synth_obb", n_train=8, n_val=2, imgsz=128, progress=False)
    >>> sorted(p.name for p in root.iterdir())
    ['data.yaml', 'images', 'labels']
    """
    _check_args(n_train, n_val, imgsz, frame_size, difficulty)
    if scene_side is not None and difficulty == "standard":
        raise ConfigError("scene_side with difficulty=standard: standard scenes are drawn at imgsz",
                          "leave out scene_side, or use difficulty easy or hard")
    side = frame_size or imgsz
    final_root = prepare_output(out, WRITER)
    counts = {"train": n_train, "val": n_val}
    tasks = [(split_index, split, i) for split_index, split in enumerate(SPLITS) for i in range(counts[split])]
    with staged_output(final_root, WRITER) as tmp, tqdm(total=n_train + n_val, desc="synth obb", unit="img",
                                                disable=not progress) as bar:
        for split in SPLITS:
            (tmp / "images" / split).mkdir(parents=True)
            (tmp / "labels" / split).mkdir(parents=True)
        job = partial(_write_image, tmp, seed, imgsz, frame_size, difficulty, side, scene_side)
        with _pool(workers) as pool:
            for failed in (pool.map(job, tasks, chunksize=8) if pool else map(job, tasks)):
                if failed:
                    raise DataError(f"could not write {failed} of --out {final_root} (disk full or not writable?)",
                                    "free some space or pass another directory")
                bar.update(1)
        # data.yaml names the FINAL root while the tree is still under its temporary name.
        DatasetLayout(final_root, dict(enumerate(class_names(difficulty)))).write_data_yaml(tmp)
    return final_root
