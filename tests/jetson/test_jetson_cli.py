"""`edgekit jetson ...` through the real root command: help, info over the loopback sshd, exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli

SUBS = ["info", "push", "build", "bench", "setup"]


@pytest.mark.parametrize("sub", SUBS)
def test_every_jetson_subcommand_has_help(sub):
    r = CliRunner().invoke(cli, ["jetson", sub, "--help"])
    assert r.exit_code == 0 and "--ssh-option" in r.output and "HOST" in r.output


def _main(*args, env=None):
    """The console entry point in a subprocess: exit codes and stderr as a user sees them."""
    import os

    e = dict(os.environ, **(env or {}))
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, env=e, timeout=60)


def test_info_over_ssh_config(device):
    p = _main("jetson", "info", device.host, "--ssh-config", str(device.ssh_config), "--json")
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["l4t"] == "35.4.1" and info["power_mode"] == {"id": 2, "name": "15W_6CORE"}


def test_ssh_settings_from_the_environment(device):
    p = _main("jetson", "info", device.host, env={"EDGEKIT_SSH_CONFIG": str(device.ssh_config),
                                                  "EDGEKIT_SSH_OPTS": f"UserKnownHostsFile={device.bad_known_hosts}"})
    assert p.returncode == 1 and p.stderr.count("\n") == 1 and "does not match" in p.stderr and "Traceback" not in p.stderr


def test_push_with_scp_prints_the_remote_path(device, tmp_path):
    from tests.deploy.bundles import write_test_bundle

    pytest.importorskip("onnx")
    b = write_test_bundle(tmp_path / "cli b")
    p = _main("jetson", "push", device.host, str(b), "--scp", "--ssh-config", str(device.ssh_config))
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().endswith("/edgekit/bundles/cli b") and "(scp)" in p.stderr
    assert (device.home / "edgekit" / "bundles" / "cli b" / "manifest.json").is_file()


def test_bench_command_wires_its_options(device, tmp_path):
    from tests.deploy.bundles import write_test_bundle

    pytest.importorskip("onnx")
    b = write_test_bundle(tmp_path / "b")
    out = tmp_path / "out"
    p = _main("jetson", "bench", device.host, str(b), "--backend", "onnxruntime", "--precision", "fp32",
              "--iterations", "3", "--power-mode", "7", "--jetson-clocks", "--interval-ms", "40", "--out", str(out),
              "--remote-edgekit", "edgekit-standin", "--ssh-config", str(device.ssh_config))
    assert p.returncode == 0, p.stderr
    argv = json.loads((out / "bench.json").read_text())["argv"]
    assert argv[argv.index("--iterations") + 1] == "3" and argv[argv.index("--backend") + 1] == "onnxruntime"
    calls = device.calls()
    assert "sudo -n nvpmodel -m 7" in calls and "sudo -n jetson_clocks" in calls
    assert any(c.startswith("tegrastats --interval 40 ") for c in calls)
    assert "energy per frame" in p.stdout


def test_refused_ssh_option_and_bad_host_are_one_line():
    p = _main("jetson", "info", "root@h", "--ssh-option", "StrictHostKeyChecking=no")
    assert p.returncode == 1 and "never does" in p.stderr and p.stderr.count("\n") == 1
    p = _main("jetson", "info", "-oProxyCommand=touch_x")
    assert p.returncode != 0 and "Traceback" not in p.stderr


def test_setup_prints_the_device_recipe():
    r = CliRunner().invoke(cli, ["jetson", "setup", "nvidia@jet"])
    assert r.exit_code == 0
    assert "--system-site-packages" in r.output and "numpy<1.24" in r.output and "torch" not in r.output
