"""Which files count as images: one suffix list for datasets, checks, conversion and calibration.

Every reader of these files goes through OpenCV (``cv2.imread``), so the list is what OpenCV's
standard builds decode -- the same formats Ultralytics trains on that OpenCV reads itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def is_image_file(path: Union[str, Path]) -> bool:
    """True when the name ends in one of :data:`IMAGE_SUFFIXES` (any case); the file is not opened."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def suffix_list() -> str:
    """The suffixes for a message: ``.jpg/.jpeg/.png/...``."""
    return "/".join(IMAGE_SUFFIXES)


__all__ = ["IMAGE_SUFFIXES", "is_image_file", "suffix_list"]
