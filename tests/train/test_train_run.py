"""The run contract helpers: directory layout, JSONL reports that survive a torn line, run_meta merging."""

from __future__ import annotations

import json

import pytest

from edgekit.core.errors import ConfigError
from edgekit.train.run import (
    RunDir,
    append_jsonl,
    keep_jsonl,
    new_run_id,
    read_jsonl,
    read_run_meta,
    update_run_meta,
)


def test_create_makes_the_contract_directories(tmp_path):
    run = RunDir.create(tmp_path / "runs", "exp1")
    assert run.root == (tmp_path / "runs" / "exp1").absolute()
    for d in (run.checkpoints, run.reports, run.signal_maps):
        assert d.is_dir()
    assert run.last.name == "last.pt" and run.best.parent == run.checkpoints
    assert run.config_resolved.name == "config_resolved.yaml" and run.run_meta.parent == run.reports


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x\\y", "../escape", "/abs/run", " x"])
def test_run_id_must_be_a_plain_name(tmp_path, bad):
    with pytest.raises(ConfigError, match="--run-id .* is not a plain directory name"):
        RunDir.create(tmp_path, bad)
    assert list(tmp_path.iterdir()) == []


def test_new_run_ids_are_unique():
    assert len({new_run_id() for _ in range(20)}) == 20


def test_jsonl_skips_a_torn_last_line_and_keep_filters(tmp_path):
    path = tmp_path / "m.jsonl"
    for e in range(3):
        append_jsonl(path, {"epoch": e, "loss": 1.0 / (e + 1)})
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"epoch": 3, "lo')  # what a kill -9 mid-write would leave
    assert [r["epoch"] for r in read_jsonl(path)] == [0, 1, 2]
    keep_jsonl(path, lambda r: r["epoch"] < 2)
    assert [r["epoch"] for r in read_jsonl(path)] == [0, 1]
    assert path.read_text().endswith("\n")


def test_run_meta_merges_dicts_one_level(tmp_path):
    run = RunDir.create(tmp_path, "r")
    update_run_meta(run, seed=1, stage_timings={"a": {"seconds": 1.0}})
    update_run_meta(run, stage_timings={"b": {"seconds": 2.0}})
    meta = read_run_meta(run)
    assert meta["seed"] == 1 and set(meta["stage_timings"]) == {"a", "b"}
    assert json.loads(run.run_meta.read_text())["stage_timings"]["b"]["seconds"] == 2.0
