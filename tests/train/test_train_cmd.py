"""``edgekit train obb``: help, and config errors as one line with exit 1 before any training starts."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120)


def test_train_obb_help_lists_options():
    res = _run("train", "obb", "--help")
    assert res.returncode == 0
    for opt in ("--config", "--run-id", "--resume", "OVERRIDES"):
        assert opt in res.stdout


@pytest.mark.parametrize("args, message", [
    (["data=/d", "imgsz_=3"], "unknown key 'imgsz_' in overrides; did you mean 'imgsz'?"),
    (["--config", "/nonexistent.yaml"], "does not exist"),
    (["data=/nonexistent/ds", "--run-id", "x"], "data.yaml does not exist"),
    (["data=/d", "--resume"], "--resume needs the run"),
])
def test_config_errors_are_one_line_exit_1(tmp_path, args, message):
    res = _run("train", "obb", *args, f"project={tmp_path}")
    assert res.returncode == 1, res.stderr
    assert message in res.stderr and "Traceback" not in res.stderr
    assert not list(tmp_path.iterdir())  # no run directory is left behind
