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
    """``(width, height)`` of a decodable image as training loads it, or None when it is missing or
    cannot be decoded.

    The size is the *as-loaded* one: ``IMREAD_COLOR`` applies the EXIF Orientation tag (a tag of 5-8
    swaps width and height) exactly as Ultralytics' loader (``cv2.imdecode(..., IMREAD_COLOR)``) does,
    so labels normalised by this size land where training sees the pixels. ``IMREAD_COLOR`` also turns
    16-bit, grayscale and 4-channel images into the 8-bit BGR that training gets. The whole image is
    decoded on purpose: a check must catch truncated files, not just bad headers.
    """
    path = Path(path)
    if not path.is_file():
        return None
    cv2 = _cv2()
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    except cv2.error:  # some decoders raise instead of returning None (e.g. an absurd header size)
        return None
    if image is None or image.size == 0:
        return None
    return int(image.shape[1]), int(image.shape[0])


def raw_image_size(path: Path) -> Optional[Tuple[int, int]]:
    """``(width, height)`` as stored, before any EXIF rotation (None when it cannot be decoded).

    Only used to explain a size mismatch ("the EXIF tag rotates it"); never to normalise labels.
    """
    cv2 = _cv2()
    try:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    except cv2.error:
        return None
    return None if image is None or image.size == 0 else (int(image.shape[1]), int(image.shape[0]))


def describe_size_mismatch(path: Path, claimed: Tuple[int, int], loaded: Tuple[int, int]) -> str:
    """Why ``claimed`` (e.g. a COCO json's width x height) differs from the as-loaded size of ``path``."""
    text = f"{claimed[0]}x{claimed[1]}, but {Path(path).name} loads as {loaded[0]}x{loaded[1]}"
    raw = raw_image_size(path) if claimed != loaded else None
    if raw is not None and raw != loaded and raw == tuple(claimed):
        text += " (its EXIF Orientation tag rotates it; OpenCV and Ultralytics load the rotated image)"
    return text


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


__all__ = ["read_image_size", "raw_image_size", "describe_size_mismatch", "image_size", "VideoInfo", "read_video_info"]
