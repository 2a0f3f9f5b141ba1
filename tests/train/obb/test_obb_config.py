"""ObbTrainConfig loading: defaults, priority (CLI > file > defaults), unknown keys by name, stage overrides."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from edgekit.core.errors import ConfigError
from edgekit.train.obb.config import ObbTrainConfig, load_train_config


def _write(tmp_path, data, name="train.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


def test_defaults_follow_the_issue(tmp_path):
    cfg = load_train_config(None, ["data=/d"])
    assert cfg.student == "yolov8n-obb.yaml" and cfg.project == "runs"
    assert cfg.teacher.name == "vit_small_patch16_dinov3" and cfg.teacher.weights == "auto"
    assert cfg.distillation.layers == [15, 18, 21]
    assert [(s.name, s.freeze) for s in cfg.stages] == [("a", 10), ("b", 0)]


def test_cli_beats_file_beats_defaults(tmp_path):
    path = _write(tmp_path, {"data": "/d", "imgsz": 320, "batch": 8, "teacher": {"imgsz": 256}})
    cfg = load_train_config(path, ["batch=4", "device=0,1"])
    assert (cfg.imgsz, cfg.batch, cfg.teacher.imgsz, cfg.device, cfg.workers) == (320, 4, 256, "0,1", 4)


@pytest.mark.parametrize("data, overrides, match", [
    ({"data": "/d", "imgsz_": 64}, [], "unknown key 'imgsz_' in train.yaml; did you mean 'imgsz'"),
    ({"data": "/d", "teacher": {"nmae": "x"}}, [], "unknown key 'teacher.nmae'"),
    ({"data": "/d"}, ["distillation.obj_weigth=2"], "unknown key 'distillation.obj_weigth'"),
    ({"data": "/d"}, ["stages.a.epoch=3"], "unknown key 'stages.0.epoch'"),
    ({"data": "/d"}, ["stages.c.epochs=3"], "no stage named 'c'"),
    ({"data": "/d"}, ["teacher.imgsz=100"], "multiple of 16"),
    ({"data": "/d", "stages": [{"name": "a", "epochs": 1}, {"name": "a", "epochs": 1}]}, [], "unique"),
])
def test_bad_keys_and_values_fail_fast_by_name(tmp_path, data, overrides, match):
    with pytest.raises(ConfigError, match=match):
        load_train_config(_write(tmp_path, data), overrides)


@pytest.mark.parametrize("item, stage, field, value", [
    ("stages.a.epochs=3", 0, "epochs", 3),
    ("stages.1.lr0=0.01", 1, "lr0", 0.01),
    ("stages.b.distill_scale=0", 1, "distill_scale", 0.0),
])
def test_stage_overrides_by_name_or_index(item, stage, field, value):
    cfg = load_train_config(None, ["data=/d", item])
    assert getattr(cfg.stages[stage], field) == value


def test_config_is_frozen_and_round_trips():
    cfg = load_train_config(None, ["data=/d", "teacher.model_kwargs={depth: 2}"])
    assert ObbTrainConfig.model_validate(cfg.model_dump(mode="json")) == cfg
    with pytest.raises(ValidationError):
        cfg.imgsz = 1  # type: ignore[misc]
