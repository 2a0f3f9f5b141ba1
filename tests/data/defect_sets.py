"""Builders of tiny real datasets for the data tests: one clean set per format, and defect sets with
ONE FILE PER DEFECT KIND. Each builder returns the root and the table of planted defects
``(file relative to root, line, code, severity)`` that a check must report, and nothing else.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

Planted = Tuple[str, int, str, str]  # relative path, line, code, severity

GOOD_OBB = "0 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3"
GOOD_OBB_2 = "1 0.5 0.5 0.9 0.6 0.8 0.9 0.45 0.8"


def write_image(path: Path, width: int = 64, height: int = 48, value: int = 90) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = np.full((height, width, 3), value, np.uint8)
    cv2.rectangle(image, (width // 4, height // 4), (width // 2, height // 2), (200, 30, 30), -1)
    assert cv2.imwrite(str(path), image), path
    return path


def write_garbage(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not an image or video " * 8)
    return path


def write_video(path: Path, frames: int = 8, width: int = 64, height: int = 48, fps: int = 8) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    assert writer.isOpened(), "OpenCV cannot write mp4v here"
    for i in range(frames):
        writer.write(np.full((height, width, 3), 20 * i % 255, np.uint8))
    writer.release()
    return path


def write_text(path: Path, lines: Sequence[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


# -- YOLO-OBB ---------------------------------------------------------------------------------------
def yolo_obb_clean(root: Path) -> Path:
    (root).mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(f"path: {root}\ntrain: images/train\nval: images/val\nnames:\n  0: plane\n  1: ship\n")
    for split, n in (("train", 2), ("val", 1)):
        for i in range(n):
            write_image(root / "images" / split / f"{split}_{i}.jpg")
            write_text(root / "labels" / split / f"{split}_{i}.txt", [GOOD_OBB, GOOD_OBB_2])
    return root


YOLO_DEFECT_LINES: Dict[str, Tuple[str, str]] = {  # file stem -> (bad line 2, code)
    "out_of_range": ("0 0.1 0.1 1.4 0.1 1.4 0.3 0.1 0.3", "out-of-range"),
    "degenerate_zero_area": ("0 0.1 0.1 0.2 0.2 0.3 0.3 0.4 0.4", "degenerate"),
    "degenerate_collinear": ("0 0.1 0.1 0.3 0.1 0.5 0.1 0.3 0.4", "degenerate"),
    "field_count": ("0 0.1 0.1 0.4 0.1 0.4 0.3 0.1", "field-count"),
    "non_numeric": ("0 0.1 0.1 0.4 abc 0.4 0.3 0.1 0.3", "non-numeric"),
    "unknown_class": ("7 0.1 0.1 0.4 0.1 0.4 0.3 0.1 0.3", "unknown-class"),
}


def yolo_obb_defects(root: Path) -> Tuple[Path, List[Planted]]:
    yolo_obb_clean(root)
    planted: List[Planted] = []
    for stem, (bad, code) in YOLO_DEFECT_LINES.items():
        write_image(root / "images/train" / f"{stem}.jpg")
        write_text(root / "labels/train" / f"{stem}.txt", [GOOD_OBB, bad])
        planted.append((f"labels/train/{stem}.txt", 2, code, "error"))
    write_image(root / "images/train/duplicate.jpg")
    write_text(root / "labels/train/duplicate.txt", [GOOD_OBB, GOOD_OBB_2, GOOD_OBB])
    planted.append(("labels/train/duplicate.txt", 3, "duplicate", "warning"))
    write_garbage(root / "images/train/unreadable_image.jpg")
    write_text(root / "labels/train/unreadable_image.txt", [GOOD_OBB])
    planted.append(("images/train/unreadable_image.jpg", 0, "unreadable-image", "error"))
    write_image(root / "images/train/image_without_label.jpg")
    planted.append(("images/train/image_without_label.jpg", 0, "image-without-label", "warning"))
    write_text(root / "labels/train/label_without_image.txt", [GOOD_OBB])
    planted.append(("labels/train/label_without_image.txt", 0, "label-without-image", "error"))
    return root, planted


# -- DOTA ---------------------------------------------------------------------------------------
DOTA_HEADER = ["imagesource:GoogleEarth", "gsd:0.146"]
GOOD_DOTA = "10.0 5.0 40.0 5.0 40.0 25.0 10.0 25.0 plane 0"
GOOD_DOTA_2 = "45.0 30.0 60.0 32.0 58.0 45.0 43.0 43.0 ship 1"
DOTA_DEFECT_LINES: Dict[str, Tuple[str, str]] = {  # file stem -> (bad line 4, after header + one good line)
    "out_of_range": ("10 5 70 5 70 25 10 25 plane 0", "out-of-range"),
    "degenerate": ("10 5 20 5 30 5 20 25 plane 0", "degenerate"),
    "field_count": ("10 5 40 5 40 25 10 25", "field-count"),
    "non_numeric": ("10 5 40 five 40 25 10 25 plane 0", "non-numeric"),
    "bad_difficult": ("10 5 40 5 40 25 10 25 plane 2", "non-numeric"),
    "unknown_class": ("10 5 40 5 40 25 10 25 spaceship 0", "unknown-class"),
}


def dota_clean(root: Path) -> Path:
    for i in range(2):
        write_image(root / "images" / f"P{i:04d}.png")
        write_text(root / "labelTxt" / f"P{i:04d}.txt", [*DOTA_HEADER, GOOD_DOTA, GOOD_DOTA_2])
    return root


def dota_defects(root: Path) -> Tuple[Path, List[Planted]]:
    dota_clean(root)
    planted: List[Planted] = []
    for stem, (bad, code) in DOTA_DEFECT_LINES.items():
        write_image(root / "images" / f"{stem}.png")
        write_text(root / "labelTxt" / f"{stem}.txt", [*DOTA_HEADER, GOOD_DOTA, bad])
        planted.append((f"labelTxt/{stem}.txt", 4, code, "error"))
    write_image(root / "images/bad_gsd.png")
    write_text(root / "labelTxt/bad_gsd.txt", ["imagesource:GoogleEarth", "gsd:abc", GOOD_DOTA])
    planted.append(("labelTxt/bad_gsd.txt", 2, "non-numeric", "error"))
    write_garbage(root / "images/unreadable_image.png")
    write_text(root / "labelTxt/unreadable_image.txt", [GOOD_DOTA])
    planted.append(("images/unreadable_image.png", 0, "unreadable-image", "error"))
    write_image(root / "images/image_without_label.png")
    planted.append(("images/image_without_label.png", 0, "image-without-label", "warning"))
    write_text(root / "labelTxt/label_without_image.txt", [GOOD_DOTA])
    planted.append(("labelTxt/label_without_image.txt", 0, "label-without-image", "error"))
    return root, planted


# -- COCO ---------------------------------------------------------------------------------------
GOOD_ANNOTATION = {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 5, 30, 20], "area": 600, "iscrowd": 0}


def coco_lines(images: Sequence[dict], annotations: Sequence[dict]) -> List[str]:
    """COCO json with one entry a line, so a test knows each entry's line: images start at line 2,
    annotations at line len(images) + 4."""
    lines = ['{"images": [']
    lines += [json.dumps(im) + ("," if i < len(images) - 1 else "") for i, im in enumerate(images)]
    lines += ["],", '"annotations": [']
    lines += [json.dumps(a) + ("," if i < len(annotations) - 1 else "") for i, a in enumerate(annotations)]
    lines += ["],", '"categories": [{"id": 1, "name": "plane"}, {"id": 3, "name": "ship"}]}']
    return lines


def coco_image(file_name: str = "a.jpg", width: int = 64, height: int = 48, image_id: int = 1) -> dict:
    return {"id": image_id, "file_name": file_name, "width": width, "height": height}


COCO_DEFECT_ANNOTATIONS: Dict[str, Tuple[dict, str]] = {  # json stem -> (bad 2nd annotation, code)
    "out_of_range": ({"bbox": [40, 5, 30, 20]}, "out-of-range"),
    "degenerate": ({"bbox": [10, 5, 0, 20]}, "degenerate"),
    "field_count": ({"bbox": [10, 5, 30]}, "field-count"),
    "non_numeric": ({"bbox": [10, "5", 30, 20]}, "non-numeric"),
    "unknown_class": ({"category_id": 99}, "unknown-class"),
}


def coco_clean(root: Path, name: str = "instances_train") -> Path:
    write_image(root / "images" / "a.jpg")
    write_text(root / "annotations" / f"{name}.json", coco_lines([coco_image()], [GOOD_ANNOTATION]))
    return root


def coco_defects(root: Path) -> Tuple[Path, List[Planted]]:
    coco_clean(root, "good")
    planted: List[Planted] = []
    annotations_line = 1 + 1 + 2  # '{"images": [' + one image + '],' + '"annotations": ['
    for stem, (change, code) in COCO_DEFECT_ANNOTATIONS.items():
        bad = {**GOOD_ANNOTATION, "id": 2, **change}
        write_text(root / "annotations" / f"{stem}.json", coco_lines([coco_image()], [GOOD_ANNOTATION, bad]))
        planted.append((f"annotations/{stem}.json", annotations_line + 2, code, "error"))
    text = coco_lines([coco_image()], [GOOD_ANNOTATION])
    text[4] = text[4].replace('"bbox"', '"bbox" [')  # a syntax error on line 5
    write_text(root / "annotations/bad_json.json", text)
    planted.append(("annotations/bad_json.json", 5, "bad-json", "error"))
    write_text(root / "annotations/missing_image.json",
               coco_lines([coco_image(), coco_image("gone.jpg", image_id=2)], [GOOD_ANNOTATION]))
    planted.append(("annotations/missing_image.json", 3, "missing-image", "error"))
    write_garbage(root / "images/broken.jpg")
    write_text(root / "annotations/unreadable_image.json",
               coco_lines([coco_image(), coco_image("broken.jpg", image_id=2)], [GOOD_ANNOTATION]))
    planted.append(("annotations/unreadable_image.json", 3, "unreadable-image", "error"))
    return root, planted


# -- RefDet -------------------------------------------------------------------------------------
VIDEO_FRAMES, VIDEO_W, VIDEO_H = 8, 64, 48


def refdet_box(frame: int, x1: int = 10, y1: int = 8, x2: int = 30, y2: int = 28) -> dict:
    return {"frame": frame, "x1": x1, "y1": y1, "x2": x2, "y2": y2}


def refdet_lines(entries: Sequence[Tuple[str, Sequence[dict]]]) -> List[str]:
    """annotations.json with one bbox a line: entry k's first bbox is on a line a test can compute."""
    lines = ["["]
    for k, (video_id, boxes) in enumerate(entries):
        lines.append(f'{{"video_id": "{video_id}", "annotations": [{{"bboxes": [')
        lines += [json.dumps(b) + ("," if i < len(boxes) - 1 else "") for i, b in enumerate(boxes)]
        lines.append("]}]}" + ("," if k < len(entries) - 1 else ""))
    lines.append("]")
    return lines


def refdet_root(root: Path, entries: Sequence[Tuple[str, Sequence[dict]]], videos: Sequence[str],
                references: Optional[Sequence[str]] = None, raw_lines: Optional[List[str]] = None) -> Path:
    for video_id in videos:
        write_video(root / "samples" / video_id / "drone_video.mp4", VIDEO_FRAMES, VIDEO_W, VIDEO_H)
    for video_id in videos if references is None else references:
        for i in (1, 2, 3):
            write_image(root / "samples" / video_id / "object_images" / f"img_{i}.jpg", 32, 32)
    write_text(root / "annotations" / "annotations.json", raw_lines or refdet_lines(entries))
    return root


def refdet_clean(root: Path) -> Path:
    for split in ("train", "test"):
        refdet_root(root / split, [(f"{split}_v0", [refdet_box(0), refdet_box(1), refdet_box(7)])], [f"{split}_v0"])
    return root


REFDET_BAD_BOXES: Dict[str, Tuple[dict, str]] = {  # root name -> (bad 2nd bbox, code)
    "frame_past_end": (refdet_box(VIDEO_FRAMES), "frame-past-end"),
    "out_of_range": (refdet_box(1, x2=VIDEO_W + 5), "out-of-range"),
    "degenerate": (refdet_box(1, x2=10), "degenerate"),
    "field_count": ({"frame": 1, "x1": 1, "y1": 1, "x2": 9}, "field-count"),
    "non_numeric": (refdet_box(1, y1="8"), "non-numeric"),  # type: ignore[arg-type]
}


def refdet_defects(root: Path) -> Tuple[Path, List[Planted]]:
    """One RefDet root per defect kind under ``root``; entry lines: '[' then the entry line, bboxes from 3."""
    planted: List[Planted] = []
    refdet_root(root / "good", [("v", [refdet_box(0), refdet_box(1)])], ["v"])
    for name, (bad, code) in REFDET_BAD_BOXES.items():
        refdet_root(root / name, [("v", [refdet_box(0), bad])], ["v"])
        planted.append((f"{name}/annotations/annotations.json", 4, code, "error"))
    refdet_root(root / "missing_video", [("v", [refdet_box(0)])], [], references=["v"])
    planted.append(("missing_video/annotations/annotations.json", 2, "missing-video", "error"))
    refdet_root(root / "unreadable_video", [("v", [refdet_box(0)])], [], references=["v"])
    write_garbage(root / "unreadable_video/samples/v/drone_video.mp4")
    planted.append(("unreadable_video/annotations/annotations.json", 2, "unreadable-video", "error"))
    refdet_root(root / "missing_references", [("v", [refdet_box(0)])], ["v"], references=[])
    planted.append(("missing_references/annotations/annotations.json", 2, "missing-image", "error"))
    bad_json = refdet_lines([("v", [refdet_box(0), refdet_box(1)])])
    bad_json[3] = bad_json[3].replace('"x1": 10,', '"x1": 10')  # a missing comma on line 4
    refdet_root(root / "bad_json", [], ["v"], raw_lines=bad_json)
    planted.append(("bad_json/annotations/annotations.json", 4, "bad-json", "error"))
    refdet_root(root / "video_without_label", [("v", [refdet_box(0)])], ["v", "extra"])
    planted.append(("video_without_label/samples/extra", 0, "video-without-label", "warning"))
    return root, planted
