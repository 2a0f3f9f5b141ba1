"""The RefDet few-shot video format and its check.

A RefDet root holds ``samples/<video_id>/drone_video.mp4``, ``samples/<video_id>/object_images/
img_{1,2,3}.jpg`` (1-3 reference photos of the target) and ``annotations/annotations.json``: a list of
``{"video_id": str, "annotations": [{"bboxes": [{"frame", "x1", "y1", "x2", "y2"}]}]}`` in absolute
pixels with 0-indexed frames. A few-shot dataset root holds one RefDet root per split (``train/``, ``test/``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import DataError

from .base import (
    ERROR,
    Issue,
    error,
    is_number,
    json_error_issue,
    line_of,
    loads_with_lines,
    record_is_usable,
    warning,
)
from .media import VideoInfo, read_image_size, read_video_info

ANNOTATIONS = Path("annotations") / "annotations.json"
SAMPLES = "samples"
VIDEO_NAME = "drone_video.mp4"
OBJECT_IMAGES = tuple(f"img_{i}.jpg" for i in (1, 2, 3))
_BOX_KEYS = ("frame", "x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class RefDetBox:
    """The target's box in one frame (absolute pixels, frame 0-indexed)."""

    frame: int
    x1: float
    y1: float
    x2: float
    y2: float
    line: int = field(default=0, compare=False)

    def to_json(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"frame": self.frame}
        for key in _BOX_KEYS[1:]:
            value = getattr(self, key)
            out[key] = int(value) if float(value).is_integer() else value
        return out


@dataclass(frozen=True)
class RefDetTrack:
    """One appearance of the target: its boxes over consecutive frames."""

    bboxes: Tuple[RefDetBox, ...] = ()
    line: int = field(default=0, compare=False)


@dataclass(frozen=True)
class RefDetVideo:
    """All annotations of one video."""

    video_id: str
    annotations: Tuple[RefDetTrack, ...] = ()
    line: int = field(default=0, compare=False)

    def to_json(self) -> Dict[str, Any]:
        return {"video_id": self.video_id,
                "annotations": [{"bboxes": [b.to_json() for b in t.bboxes]} for t in self.annotations]}


def video_path(root: Path, video_id: str) -> Path:
    return Path(root) / SAMPLES / video_id / VIDEO_NAME


def object_image_paths(root: Path, video_id: str) -> List[Path]:
    """The reference photos that exist for a video (``img_1..3.jpg``, in order)."""
    folder = Path(root) / SAMPLES / video_id / "object_images"
    return [folder / name for name in OBJECT_IMAGES if (folder / name).is_file()]


def _build_box(entry: Any, path: Path) -> Tuple[Optional[RefDetBox], List[Issue]]:
    line = line_of(entry)
    if not isinstance(entry, dict):
        return None, [error(path, line, "schema", "bbox must be an object {frame, x1, y1, x2, y2}")]
    missing = [k for k in _BOX_KEYS if k not in entry]
    if missing:
        return None, [error(path, line, "field-count", f"bbox is missing {', '.join(missing)}")]
    bad = [k for k in _BOX_KEYS if not is_number(entry[k])]
    if bad:
        return None, [error(path, line, "non-numeric", f"bbox {', '.join(bad)} not a number")]
    frame = entry["frame"]
    if frame != int(frame) or frame < 0:
        return None, [error(path, line, "non-numeric", f"frame must be a non-negative integer, got {frame!r}")]
    box = RefDetBox(int(frame), entry["x1"], entry["y1"], entry["x2"], entry["y2"], line)
    if box.x2 <= box.x1 or box.y2 <= box.y1:
        return box, [error(path, line, "degenerate", f"degenerate bbox: x1 {box.x1:g} x2 {box.x2:g}, y1 {box.y1:g} y2 {box.y2:g}")]
    return box, []


def _build_video(entry: Any, path: Path, issues: List[Issue]) -> Optional[RefDetVideo]:
    line = line_of(entry)
    if not isinstance(entry, dict) or not isinstance(entry.get("video_id"), str) \
            or not isinstance(entry.get("annotations"), list):
        issues.append(error(path, line, "schema", "entry needs a string 'video_id' and a list 'annotations'"))
        return None
    tracks = []
    for track in entry["annotations"]:
        if not isinstance(track, dict) or not isinstance(track.get("bboxes"), list):
            issues.append(error(path, line_of(track, line), "schema", "annotation needs a list 'bboxes'"))
            continue
        boxes = []
        for raw in track["bboxes"]:
            box, found = _build_box(raw, path)
            issues.extend(found)
            if box is not None and record_is_usable(found):
                boxes.append(box)
        tracks.append(RefDetTrack(tuple(boxes), line_of(track)))
    return RefDetVideo(entry["video_id"], tuple(tracks), line)


def build_refdet(data: Any, path: Path) -> Tuple[List[RefDetVideo], List[Issue]]:
    """Records from parsed json (plain, or with line numbers) plus every problem found."""
    path = Path(path)
    if not isinstance(data, list):
        return [], [error(path, 1, "schema", "top level must be a list of {video_id, annotations}")]
    issues: List[Issue] = []
    videos: Dict[str, RefDetVideo] = {}
    for entry in data:
        video = _build_video(entry, path, issues)
        if video is None:
            continue
        if video.video_id in videos:
            issues.append(error(path, video.line, "duplicate",
                                f"video_id {video.video_id!r} repeats line {videos[video.video_id].line}"))
            continue
        videos[video.video_id] = video
    return list(videos.values()), issues


def parse_refdet(text: str, path: Path) -> Tuple[List[RefDetVideo], List[Issue]]:
    try:
        data = loads_with_lines(text)
    except json.JSONDecodeError as e:
        return [], [json_error_issue(Path(path), e)]
    return build_refdet(data, path)


def read_refdet_annotations(path: Union[str, Path]) -> List[RefDetVideo]:
    """``annotations.json`` (or a RefDet root); :class:`DataError` citing the line of the first problem."""
    path = Path(path)
    if path.is_dir():
        path = path / ANNOTATIONS
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read RefDet annotations {path}: {e}", "expected <root>/annotations/annotations.json") from None
    videos, issues = parse_refdet(text, path)
    errors = [i for i in issues if i.severity == ERROR]
    if errors:
        raise DataError(errors[0].format(), "fix it or run `edgekit data check` to list every problem")
    return videos


def write_refdet_annotations(path: Union[str, Path], videos: Sequence[RefDetVideo]) -> Path:
    """Write ``annotations.json`` atomically (``path`` may be a RefDet root)."""
    path = Path(path)
    if path.is_dir() and path.suffix != ".json":
        path = path / ANNOTATIONS
    return write_json_atomic(path, [v.to_json() for v in videos])


# -- roots and check ------------------------------------------------------------------------------
def is_refdet_root(path: Path) -> bool:
    return (Path(path) / ANNOTATIONS).is_file() or (Path(path) / SAMPLES).is_dir()


def find_refdet_roots(path: Path) -> List[Path]:
    """``path`` itself when it is a RefDet root, else its split subdirectories that are."""
    path = Path(path)
    if is_refdet_root(path):
        return [path]
    roots = sorted(d for d in path.iterdir() if d.is_dir() and is_refdet_root(d)) if path.is_dir() else []
    if not roots:
        raise DataError(f"{path} is not a RefDet root",
                        f"expected {path}/{ANNOTATIONS} and {path}/{SAMPLES}/, or train/ and test/ holding them")
    return roots


def _check_video(root: Path, video: RefDetVideo, source: Path) -> List[Issue]:
    issues: List[Issue] = []
    clip = video_path(root, video.video_id)
    info: Optional[VideoInfo] = None
    if not clip.is_file():
        issues.append(error(source, video.line, "missing-video", f"video {video.video_id!r}: {clip} does not exist"))
    else:
        info = read_video_info(clip)
        if info is None:
            issues.append(error(source, video.line, "unreadable-video", f"video {video.video_id!r}: OpenCV cannot read {clip}"))
    references = object_image_paths(root, video.video_id)
    if not references:
        issues.append(error(source, video.line, "missing-image",
                            f"video {video.video_id!r}: no reference photo object_images/img_{{1,2,3}}.jpg"))
    issues.extend(error(p, 0, "unreadable-image", "reference photo cannot be decoded")
                  for p in references if read_image_size(p) is None)
    for box in (b for track in video.annotations for b in track.bboxes):
        issues.extend(_check_box_against_video(source, video.video_id, box, info))
    return issues


def _check_box_against_video(source: Path, video_id: str, box: RefDetBox, info: Optional[VideoInfo]) -> List[Issue]:
    if info is None:
        return []
    issues = []
    if box.frame >= info.frame_count:
        issues.append(error(source, box.line, "frame-past-end",
                            f"video {video_id!r}: frame {box.frame} is past the end ({info.frame_count} frames)"))
    if box.x1 < 0 or box.y1 < 0 or box.x2 > info.width or box.y2 > info.height:
        issues.append(error(source, box.line, "out-of-range", f"video {video_id!r}: bbox "
                            f"({box.x1:g}, {box.y1:g}, {box.x2:g}, {box.y2:g}) leaves the {info.width}x{info.height} frame"))
    return issues


def check_refdet_root(root: Path) -> Tuple[List[Issue], int]:
    """Every problem in one RefDet root, and how many files were looked at."""
    root = Path(root)
    source = root / ANNOTATIONS
    if not source.is_file():
        return [error(source, 0, "missing-label", "annotations file does not exist")], 0
    try:
        videos, issues = parse_refdet(source.read_text(encoding="utf-8"), source)
    except (OSError, UnicodeDecodeError) as e:
        return [error(source, 0, "unreadable-label", f"cannot read: {e}")], 1
    for video in videos:
        issues.extend(_check_video(root, video, source))
    if any(i.code == "bad-json" for i in issues):
        return issues, 1  # which samples are annotated is unknown: no without-label warnings
    annotated = {v.video_id for v in videos}
    samples = sorted(d for d in (root / SAMPLES).iterdir() if d.is_dir()) if (root / SAMPLES).is_dir() else []
    issues.extend(warning(d, 0, "video-without-label", f"sample {d.name!r} has no entry in {source.name}")
                  for d in samples if d.name not in annotated)
    return issues, 1 + 2 * len(videos)


__all__ = ["RefDetBox", "RefDetTrack", "RefDetVideo", "ANNOTATIONS", "SAMPLES", "VIDEO_NAME", "OBJECT_IMAGES",
           "video_path", "object_image_paths", "build_refdet", "parse_refdet", "read_refdet_annotations",
           "write_refdet_annotations", "is_refdet_root", "find_refdet_roots", "check_refdet_root"]
