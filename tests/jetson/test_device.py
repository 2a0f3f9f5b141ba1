"""The device probe's output, version and target checks, and remote command lines as data."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from edgekit import __version__
from edgekit.core.errors import DeviceError
from edgekit.jetson.device import (
    DeviceInfo,
    check_edgekit,
    check_target,
    parse_l4t,
    parse_probe,
    probe_script,
)
from edgekit.jetson.remote import RemoteOptions, bench_argv, build_argv, setup_commands

PROBE = f"""@@l4t
# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023
@@model
NVIDIA Jetson Xavier NX Developer Kit
@@tensorrt
8.5.2.2
@@jetpack
5.1.2-b104
@@edgekit
edgekit, version {__version__}
@@python
3.8.10
@@nvpmodel
NV Fan Mode:quiet
NV Power Mode: MODE_20W_6CORE
8
@@rsync
/usr/bin/rsync
@@end
"""


def test_parse_probe():
    info = parse_probe(PROBE)
    assert (info.l4t, info.l4t_major, info.tensorrt, info.jetpack) == ("35.4.1", 35, "8.5.2.2", "5.1.2")
    assert info.model == "NVIDIA Jetson Xavier NX Developer Kit" and info.edgekit == __version__
    assert info.power_mode.id == 8 and info.rsync and info.python == "3.8.10"


def test_probe_of_a_bare_machine():
    info = parse_probe("@@l4t\n@@model\n\n@@tensorrt\n@@edgekit\n@@nvpmodel\n@@rsync\n@@end\n")
    assert info == DeviceInfo()
    with pytest.raises(DeviceError, match="did not finish"):
        parse_probe("@@l4t\n")


def test_probe_script_runs_in_a_real_shell_without_any_jetson_tool(tmp_path):
    p = subprocess.run(["sh", "-c", probe_script(("no-such-edgekit",))], capture_output=True, text=True,
                       env={"PATH": "/usr/bin:/bin", "EDGEKIT_JETSON_ROOT": str(tmp_path)})
    assert p.returncode == 0 and parse_probe(p.stdout).edgekit is None
    assert "'no-such-edgekit' --version" in probe_script(("no-such-edgekit",)) or \
        "no-such-edgekit --version" in probe_script(("no-such-edgekit",))


def test_l4t_line():
    assert parse_l4t("# R32 (release), REVISION: 7.4, GCID: 1, BOARD: t210ref") == "32.7.4"
    assert parse_l4t("garbage") is None


def _info(**kw) -> DeviceInfo:
    base = dict(l4t="35.4.1", model="NVIDIA Jetson Xavier NX Developer Kit", tensorrt="8.5.2.2", edgekit=__version__)
    base.update(kw)
    return DeviceInfo(**base)


@pytest.mark.parametrize("info, target, backend, message", [
    (_info(tensorrt="8.6.1"), "jetson-xavier-nx", "tensorrt", "has TensorRT 8.6.1 but the bundle targets jetson-xavier-nx"),
    (_info(tensorrt="8.6.1"), "jetson-xavier-nx", "onnxruntime", "TensorRT 8.5.x"),
    (_info(l4t="32.7.4"), "jetson-xavier-nx", "tensorrt", "L4T R32.7.4"),
    (_info(l4t=None), "jetson-xavier-nx", "onnxruntime", "is not a Jetson"),
    (_info(tensorrt=None), None, "tensorrt", "has no TensorRT"),
])
def test_target_mismatch_is_one_line(info, target, backend, message):
    with pytest.raises(DeviceError, match=message) as e:
        check_target(info, target, backend, "nvidia@jet")
    assert "\n" not in e.value.format()


def test_matching_targets_pass():
    check_target(_info(), "jetson-xavier-nx", "tensorrt", "d")
    check_target(_info(tensorrt=None), "jetson-xavier-nx", "onnxruntime", "d")  # ORT needs no TensorRT
    check_target(_info(l4t=None, tensorrt=None), "x86", "onnxruntime", "d")


def test_edgekit_version_checks():
    check_edgekit(_info(), "d")
    with pytest.raises(DeviceError, match="edgekit is not installed on d"):
        check_edgekit(_info(edgekit=None), "d")
    with pytest.raises(DeviceError, match=f"d runs edgekit 0.0.1 but this host runs {__version__}"):
        check_edgekit(_info(edgekit="0.0.1"), "d")


def test_remote_edgekit_command_lines_are_data():
    opts = RemoteOptions.build(remote_edgekit="edgekit-venv/bin/python -m edgekit", environ={})
    assert opts.edgekit_cmd == ("edgekit-venv/bin/python", "-m", "edgekit") and opts.remote_dir == "~/edgekit"
    assert build_argv(opts.edgekit_cmd, "/r/b;x", ["--precision", "int8"]) == [
        "edgekit-venv/bin/python", "-m", "edgekit", "engine", "build", "/r/b;x", "--precision", "int8"]
    argv = bench_argv(("edgekit",), "/r/$(id)", "/r/runs/1/bench",
                      {"backend": "tensorrt", "precision": "int8", "iterations": 50, "warmup": 5, "parity": False},
                      progress=False)
    assert argv == ["edgekit", "bench", "/r/$(id)", "--backend", "tensorrt", "--device", "cuda", "--precision", "int8",
                    "--out", "/r/runs/1/bench", "--warmup", "5", "--iterations", "50", "--no-parity", "--no-progress"]
    assert bench_argv(("edgekit",), "/b", "/o", {"data": "/r/in/data/data.yaml"})[-2:] == ["--data", "/r/in/data/data.yaml"]
    env = RemoteOptions.build(environ={"EDGEKIT_JETSON_DIR": "/data/ek", "EDGEKIT_REMOTE_EDGEKIT": "ek"})
    assert (env.remote_dir, env.edgekit_cmd) == ("/data/ek", ("ek",))


def test_setup_commands():
    cmds = setup_commands("~/ev")
    assert cmds[0] == "python3 -m venv --system-site-packages ~/ev"
    assert "'numpy<1.24'" in cmds[1] and f"edgekit[trt]=={__version__}" in cmds[1]
    assert not any("torch" in c for c in cmds)
    assert shlex.split(cmds[1])[-1] == f"edgekit[trt]=={__version__}"
