"""Which files count as images: one suffix list for datasets, checks, conversion and calibration.

Every reader of these files goes through OpenCV (``cv2.imread``), so the list is what OpenCV's
standard builds decode -- the same formats Ultralytics trains on that OpenCV reads itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Union

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Union[str, Path]) -> bool:
    """True when the name ends in one of :data:`IMAGE_SUFFIXES` (any case); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def suffix_list() -> str:
    """The suffixes for a message: ``.jpg/.jpeg/.png/...``."""
    return "/".join(IMAGE_SUFFIXES)


def imread(path: Union[str, Path], flags: Optional[int] = None) -> Any:
    """``cv2.imread`` (default ``IMREAD_COLOR``) that returns None for every file it cannot decode.

    OpenCV 4 returns None for an image whose header claims more than ``CV_IO_MAX_IMAGE_PIXELS``;
    OpenCV 5 raises ``cv2.error`` instead, which would reach the user as a traceback. Callers keep
    their own one-line "cannot be decoded" message for None.
    """
    import cv2  # lazy: keeps `import edgekit.core` light

    try:
        return cv2.imread(str(path), cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error:
        return None


def imdecode(data: bytes, flags: Optional[int] = None) -> Any:
    """``cv2.imdecode`` of ``data`` (default ``IMREAD_COLOR``); None where OpenCV cannot or will not decode it."""
    import cv2
    import numpy as np

    if not data:
        return None
    try:
        return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if flags is None else flags)
    except cv2.error:
        return None


__all__ = ["IMAGE_SUFFIXES", "imdecode", "imread", "is_image_file", "suffix_list"]
