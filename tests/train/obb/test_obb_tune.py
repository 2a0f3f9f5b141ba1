"""edgekit tune obb: space validation, a 2-trial study whose best.yaml trains, kill -9 then resume."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from edgekit.core.errors import ConfigError
from edgekit.train.obb.tune import load_space

optuna = pytest.importorskip("optuna")

SPACE = {"metric": "metrics/mAP50(B)", "seed": 0, "pruner": {"type": "median", "n_startup_trials": 1},
         "params": {"stages.a.lr0": {"type": "float", "low": 0.001, "high": 0.01, "log": True},
                    "distillation.bg_weight": {"type": "float", "low": 0.0, "high": 0.5},
                    "optimizer": {"type": "categorical", "choices": ["AdamW", "SGD"]}}}


def _space(tmp_path: Path, data=SPACE) -> Path:
    p = tmp_path / "space.yaml"
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("params, match", [
    ({"stages.a.lr0": {"type": "float", "low": 1, "high": 0.1}}, "low < high"),
    ({"stages.a.lr0": {"type": "float", "low": 0, "high": 0.1, "log": True}}, "log=true needs low > 0"),
    ({"optimizer": {"type": "categorical"}}, "choices"),
    ({"stages.a.lr0": {"type": "float", "low": 0.1, "high": 1, "choices": [1]}}, "choices"),
    ({"stages.a.lr0": {"type": "floot", "low": 0.1, "high": 1}}, "params.stages.a.lr0.type"),
    ({"distillation.wieght": {"type": "float", "low": 0.1, "high": 1}}, "params.distillation.wieght"),
    ({"stages.z.lr0": {"type": "float", "low": 0.1, "high": 1}}, "no stage named 'z'"),
])
def test_bad_space_fails_in_one_line_naming_the_key(tmp_path, obb_dataset, params, match):
    base = tmp_path / "base.yaml"
    base.write_text(f"data: {obb_dataset}\n")
    with pytest.raises(ConfigError, match=match) as e:
        load_space(_space(tmp_path, {"params": params}), base)
    assert "\n" not in e.value.format()


def test_example_space_loads(obb_dataset, tmp_path):
    base = tmp_path / "base.yaml"
    base.write_text(f"data: {obb_dataset}\n")
    space = load_space(Path(__file__).parents[3] / "configs" / "tune_space.yaml", base)
    assert "distillation.weight" in space.params


def _tune_cmd(tmp_path, tiny_overrides, trials, heartbeat=30):
    return [sys.executable, "-m", "edgekit", "tune", "obb", "--space", str(_space(tmp_path)), "--trials", str(trials),
            "--study", "s1", "--heartbeat", str(heartbeat), *tiny_overrides]


def _trials(tmp_path):
    con = sqlite3.connect(str(tmp_path / "runs" / "s1" / "study.db"))
    try:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()
    finally:
        con.close()


def test_two_trials_then_best_yaml_trains(tmp_path, tiny_overrides):
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    res = subprocess.run(_tune_cmd(tmp_path, tiny_overrides, 2), env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    sdir = tmp_path / "runs" / "s1"
    assert _trials(tmp_path) == [(0, "COMPLETE"), (1, "COMPLETE")]
    for n in (0, 1):
        assert (sdir / f"trial{n:04d}" / "checkpoints" / "best.pt").is_file()  # each trial is a normal run
    best = yaml.safe_load((sdir / "best.yaml").read_text())
    assert best["project"] == str(tmp_path / "runs") and best["optimizer"] in ("AdamW", "SGD")
    assert (sdir / "history.png").is_file()
    assert "best_yaml:" in res.stdout
    # best.yaml is a ready --config for train obb
    train = subprocess.run([sys.executable, "-m", "edgekit", "train", "obb", "--config", str(sdir / "best.yaml"),
                            "--run-id", "from-best"], env=env, capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-3000:]
    assert (tmp_path / "runs" / "from-best" / "checkpoints" / "best.pt").is_file()


def test_kill_9_then_resume_reruns_the_killed_trial_once(tmp_path, tiny_overrides):
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = _tune_cmd(tmp_path, tiny_overrides, 2, heartbeat=1)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    started = tmp_path / "runs" / "s1" / "trial0001" / "checkpoints" / "last.pt"  # trial 1 mid-run (after stage A)
    deadline = time.time() + 240
    while not started.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert _trials(tmp_path) == [(0, "COMPLETE"), (1, "RUNNING")]
    time.sleep(3.5)  # past the grace period (3 heartbeats): trial 1 is now stale
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    assert _trials(tmp_path) == [(0, "COMPLETE"), (1, "FAIL"), (2, "COMPLETE")]
    st = optuna.load_study(study_name="s1", storage=f"sqlite:///{tmp_path / 'runs' / 's1' / 'study.db'}")
    t1, t2 = st.trials[1], st.trials[2]
    assert t2.params == t1.params  # the killed trial's parameters were rerun, once
    assert (tmp_path / "runs" / "s1" / "best.yaml").is_file()


@pytest.mark.slow
def test_two_workers_share_one_storage(tmp_path, tiny_overrides):
    """--n-jobs 2: two processes on one SQLite study run the 2 trials between them, none twice."""
    env = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}
    cmd = [*_tune_cmd(tmp_path, tiny_overrides, 2)]
    cmd[cmd.index("--trials"):cmd.index("--trials")] = ["--n-jobs", "2"]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert res.returncode == 0, res.stderr[-3000:]
    trials = _trials(tmp_path)
    done = [n for n, state in trials if state == "COMPLETE"]
    assert len(done) >= 2 and all(state in ("COMPLETE", "PRUNED") for _, state in trials)
    assert {p.name for p in (tmp_path / "runs" / "s1").glob("trial*")} == {f"trial{n:04d}" for n, _ in trials}
    assert (tmp_path / "runs" / "s1" / "best.yaml").is_file()
