"""The root command: fast help without heavy imports, one-line user errors, exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekit.cli.main import SUBCOMMANDS, cli

HEAVY = ("torch", "ultralytics", "timm", "onnxruntime", "onnx", "tensorrt", "cv2", "matplotlib")


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120)


def test_help_imports_no_heavy_framework():
    code = (
        "import sys\n"
        "from edgekit.cli.main import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_help_lists_every_stage():
    res = _run("--help")
    assert res.returncode == 0
    for name in SUBCOMMANDS:
        assert name in res.stdout


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_subcommand_has_help(name):
    res = CliRunner().invoke(cli, [name, "--help"])
    assert res.exit_code == 0, res.output
    assert "Usage:" in res.output


def test_unknown_command_is_usage_error_exit_2():
    res = _run("no-such-command")
    assert res.returncode == 2
    assert "No such command" in res.stderr


def test_version():
    res = _run("--version")
    assert res.returncode == 0 and "edgekit" in res.stdout


def test_user_error_is_one_line_exit_1(tmp_path):
    # A missing dataset is a user error: one line on stderr, no traceback, exit code 1.
    res = _run("data", "check", str(tmp_path / "missing"))
    assert res.returncode == 1, res.stderr
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    assert "Traceback" not in res.stderr
