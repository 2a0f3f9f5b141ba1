"""The exported FP32 ONNX works outside edgekit: plain Ultralytics and Polygraphy load and run it,
and edgekit's own Detector on it reproduces Ultralytics' predictions on the PyTorch checkpoint."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest

from .conftest import IMGSZ


@pytest.fixture(scope="module")
def val_image(obb_dataset):
    return sorted((obb_dataset / "images" / "val").glob("*.jpg"))[0]


def test_ultralytics_loads_and_predicts_the_onnx(fp32_bundle, obb_checkpoint, val_image, tmp_path):
    from ultralytics import YOLO

    onnx_copy = tmp_path / "model.onnx"  # Ultralytics may write beside the model; keep the bundle untouched
    shutil.copy(fp32_bundle / "model.onnx", onnx_copy)
    onnx_res = YOLO(str(onnx_copy), task="obb").predict(str(val_image), imgsz=IMGSZ, conf=0.25, device="cpu",
                                                        verbose=False)[0]
    pt_res = YOLO(str(obb_checkpoint)).predict(str(val_image), imgsz=IMGSZ, conf=0.25, device="cpu", verbose=False)[0]
    assert onnx_res.obb is not None and len(onnx_res.obb) == len(pt_res.obb)
    assert onnx_res.names == pt_res.names  # metadata written by the exporter survived IR pinning + slimming
    assert len(pt_res.obb) > 0  # the fixture model detects; otherwise this test proves nothing
    np.testing.assert_allclose(onnx_res.obb.xywhr.numpy(), pt_res.obb.xywhr.numpy(), atol=1e-2, rtol=1e-3)


def test_polygraphy_runs_the_onnx_under_onnxruntime(fp32_bundle, tmp_path):
    exe = shutil.which("polygraphy")
    cmd = [exe] if exe else [sys.executable, "-m", "polygraphy"]
    out_json = tmp_path / "outputs.json"
    res = subprocess.run([*cmd, "run", str(fp32_bundle / "model.onnx"), "--onnxrt", "--save-outputs", str(out_json)],
                         capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "PASSED" in res.stdout + res.stderr
    assert out_json.is_file() and out_json.stat().st_size > 0


def test_detector_on_bundle_matches_ultralytics_predict(fp32_bundle, val_image, tmp_path):
    """Same ONNX file, two pipelines: edgekit's preprocess/decode/unletterbox vs Ultralytics' own."""
    from ultralytics import YOLO

    from edgekit.core.detections import Detections
    from edgekit.core.manifest import load_manifest
    from edgekit.core.metrics import match_detections
    from edgekit.deploy import Detector, create_runner

    manifest = load_manifest(fp32_bundle)
    with Detector(create_runner("onnxruntime", fp32_bundle / "model.onnx"), manifest) as det:
        ours = det(cv2.imread(str(val_image)))
    onnx_copy = tmp_path / "model.onnx"
    shutil.copy(fp32_bundle / "model.onnx", onnx_copy)
    ref = YOLO(str(onnx_copy), task="obb").predict(str(val_image), imgsz=IMGSZ, conf=det.postprocess.conf,
                                                   iou=det.postprocess.iou, device="cpu", verbose=False)[0].obb
    theirs = Detections(ref.xywhr.numpy(), ref.conf.numpy(), ref.cls.numpy().astype(np.int64))
    assert len(ours) == len(theirs) > 0
    m = match_detections(ours, theirs, iou_thr=0.95)
    assert len(m.unmatched_a) == 0 and len(m.unmatched_b) == 0, (ours, theirs)
    assert m.max_score_diff < 1e-4


def test_parity_report_is_written(fp32_bundle):
    parity = json.loads((fp32_bundle / "onnx_parity.json").read_text())
    assert parity["passed"] is True and parity["reference"].startswith("torch:")
    assert parity["n_images"] >= 1 and parity["raw"]["max_abs"] < 1e-2
    assert parity["detections"]["n_ref"] == parity["detections"]["matched"] > 0
