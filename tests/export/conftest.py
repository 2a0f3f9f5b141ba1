"""Session fixtures: a tiny synthetic OBB dataset, a briefly trained YOLOv8n-OBB and a run directory.

Everything is built once per session at 64-96 px so the export tests stay within minutes on 2 cores.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

os.environ.setdefault("YOLO_OFFLINE", "1")  # before ultralytics is imported anywhere

IMGSZ = 64


@pytest.fixture(scope="session")
def obb_dataset(tmp_path_factory) -> Path:
    from edgekit.data.synth.obb import generate_obb_dataset

    return generate_obb_dataset(tmp_path_factory.mktemp("data") / "obb", n_train=16, n_val=10, imgsz=96, seed=0,
                                progress=False)


@pytest.fixture(scope="session")
def obb_checkpoint(tmp_path_factory, obb_dataset) -> Path:
    """A real Ultralytics checkpoint: yolov8n-obb trained 2 epochs from scratch (no weights downloaded).

    Four optimizer steps leave BatchNorm's running statistics near their initial values, and the eval
    net then outputs the same saturated boxes for every image, which would make parity vacuous. So the
    statistics are re-estimated on the training images (standard BN recalibration), the head's last
    convolutions are scaled down so scores spread over (0, 1) instead of saturating at exactly 1.0
    (ties), and the checkpoint is saved back in Ultralytics' own layout: the model is input-dependent
    and detects ~10 boxes an image.
    """
    pytest.importorskip("ultralytics")
    import torch
    from ultralytics import YOLO

    project = tmp_path_factory.mktemp("ultralytics")
    model = YOLO("yolov8n-obb.yaml")
    model.train(data=str(obb_dataset / "data.yaml"), epochs=2, imgsz=IMGSZ, batch=8, workers=0, device="cpu",
                plots=False, val=False, amp=False, project=str(project), name="t", exist_ok=True, verbose=False,
                seed=0, deterministic=True, warmup_epochs=0, lr0=0.002, optimizer="SGD")
    best = project / "t" / "weights" / "best.pt"
    ckpt = torch.load(str(best), map_location="cpu", weights_only=False)
    net = (ckpt.get("ema") or ckpt["model"]).float()
    _recalibrate_batchnorm(net, sorted((obb_dataset / "images" / "train").glob("*.jpg")))
    head = net.model[-1]
    with torch.no_grad():
        for branch in (head.cv2, head.cv3, head.cv4):  # box (DFL), class and angle outputs
            for seq in branch:
                seq[-1].weight.mul_(0.02)
                seq[-1].bias.mul_(0.02)
    ckpt["model"], ckpt["ema"] = net.half(), None
    torch.save(ckpt, str(best))
    return best


def _recalibrate_batchnorm(net, images) -> None:
    import cv2
    import torch

    from edgekit.core.letterbox import LetterboxSpec, preprocess

    net.train()
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.reset_running_stats()
            module.momentum = None  # cumulative average over every batch seen
    with torch.no_grad():
        for path in images:
            net(torch.from_numpy(preprocess(cv2.imread(str(path)), LetterboxSpec(imgsz=IMGSZ))[0]))
    net.eval()


@pytest.fixture(scope="session")
def obb_run_dir(tmp_path_factory, obb_checkpoint, obb_dataset) -> Path:
    """runs/<id>/ as the training stage writes it: checkpoints/best.pt + reports/config_resolved.yaml."""
    run = tmp_path_factory.mktemp("runs") / "obb-test-run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "reports").mkdir()
    (run / "checkpoints" / "best.pt").write_bytes(obb_checkpoint.read_bytes())
    (run / "reports" / "config_resolved.yaml").write_text(yaml.safe_dump({"data": str(obb_dataset), "imgsz": IMGSZ}))
    return run


@pytest.fixture(scope="session")
def fp32_bundle(tmp_path_factory, obb_run_dir) -> Path:
    """A finished FP32 bundle (no INT8) for the x86 target, exported once."""
    from edgekit.export import ExportOptions, export_model

    out = tmp_path_factory.mktemp("bundles") / "fp32"
    return export_model(ExportOptions(source=obb_run_dir, out=out, target="x86")).bundle_dir
