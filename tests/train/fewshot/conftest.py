"""Shared fixtures of the RefDet training tests: a tiny synthetic few-shot root and tiny-run overrides."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")

# A random 1-block DINOv2 at 28 px (2x2 patches): the real architecture and key layout, seconds on CPU.
TINY_MODEL = ["model.encoder_weights=random", "model.encoder_kwargs={depth: 1}", "model.ref_size=28"]


@pytest.fixture(scope="session")
def fewshot_root(tmp_path_factory) -> Path:
    """ROOT/{train,test}: 4 training and 2 test targets, 24 frames of 96 px each."""
    from edgekit.data.synth.refdet import generate_refdet_dataset

    return generate_refdet_dataset(tmp_path_factory.mktemp("refdet") / "synth", n_train=4, n_test=2, frames=24,
                                   imgsz=96, seed=0, progress=False)


@pytest.fixture
def tiny_run(fewshot_root: Path, tmp_path: Path) -> List[str]:
    """key=value overrides of a seconds-long CPU run: 64 px frames, 2 episodes of 2 targets x (2 + 1) frames."""
    return [f"data={fewshot_root}", f"project={tmp_path / 'runs'}", "imgsz=64", "epochs=2", "device=cpu",
            "episode.episodes_per_epoch=2", "episode.n_query=2", "episode.n_negative=1",
            "validation.frames_per_video=3", "optim.warmup_steps=1", *TINY_MODEL]
