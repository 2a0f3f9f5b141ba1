"""Shared fixtures for the training tests: a tiny synthetic OBB dataset and tiny-run config overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # Ultralytics must never reach the network in tests

# A DINOv3 teacher with the real key layout (RoPE, registers, layer-scale) but tiny widths: fast on CPU.
TINY_TEACHER = "{embed_dim: 32, depth: 2, num_heads: 2}"


@pytest.fixture(scope="session")
def obb_dataset(tmp_path_factory) -> Path:
    from edgekit.data.synth.obb import generate_obb_dataset

    return generate_obb_dataset(tmp_path_factory.mktemp("data") / "synth", n_train=4, n_val=2, imgsz=64, seed=0,
                                progress=False)


@pytest.fixture
def tiny_overrides(obb_dataset: Path, tmp_path: Path) -> List[str]:
    """key=value overrides for a seconds-long CPU run at 64 px with a random tiny teacher."""
    return [f"data={obb_dataset}", "imgsz=64", "batch=2", "workers=0", f"project={tmp_path / 'runs'}",
            "device=cpu", "amp=false", "mosaic=0", "teacher.weights=random", f"teacher.model_kwargs={TINY_TEACHER}",
            "logging.wandb=disabled", "stages.a.epochs=1", "stages.b.epochs=1"]


@pytest.fixture(scope="session")
def trained_obb(tmp_path_factory):
    """(best.pt, dataset root): a plain-YOLO student (no teacher) trained from scratch at 128 px, once per session.

    Validated on its own training images (an overfit by design): from scratch on CPU that is what reaches
    a val mAP50 far from 0 in about two minutes (measured 0.60), so predict -> eval vs Ultralytics' val
    compares real detections; a random model scores 0 everywhere and would prove nothing. Slow tests only.
    """
    from edgekit.data.synth.obb import generate_obb_dataset
    from edgekit.train.obb import train_obb
    from edgekit.train.obb.config import load_train_config

    tmp = tmp_path_factory.mktemp("trained")
    data = generate_obb_dataset(tmp / "synth", n_train=32, n_val=8, imgsz=128, seed=1, progress=False)
    yaml_path = data / "data.yaml"
    yaml_path.write_text(yaml_path.read_text().replace("val: images/val", "val: images/train"))
    no_aug = "{warmup_epochs: 0, fliplr: 0, scale: 0, translate: 0, hsv_h: 0, hsv_s: 0, hsv_v: 0}"
    cfg = load_train_config(None, [
        f"data={data}", "imgsz=128", "batch=8", "workers=0", f"project={tmp / 'runs'}", "amp=false", "mosaic=0",
        "distillation.enabled=false", "logging.wandb=disabled", "optimizer=SGD", "val=false",
        "stages=[{name: a, epochs: 50, freeze: 0, lr0: 0.02}]", f"ultralytics={no_aug}"])
    result = train_obb(cfg, run_id="trained")
    return result.best, data
