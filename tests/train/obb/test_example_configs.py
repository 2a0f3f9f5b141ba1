"""The example configs under configs/ load and validate (a renamed key would break them silently)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.train.obb.config import load_train_config
from edgekit.train.obb.preflight import check_ultralytics_keys

CONFIGS = Path(__file__).parents[3] / "configs"


@pytest.mark.parametrize("name", ["obb_demo.yaml", "obb_640.yaml"])
def test_train_configs_load(name, obb_dataset):
    cfg = load_train_config(CONFIGS / name, [f"data={obb_dataset}"])
    assert [s.name for s in cfg.stages] == ["a", "b"]
    check_ultralytics_keys(cfg.ultralytics)  # pass-through keys exist in Ultralytics
    if name == "obb_640.yaml":
        assert cfg.imgsz == 640 and cfg.save_period == 10 and cfg.logging.mlflow and cfg.logging.tensorboard


def test_tune_space_loads_on_the_demo_config(obb_dataset):
    from edgekit.train.obb.tune import load_space

    space = load_space(CONFIGS / "tune_space.yaml", CONFIGS / "obb_demo.yaml", [f"data={obb_dataset}"])
    assert {"stages.a.lr0", "distillation.weight", "optimizer"} <= set(space.params)
