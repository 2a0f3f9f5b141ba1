"""Reading images and videos for checks and converters (OpenCV, imported on first use)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple

from edgekit.core.errors import DataError


def _cv2():
    import cv2  # lazy: keeps `import edgekit.data` light

    return cv2


def read_image_size(path: Path) -> Optional[Tuple[int, int]]:
    """``(width, height)`` of a decodable image, or None when it is missing or cannot be decoded.

    The whole image is decoded on purpose: a check must catch truncated files, not just bad headers.
    """
    path = Path(path)
    if not path.is_file():
        return None
    image = _cv2().imread(str(path), _cv2().IMREAD_UNCHANGED)
    if image is None or image.size == 0:
        return None
    return int(image.shape[1]), int(image.shape[0])


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` of an image; :class:`DataError` naming the file when it is missing or unreadable."""
    size = read_image_size(path)
    if size is None:
        what = "cannot be decoded" if Path(path).is_file() else "does not exist"
        raise DataError(f"image {path} {what}", "replace the file or remove its labels")
    return size


@dataclass(frozen=True)
class VideoInfo:
    frame_count: int
    width: int
    height: int
    fps: float


def read_video_info(path: Path) -> Optional[VideoInfo]:
    """Frame count and size as OpenCV reports them, or None when the video cannot be opened or read."""
    path = Path(path)
    if not path.is_file():
        return None
    cv2 = _cv2()
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return None
        ok, frame = capture.read()  # a container OpenCV opens may still hold no decodable frame
        if not ok or frame is None:
            return None
        frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        return VideoInfo(frames, int(frame.shape[1]), int(frame.shape[0]), float(capture.get(cv2.CAP_PROP_FPS)))
    finally:
        capture.release()


__all__ = ["read_image_size", "image_size", "VideoInfo", "read_video_info"]
