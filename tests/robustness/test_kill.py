"""Debris: kill -9 at random points of `data synth`, `data convert` and `export`, then re-run.

The re-run must finish, and neither the output's parent nor the temp directory may keep anything
of the killed run (staging dirs are next to the target and cleaned by the next run; scratch lives
inside them, never in /tmp). Each command gets its own private TMPDIR so the check is exact.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from tests.robustness.conftest import cli_env, debris, make_dota, run_cli

SEEDS = (0, 1, 2)


@pytest.fixture(scope="module")
def big_base(tmp_path_factory) -> Path:
    """Enough images that synth and convert take long enough to be killed mid-way."""
    from edgekit.data.synth.obb import generate_obb_dataset

    return generate_obb_dataset(tmp_path_factory.mktemp("kill") / "big", n_train=60, n_val=4, imgsz=160, seed=3,
                                progress=False)


def _kill_during_staging(args: List[str], cwd: Path, window: float, rng: random.Random, env: Dict[str, str]) -> None:
    """Start the command, wait until its staging directory exists, then SIGKILL it a random time later
    (within ``window`` s): the kill lands while the half-built output exists, not before or after."""
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], cwd=str(cwd), env=cli_env(env),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and not any(cwd.glob(".edgekit-stage-*")):
        time.sleep(0.005)
    try:
        proc.wait(timeout=rng.uniform(0.0, window))
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


def _synth(tmp: Path, base: Path, obb_pt: Path) -> Tuple[List[str], float, Path]:
    return (["data", "synth", "obb", "--out", str(tmp / "out"), "--n-train", "80", "--n-val", "4", "--imgsz", "160"],
            0.5, tmp / "out" / "data.yaml")


def _convert(tmp: Path, base: Path, obb_pt: Path) -> Tuple[List[str], float, Path]:
    dota = tmp / "dota"
    if not dota.exists():
        make_dota(dota, base)
    return (["data", "convert", "--from", "dota", "--to", "yolo-obb", str(dota), str(tmp / "out"), "--overwrite"],
            0.15, tmp / "out" / "data.yaml")


def _export(tmp: Path, base: Path, obb_pt: Path) -> Tuple[List[str], float, Path]:
    return (["export", str(obb_pt), "--imgsz", "160", "--calib-data", str(base / "images" / "val"), "--out",
             str(tmp / "out"), "--quiet"], 2.5, tmp / "out" / "manifest.json")


def _export_int8(tmp: Path, base: Path, obb_pt: Path) -> Tuple[List[str], float, Path]:
    return (["export", str(obb_pt), "--imgsz", "160", "--int8", "--calib-size", "8", "--calib-data",
             str(base / "images" / "train"), "--out", str(tmp / "out"), "--quiet"], 8.0, tmp / "out" / "manifest.json")


COMMANDS: Dict[str, Callable[[Path, Path, Path], Tuple[List[str], float, Path]]] = {
    "data synth": _synth, "data convert": _convert, "export": _export, "export --int8": _export_int8,
}


@pytest.mark.parametrize("command", [*COMMANDS][:3] + [pytest.param("export --int8", marks=pytest.mark.slow)])
def test_kill_9_then_rerun_finishes_and_leaves_no_debris(tmp_path: Path, tmp_path_factory, big_base: Path,
                                                         obb_pt: Path, command: str) -> None:
    scratch = tmp_path_factory.mktemp("tmpdir")
    env = {"TMPDIR": str(scratch)}
    for seed in SEEDS:
        args, window, product = COMMANDS[command](tmp_path, big_base, obb_pt)
        _kill_during_staging(args, tmp_path, window, random.Random(seed), env)
        if os.environ.get("EDGEKIT_SHOW_KILLS"):  # where the kills landed (a manual check of the test's reach)
            print(command, seed, debris(tmp_path), sorted(p.name for p in scratch.iterdir()))
        res = run_cli(args, cwd=tmp_path, env=env)
        assert res.rc == 0, f"seed {seed}: {res.stderr[-2000:]}"
        assert product.is_file()
        assert debris(tmp_path) == [], f"seed {seed}"
        assert [p.name for p in scratch.iterdir() if "edgekit" in p.name] == [], f"seed {seed}"
    if command.startswith("export"):
        from edgekit.core.manifest import load_manifest, verify_bundle_files

        verify_bundle_files(tmp_path / "out", load_manifest(tmp_path / "out"))


TRAIN = ["imgsz=64", "batch=2", "workers=0", "device=cpu", "amp=false", "mosaic=0", "teacher.weights=random",
         "teacher.model_kwargs={embed_dim: 32, depth: 2, num_heads: 2}", "logging.wandb=disabled",
         "stages.a.epochs=2", "stages.b.epochs=1"]


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow), pytest.param(2, marks=pytest.mark.slow)])
def test_kill_9_during_training_then_resume_finishes_once_per_epoch(tmp_path: Path, base_dataset: Path,
                                                                    seed: int) -> None:
    """Kill `train obb` at a random moment, then `--resume` (or start again when no run exists yet):
    it finishes, every epoch is reported once, one final row per stage, no temporaries left."""
    import json

    args = ["train", "obb", "--run-id", "k", f"data={base_dataset}", f"project={tmp_path / 'runs'}", *TRAIN]
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", *args], cwd=str(tmp_path), env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=random.Random(seed).uniform(3.0, 12.0))  # the whole run takes ~15 s here
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    run = tmp_path / "runs" / "k"
    if os.environ.get("EDGEKIT_SHOW_KILLS"):
        print("train", seed, proc.returncode, sorted(p.name for p in (run / "checkpoints").glob("*")))
    again = ["train", "obb", "--run-id", "k", "--resume", f"project={tmp_path / 'runs'}"] \
        if (run / "reports" / "config_resolved.yaml").is_file() else args
    res = run_cli(again, cwd=tmp_path, timeout=300)
    assert res.rc == 0, res.stderr[-3000:]
    train = [json.loads(x) for x in (run / "reports" / "train_metrics.jsonl").read_text().splitlines()]
    val = [json.loads(x) for x in (run / "reports" / "val_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in train] == [0, 1, 2]
    assert [r["epoch"] for r in val if not r.get("final")] == [0, 1, 2]
    assert [(r["stage"], r["epoch"]) for r in val if r.get("final")] == [("a", 1), ("b", 2)]
    assert debris(tmp_path) == []


def _children(pid: int) -> List[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/status")
    return not (status.exists() and "\nState:\tZ" in status.read_text())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc and ps --ppid")
@pytest.mark.parametrize("kind, big, small", [
    ("obb", ["--n-train", "3000", "--n-val", "4", "--imgsz", "160"], ["--n-train", "2", "--n-val", "1", "--imgsz", "64"]),
    ("refdet", ["--n-train", "200", "--n-test", "1", "--frames", "30", "--imgsz", "128"],
     ["--n-train", "1", "--n-test", "1", "--frames", "2", "--imgsz", "64"]),
])
def test_kill_9_of_synth_with_workers_leaves_no_orphan_workers(tmp_path: Path, kind: str, big: List[str],
                                                              small: List[str]) -> None:
    """Pool workers re-parented to init must not keep rendering (or block forever) once their parent died."""
    proc = subprocess.Popen([sys.executable, "-m", "edgekit", "data", "synth", kind, "--out", str(tmp_path / "out"),
                             *big, "--workers", "2"], cwd=str(tmp_path), env=cli_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: List[int] = []
    deadline = time.monotonic() + 60
    while proc.poll() is None and time.monotonic() < deadline and len(workers) < 2:
        workers = _children(proc.pid)
        time.sleep(0.05)
    assert proc.poll() is None and len(workers) >= 2, "the pool never started"
    time.sleep(0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in workers):
        time.sleep(0.1)
    survivors = [p for p in workers if _alive(p)]
    for p in survivors:  # do not leak them into the rest of the suite
        os.kill(p, signal.SIGKILL)
    assert survivors == []
    res = run_cli(["data", "synth", kind, "--out", tmp_path / "out", *small, "--workers", "2"], cwd=tmp_path)
    assert res.rc == 0, res.stderr
    assert debris(tmp_path) == []
