"""Synthetic RefDet generator: layout, readable videos, valid boxes, disjoint splits, references."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from edgekit.core.errors import ConfigError
from edgekit.data.synth.refdet import count_video_frames, generate_refdet_dataset

FRAMES, IMGSZ = 16, 128


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_refdet_dataset(tmp_path_factory.mktemp("refdet") / "ds", n_train=3, n_test=2,
                                   frames=FRAMES, imgsz=IMGSZ, fps=8, seed=3, progress=False)


def _records(root: Path, split: str) -> list:
    return json.loads((root / split / "annotations" / "annotations.json").read_text())


def _frames(video: Path) -> list:
    cap = cv2.VideoCapture(str(video))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return frames


@pytest.mark.parametrize(("split", "count"), [("train", 3), ("test", 2)])
def test_layout_and_readable_videos(dataset: Path, split: str, count: int) -> None:
    records = _records(dataset, split)
    assert len(records) == count
    assert sorted(p.name for p in (dataset / split / "samples").iterdir()) == sorted(r["video_id"] for r in records)
    for record in records:
        sample = dataset / split / "samples" / record["video_id"]
        frames = _frames(sample / "drone_video.mp4")
        assert len(frames) == FRAMES == count_video_frames(sample / "drone_video.mp4")
        assert frames[0].shape == (IMGSZ, IMGSZ, 3)
        assert cv2.VideoCapture(str(sample / "drone_video.mp4")).get(cv2.CAP_PROP_FPS) == pytest.approx(8)
        for i in (1, 2, 3):
            ref = cv2.imread(str(sample / "object_images" / f"img_{i}.jpg"))
            assert ref is not None and ref.shape[:2] == (64, 64)
        assert len(list((sample / "object_images").iterdir())) == 3


def test_boxes_are_valid_and_target_comes_and_goes(dataset: Path) -> None:
    for split in ("train", "test"):
        for record in _records(dataset, split):
            assert len(record["annotations"]) == 1
            boxes = record["annotations"][0]["bboxes"]
            frames = [b["frame"] for b in boxes]
            assert frames == sorted(set(frames)), "frames must be unique and ordered"
            # The target is seen, but not in every frame (it enters and leaves the view).
            assert 0 < len(boxes) < FRAMES
            for b in boxes:
                assert set(b) == {"frame", "x1", "y1", "x2", "y2"}
                assert all(isinstance(v, int) for v in b.values())
                assert 0 <= b["frame"] < FRAMES
                assert 0 <= b["x1"] < b["x2"] <= IMGSZ and 0 <= b["y1"] < b["y2"] <= IMGSZ
                assert min(b["x2"] - b["x1"], b["y2"] - b["y1"]) >= 4


def test_boxes_cover_an_object_not_plain_ground(dataset: Path) -> None:
    """Inside a box the pixels vary much more than the terrain does on average (an object is there)."""
    ratios = []
    for record in _records(dataset, "train"):
        frames = _frames(dataset / "train" / "samples" / record["video_id"] / "drone_video.mp4")
        for b in record["annotations"][0]["bboxes"]:
            frame = frames[b["frame"]].astype(np.float32)
            crop = frame[b["y1"]:b["y2"], b["x1"]:b["x2"]]
            ratios.append(crop.std(axis=(0, 1)).mean() / max(frame.std(axis=(0, 1)).mean(), 1.0))
    assert np.median(ratios) > 1.0  # random boxes of the same sizes: ~0.5


def test_test_targets_never_appear_in_training(dataset: Path) -> None:
    train = {r["video_id"] for r in _records(dataset, "train")}
    test = {r["video_id"] for r in _records(dataset, "test")}
    assert train and test and not train & test
    train_refs = [cv2.imread(str(p)).astype(np.float32) for p in (dataset / "train").rglob("img_1.jpg")]
    for ref_path in (dataset / "test").rglob("img_1.jpg"):
        ref = cv2.imread(str(ref_path)).astype(np.float32)
        assert all(np.abs(ref - other).mean() > 5 for other in train_refs)


def test_same_seed_same_files(dataset: Path, tmp_path: Path) -> None:
    again = generate_refdet_dataset(tmp_path / "again", n_train=3, n_test=2, frames=FRAMES, imgsz=IMGSZ,
                                    fps=8, seed=3, progress=False)
    other = generate_refdet_dataset(tmp_path / "other", n_train=3, n_test=2, frames=FRAMES, imgsz=IMGSZ,
                                    fps=8, seed=4, progress=False)
    for split in ("train", "test"):
        assert _records(again, split) == _records(dataset, split)
        assert _records(other, split) != _records(dataset, split)
        for path in sorted((dataset / split).rglob("*.jpg")):
            assert (again / path.relative_to(dataset)).read_bytes() == path.read_bytes()
        for path in sorted((dataset / split).rglob("*.mp4")):
            a, b = _frames(path), _frames(again / path.relative_to(dataset))
            assert len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_train": 0}, "n_train=0"),
        ({"n_test": 0}, "n_test=0"),
        ({"frames": 1}, "frames=1"),
        ({"imgsz": 32}, "imgsz=32"),
        ({"imgsz": 129}, "imgsz=129 must be even"),
        ({"fps": 0}, "fps=0"),
    ],
)
def test_bad_arguments_raise_config_error(tmp_path: Path, kwargs: dict, match: str) -> None:
    args = {"n_train": 1, "n_test": 1, "frames": 4, "imgsz": 64, "fps": 4, **kwargs}
    with pytest.raises(ConfigError, match=match):
        generate_refdet_dataset(tmp_path / "bad", **args, progress=False)
    assert not (tmp_path / "bad").exists()


def test_parallel_rendering_writes_the_same_dataset(tmp_path: Path) -> None:
    """workers=2 (a spawn process pool) gives the same records and reference photos as one process."""
    kw = dict(n_train=3, n_test=2, frames=6, imgsz=64, seed=5, progress=False)
    one = generate_refdet_dataset(tmp_path / "one", **kw)
    two = generate_refdet_dataset(tmp_path / "two", workers=2, **kw)
    for split in ("train", "test"):
        assert _records(one, split) == _records(two, split)
        for record in _records(one, split):
            refs = Path(split) / "samples" / record["video_id"] / "object_images" / "img_1.jpg"
            assert (one / refs).read_bytes() == (two / refs).read_bytes()


def test_negative_workers_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="workers"):
        generate_refdet_dataset(tmp_path / "x", n_train=1, n_test=1, frames=4, imgsz=64, workers=-1, progress=False)
