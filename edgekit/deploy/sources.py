"""Frame sources for the pipelined runtime: a video file or a folder of images, as BGR uint8 frames.

Both yield every frame in order (a file is never paced or dropped); live sources (RTSP, V4L2,
CSI) belong to the daemon. Opening checks the source first, so a wrong path is one clear line
before any model is loaded, and a file OpenCV cannot decode is named.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator, List, Optional, Union

import numpy as np

from edgekit.core.errors import DataError
from edgekit.core.image_files import imread

PathLike = Union[str, "os.PathLike[str]"]
# What OpenCV's imread decodes on every platform edgekit runs on (the same list datasets use).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def list_image_files(folder: PathLike) -> List[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"image folder {root} does not exist", "pass a folder of .jpg/.png images")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"image folder {root} holds no images ({', '.join(IMAGE_SUFFIXES)})",
                        "pass a folder that holds images")
    return files


def image_frames(folder: PathLike, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """Every image of ``folder`` (sorted by name) as it loads (EXIF-rotated, like OpenCV's imread)."""
    for i, path in enumerate(list_image_files(folder)):
        if limit is not None and i >= limit:
            return
        frame = imread(path)
        if frame is None:
            raise DataError(f"cannot decode image {path}", "remove or replace the file")
        yield frame


def video_frames(path: PathLike, limit: Optional[int] = None) -> Iterator[np.ndarray]:
    """Every frame of the video file at ``path``, in order."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"video {path} does not exist", "pass an existing video file (e.g. .mp4)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise DataError(f"OpenCV cannot open video {path}", "re-encode it as H.264/MPEG-4 .mp4")
        n = 0
        while limit is None or n < limit:
            ok, frame = cap.read()
            if not ok:
                break
            n += 1
            yield frame
        if n == 0:
            raise DataError(f"video {path} has no decodable frames", "re-encode it as H.264/MPEG-4 .mp4")
    finally:
        cap.release()


def repeat_frames(frame: np.ndarray, n: int) -> Iterator[np.ndarray]:
    """The same frame ``n`` times (timing runs that must not measure decoding)."""
    for _ in range(n):
        yield frame


__all__ = ["IMAGE_SUFFIXES", "list_image_files", "image_frames", "video_frames", "repeat_frames"]
