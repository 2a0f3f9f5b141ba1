"""What bench feeds the detector: a video, a folder of images, or synthetic frames.

Sources are reopened when a run needs more frames than they hold, so ``--iterations`` is never
capped by the clip length and reading (decoding) stays part of every end-to-end sample. The
synthetic default is a few deterministic aerial-looking frames (rotated rectangles on a textured
ground) of the bundle's input size, made once and cycled, so reading costs nothing and the
numbers are the model's; the same frames drive ``benchmarks/vs_ultralytics.py``.
"""

from __future__ import annotations

import itertools
import os
from pathlib import Path
from typing import Callable, Iterator, List, Optional, Tuple, Union

import numpy as np

from edgekit.core.errors import ConfigError

PathLike = Union[str, "os.PathLike[str]"]
FrameFactory = Callable[[], Iterator[np.ndarray]]


def synthetic_frames(n: int, height: int, width: int, seed: int = 0) -> List[np.ndarray]:
    """``n`` BGR uint8 frames: noisy ground plus a dozen filled rotated rectangles each."""
    import cv2

    rng = np.random.default_rng(seed)
    frames = []
    for _ in range(n):
        frame = rng.integers(60, 140, size=(height, width, 3), dtype=np.uint8)
        for _ in range(12):
            cx, cy = rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.9) * height
            w, h = rng.uniform(0.04, 0.2) * width, rng.uniform(0.02, 0.08) * height
            box = cv2.boxPoints(((cx, cy), (w, h), float(rng.uniform(0, 180)))).astype(np.int32)
            cv2.fillPoly(frame, [box], tuple(int(c) for c in rng.integers(0, 256, 3)))
        frames.append(frame)
    return frames


def frame_source(video: Optional[PathLike], images: Optional[PathLike],
                 size: Tuple[int, int]) -> Tuple[str, Optional[str], FrameFactory]:
    """(kind, path, factory): the factory opens the source afresh each time it is called.

    The source is checked now (a wrong path is one line before any model loads).
    """
    from edgekit.deploy.sources import image_frames, list_image_files, video_frames

    if video is not None and images is not None:
        raise ConfigError("both --video and --images were given", "pass one frame source")
    if video is not None:
        path = Path(video)
        next(iter(video_frames(path, limit=1)))  # opens it: missing/undecodable files fail here
        return "video", str(path), lambda: video_frames(path)
    if images is not None:
        folder = Path(images)
        list_image_files(folder)
        return "images", str(folder), lambda: image_frames(folder)
    frames = synthetic_frames(8, size[0], size[1])
    return "synthetic", None, lambda: iter(frames)


def cycle(factory: FrameFactory, n: Optional[int] = None) -> Iterator[np.ndarray]:
    """Frames from ``factory``, reopened at its end; ``n`` of them (None: endless)."""
    def endless() -> Iterator[np.ndarray]:
        while True:
            empty = True
            for frame in factory():
                empty = False
                yield frame
            if empty:
                return

    return endless() if n is None else itertools.islice(endless(), n)


__all__ = ["synthetic_frames", "frame_source", "cycle", "FrameFactory"]
