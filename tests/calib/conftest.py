"""Shared fixtures: real calibration images, a tiny Conv graph, and a real yolov8n-obb ONNX at 64 px."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # makes tests/fakes importable as `fakes`

from fakes.onnx_graphs import save, tiny_conv_model, write_images  # noqa: E402

from edgekit.core.letterbox import LetterboxSpec  # noqa: E402

OBB_IMGSZ = 64


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("calib_images")
    write_images(folder, 6, seed=1, suffixes=(".jpg", ".png"))
    write_images(folder / "nested", 4, seed=2, suffixes=(".bmp",))
    return folder


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    return save(tiny_conv_model(), tmp_path_factory.mktemp("tiny") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_calib(calib_dir):
    from edgekit.calib.dataset import CalibrationSet

    return CalibrationSet.from_dir(calib_dir, LetterboxSpec(imgsz=16), size=8)


@pytest.fixture(scope="session")
def obb_onnx(tmp_path_factory, calib_dir) -> Path:
    """yolov8n-obb (random init) exported like Ultralytics' exporter does, at 64 px, opset 17.

    An untrained YOLO's outputs barely depend on the image (BatchNorm statistics of a fresh model,
    class biases at -10), which would make any INT8-vs-FP32 comparison vacuous. So the BatchNorm
    statistics are re-estimated on the calibration images and the class biases zeroed: the outputs
    then vary with the input, scores around 0.5, like a model that has seen data.
    """
    os.environ.setdefault("YOLO_OFFLINE", "1")
    torch = pytest.importorskip("torch")
    pytest.importorskip("ultralytics")
    import cv2
    from ultralytics import YOLO
    from ultralytics.nn.modules import C2f, Detect

    torch.manual_seed(0)
    model = YOLO("yolov8n-obb.yaml").model
    images = sorted(p for p in calib_dir.rglob("*") if p.is_file())
    batch = np.stack([cv2.resize(cv2.imread(str(p)), (OBB_IMGSZ, OBB_IMGSZ))[..., ::-1].transpose(2, 0, 1)
                      for p in images]).astype(np.float32) / 255.0
    model.train()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None  # cumulative average over the passes below
    with torch.no_grad():
        model(torch.from_numpy(batch))
    model.eval().float()
    for p in model.parameters():
        p.requires_grad = False
    model = model.fuse()
    for m in model.modules():
        if isinstance(m, Detect):  # what ultralytics/engine/exporter.py sets for ONNX
            m.dynamic, m.export, m.format, m.shape = False, True, "onnx", None
            for seq in m.cv3:
                seq[-1].bias.data.zero_()
        elif isinstance(m, C2f):
            m.forward = m.forward_split
    path = tmp_path_factory.mktemp("obb") / "yolov8n-obb.onnx"
    torch.onnx.export(model, torch.zeros(1, 3, OBB_IMGSZ, OBB_IMGSZ), str(path), opset_version=17,
                      input_names=["images"], output_names=["output0"], dynamo=False)
    return path


@pytest.fixture(scope="session")
def obb_calib(calib_dir):
    from edgekit.calib.dataset import CalibrationSet

    return CalibrationSet.from_dir(calib_dir, LetterboxSpec(imgsz=OBB_IMGSZ), size=10)
