"""`ultralytics.*` keys reach Ultralytics unchanged; owned or unknown keys fail by name."""

from __future__ import annotations

import pytest

from edgekit.core.errors import ConfigError
from edgekit.train.obb.api import stage_overrides
from edgekit.train.obb.config import load_train_config
from edgekit.train.run import RunDir


def _cfg(*extra):
    return load_train_config(None, ["data=/tmp/nowhere", *extra])


def test_passthrough_keys_reach_ultralytics(tmp_path):
    cfg = _cfg("ultralytics.nbs=8", "ultralytics.warmup_epochs=0", "ultralytics.scale=0.25")
    ov = stage_overrides(cfg, RunDir(tmp_path / "r"), 0, tmp_path / "data.yaml", "yolov8n-obb.yaml")
    assert (ov["nbs"], ov["warmup_epochs"], ov["scale"]) == (8, 0, 0.25)
    assert ov["epochs"] == cfg.stages[0].epochs  # edgekit's own keys still win


@pytest.mark.parametrize("key", ["epochs", "lr0", "project"])
def test_keys_edgekit_owns_are_refused(key):
    with pytest.raises(ConfigError, match=f"ultralytics.{key}"):
        _cfg(f"ultralytics.{key}=1")


def test_unknown_ultralytics_key_names_the_closest(tmp_path):
    cfg = _cfg("ultralytics.warmup_epoch=0")
    with pytest.raises(ConfigError, match=r"unknown key 'ultralytics.warmup_epoch'.*warmup_epochs"):
        stage_overrides(cfg, RunDir(tmp_path / "r"), 0, tmp_path / "data.yaml", "yolov8n-obb.yaml")
