"""Bundles for the bench tests.

``small_bundle``: deploy's constant-output test bundle (tests/deploy/bundles.py) (a real 64 px ONNX graph, golden set, manifest
v2), written without torch, so these tests also run under the device's Python 3.8.
``exported``: host only, a real ``edgekit export`` of an untrained yolov8n-obb (5 classes, 320 px, 160 px images,
BatchNorm statistics re-estimated and head outputs scaled down so it outputs boxes with spread scores),
a synthetic dataset, and a copy of that dataset whose val labels are half the model's own FP32
detections plus the original boxes, so mAP is neither 0 nor 1 and a device/host difference shows.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[2]
IMGSZ = 160  # dataset images
# The untrained head predicts boxes of ~120 network pixels; exporting at twice the image size halves
# them in image pixels, so many fall inside the image and can serve as valid YOLO-OBB labels.
EXPORT_IMGSZ = 320


def write_test_bundle(root: Path, **kwargs) -> Path:
    from tests.deploy.bundles import write_test_bundle as write

    return write(root, **kwargs)


@pytest.fixture
def small_bundle(tmp_path) -> Path:
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return write_test_bundle(tmp_path / "bundle")


@pytest.fixture
def make_bundle(tmp_path):
    """``make_bundle(name, dynamic=..., golden=...)``: more test bundles under tmp_path."""
    pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    return lambda name, **kwargs: write_test_bundle(tmp_path / name, **kwargs)


def _edgekit(*args: str, cwd: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_OFFLINE="1")
    res = subprocess.run([sys.executable, "-m", "edgekit", *args], cwd=str(cwd), env=env, capture_output=True,
                         text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


_CHECKPOINT = r'''
import sys, cv2, torch, yaml, ultralytics
from pathlib import Path
from ultralytics import YOLO
from edgekit.core.letterbox import LetterboxSpec, preprocess
out, images, imgsz = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
cfg = yaml.safe_load((Path(ultralytics.__file__).parent / "cfg/models/v8/yolov8-obb.yaml").read_text())
cfg["nc"] = 5
(out.parent / "yolov8n-obb.yaml").write_text(yaml.safe_dump(cfg))
torch.manual_seed(0)
model = YOLO(str(out.parent / "yolov8n-obb.yaml"))
net = model.model.train()
for m in net.modules():
    if isinstance(m, torch.nn.BatchNorm2d):
        m.reset_running_stats(); m.momentum = None
with torch.no_grad():
    for p in sorted(images.glob("*.jpg")):
        net(torch.from_numpy(preprocess(cv2.imread(str(p)), LetterboxSpec(imgsz=imgsz))[0]))
net.eval()
head = net.model[-1]
with torch.no_grad():
    for branch in (head.cv2, head.cv3, head.cv4):
        for seq in branch:
            seq[-1].weight.mul_(0.02); seq[-1].bias.mul_(0.02)
model.save(str(out))
'''


@pytest.fixture(scope="session")
def exported(tmp_path_factory) -> Dict[str, Path]:
    """{"bundle", "data", "pseudo"}: a real exported bundle and two datasets (host only, ~20 s)."""
    pytest.importorskip("ultralytics")
    pytest.importorskip("torch")
    root = tmp_path_factory.mktemp("exported")
    _edgekit("data", "synth", "obb", "--out", "data", "--n-train", "8", "--n-val", "4", "--imgsz", str(IMGSZ), cwd=root)
    env = dict(os.environ, PYTHONPATH=str(REPO), YOLO_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", _CHECKPOINT, str(root / "ck.pt"), str(root / "data/images/train"),
                          str(IMGSZ)], env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    _edgekit("export", "ck.pt", "--imgsz", str(EXPORT_IMGSZ), "--calib-data", "data/images/val", "--out", "bundle",
             "--quiet", cwd=root)
    pseudo = root / "pseudo"
    shutil.copytree(str(root / "data"), str(pseudo))
    (pseudo / "data.yaml").write_text((root / "data/data.yaml").read_text().replace(str(root / "data"), str(pseudo)))
    _pseudo_labels(root / "bundle", pseudo)
    return {"bundle": root / "bundle", "data": root / "data", "pseudo": pseudo}


def _pseudo_labels(bundle: Path, dataset: Path) -> None:
    import cv2
    import numpy as np

    from edgekit.core.geometry import xywhr_to_corners
    from edgekit.deploy.bundle import Bundle

    with Bundle.open(bundle).detector("onnxruntime") as det:
        for image in sorted((dataset / "images" / "val").glob("*.jpg")):
            frame = cv2.imread(str(image))
            dets = det(frame)
            h, w = frame.shape[:2]
            corners = xywhr_to_corners(dets.xywhr).reshape(-1, 4, 2) / np.array([w, h])
            # labels must be valid YOLO-OBB: inside the image, not degenerate; then every other one
            keep = np.flatnonzero(((corners > 0) & (corners < 1)).all(axis=(1, 2)) & (dets.xywhr[:, 2:4] > 3).all(1))
            keep = keep[::2]
            dets, corners = dets[keep], corners[keep]
            label = dataset / "labels" / "val" / (image.stem + ".txt")
            lines = [" ".join([str(int(c))] + [f"{v:.6f}" for v in q.reshape(-1)])
                     for c, q in zip(dets.class_ids, corners)]
            label.write_text(label.read_text() + "\n".join(lines) + "\n")
