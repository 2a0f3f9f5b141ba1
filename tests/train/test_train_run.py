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


def test_a_run_another_process_is_training_is_refused(tmp_path):
    """Two `train --run-id X` at once (a double launch, a retry script) wrote into one run directory: the
    second's resume truncated the first's metrics and both wrote last.pt. The second must stop in one line."""
    import subprocess
    import sys

    from edgekit.core.outdir import write_marker
    from edgekit.train.run import WRITER, plan_run

    run = RunDir.create(tmp_path / "runs", "busy")
    write_marker(run.root, WRITER)
    run.last.write_bytes(b"x")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDONLY); "
                               "fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(run.root)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match="is being trained by another edgekit process") as e:
            plan_run(run, True, [], lambda r: {})
        assert "\n" not in e.value.format() and run.last.read_bytes() == b"x"
    finally:
        holder.kill()
        holder.wait()
    assert plan_run(run, True, [], lambda r: {"epoch": 1}) == (True, {"epoch": 1})  # free again: resumes
    from edgekit.train.run import release_run

    release_run(run.root)  # the lock plan_run took is this process's: released, another process may take it
    probe = subprocess.run([sys.executable, "-c", "import fcntl, os, sys; fcntl.flock(os.open(sys.argv[1], os.O_RDONLY), "
                            "fcntl.LOCK_EX | fcntl.LOCK_NB)", str(run.root)])
    assert probe.returncode == 0
