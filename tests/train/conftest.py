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
