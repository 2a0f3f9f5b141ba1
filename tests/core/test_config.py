"""Strict config loading: files, overrides, priorities, and one-line errors that name the key."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

import pytest
import yaml
from pydantic import ValidationError

from edgekit.core.config import (
    StrictModel,
    apply_overrides,
    build_config,
    closest_key,
    dump_config,
    load_config,
    parse_override,
    read_mapping,
)
from edgekit.core.errors import ConfigError


class Optim(StrictModel):
    lr0: float = 0.01
    momentum: float = 0.9


class Head(StrictModel):
    name: str
    channels: int = 64


class TrainCfg(StrictModel):
    epochs: int = 10
    imgsz: int = 640
    tags: List[str] = []
    optim: Optim = Optim()
    teacher: Optional[Optim] = None
    heads: Dict[str, Head] = {}
    stages: List[Optim] = []


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_defaults_file_and_overrides_priority(tmp_path):
    assert load_config(TrainCfg) == TrainCfg()
    path = write(tmp_path, "train.yaml", "epochs: 3\noptim:\n  lr0: 0.1\n")
    cfg = load_config(TrainCfg, path, ["epochs=5", "optim.momentum=0.5", "tags=[a, b]"])
    assert (cfg.epochs, cfg.optim.lr0, cfg.optim.momentum, cfg.tags) == (5, 0.1, 0.5, ["a", "b"])
    assert load_config(TrainCfg, write(tmp_path, "c.json", '{"imgsz": 320}')).imgsz == 320


def test_config_is_frozen():
    with pytest.raises(ValidationError):
        TrainCfg().epochs = 3


@pytest.mark.parametrize(("text", "overrides", "message"), [
    ("epoch: 3\n", (), "unknown key 'epoch' in train.yaml; did you mean 'epochs'?"),
    ("optim:\n  lr_0: 0.1\n", (), "unknown key 'optim.lr_0' in train.yaml; did you mean 'optim.lr0'?"),
    ("teacher:\n  momentun: 0.1\n", (), "did you mean 'teacher.momentum'?"),
    ("heads:\n  a:\n    nmae: x\n", (), "unknown key 'heads.a.nmae' in train.yaml; did you mean 'heads.a.name'?"),
    ("", ("zzz=1",), "unknown key 'zzz' in train.yaml (with overrides); valid keys here:"),
    ("epochs: many\n", (), "invalid value for 'epochs' in train.yaml"),
    ("stages:\n  - lr_0: 0.1\n", (), "unknown key 'stages.0.lr_0' in train.yaml; did you mean 'stages.0.lr0'?"),
])
def test_errors_name_key_file_and_fix(tmp_path, text, overrides, message):
    path = write(tmp_path, "train.yaml", text)
    with pytest.raises(ConfigError) as e:
        load_config(TrainCfg, path, overrides)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize(("name", "text", "message"), [
    ("missing.yaml", None, "does not exist"),
    ("bad.yaml", "a: [1, 2\n", "cannot parse config"),
    ("bad.json", "{oops", "cannot parse config"),
    ("list.yaml", "- 1\n- 2\n", "must hold a mapping"),
])
def test_unreadable_files(tmp_path, name, text, message):
    path = tmp_path / name if text is None else write(tmp_path, name, text)
    with pytest.raises(ConfigError, match=message):
        read_mapping(path)


def test_non_utf8_file_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"cannot read config .*latin1\.yaml.*UTF-8"):
        read_mapping(path)


def test_empty_file_is_defaults(tmp_path):
    assert load_config(TrainCfg, write(tmp_path, "empty.yaml", "")) == TrainCfg()


@pytest.mark.parametrize(("item", "expected"), [
    ("a=1", (["a"], 1)),
    ("a.b=0.5", (["a", "b"], 0.5)),
    ("flag=true", (["flag"], True)),
    ("xs=[1, 2]", (["xs"], [1, 2])),
    ("name=", (["name"], "")),
    ("s=a=b", (["s"], "a=b")),
])
def test_parse_override(item, expected):
    assert parse_override(item) == expected


@pytest.mark.parametrize("item", ["novalue", "=3"])
def test_parse_override_errors(item):
    with pytest.raises(ConfigError, match="override"):
        parse_override(item)


def test_apply_overrides_does_not_mutate_input():
    data = {"optim": {"lr0": 1}}
    out = apply_overrides(data, ["optim.lr0=2", "new.deep.key=3"])
    assert data == {"optim": {"lr0": 1}}
    assert out == {"optim": {"lr0": 2}, "new": {"deep": {"key": 3}}}


def test_build_config_source_name_and_dump_round_trip():
    with pytest.raises(ConfigError, match="in manifest.json"):
        build_config(TrainCfg, {"x": 1}, "manifest.json")
    cfg = TrainCfg(epochs=2, heads={"a": Head(name="n")})
    assert build_config(TrainCfg, yaml.safe_load(dump_config(cfg))) == cfg


def test_closest_key():
    assert closest_key("lr_0", ["lr0", "momentum"]) == "lr0"
    assert closest_key("qqq", ["lr0", "momentum"]) is None
