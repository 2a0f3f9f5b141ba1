"""The remote path over a real sshd on 127.0.0.1, against a fake Jetson (Python 3.8, no torch).

Every failure mode ends as one line with exit 1, and a failed or interrupted push leaves no
staging directory and no half bundle on the device.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from edgekit import __version__
from edgekit.core.errors import DeviceError
from edgekit.jetson import Device, RemoteOptions, SshConfig
from edgekit.jetson.remote import STAGING_PREFIX
from edgekit.jetson.ssh import run_argv
from tests.deploy.bundles import write_test_bundle
from tests.jetson.fake_device import FAKE_VDD_IN_MW

pytest.importorskip("onnx")  # the test bundle is a real ONNX graph written here


def _dev(lb, *options, remote_edgekit=None, scp=False, runner=run_argv) -> Device:
    cfg = SshConfig.build(lb.host, options, config_file=str(lb.ssh_config), connect_timeout=5, environ={})
    return Device(cfg, RemoteOptions.build(remote_edgekit=remote_edgekit, use_rsync=not scp, environ={}), runner)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return write_test_bundle(tmp_path_factory.mktemp("b") / "a b;touch x$(id)")  # a hostile but legal name


def _bundles(lb) -> Path:
    return lb.home / "edgekit" / "bundles"


def _leftovers(lb):
    return sorted(p.name for p in _bundles(lb).iterdir() if p.name.startswith(STAGING_PREFIX)) \
        if _bundles(lb).exists() else []


def test_info_reads_the_device(device):
    info = _dev(device).info()
    assert (info.l4t, info.model) == ("35.4.1", "NVIDIA Jetson Xavier NX Developer Kit")
    assert info.edgekit == __version__ and info.python.startswith("3.8.") and info.tensorrt is None
    assert info.power_mode.id == 2 and info.power_mode.name == "15W_6CORE" and info.rsync
    assert device.calls() == ["nvpmodel -q"]


@pytest.mark.parametrize("scp", [False, True], ids=["rsync", "scp"])
def test_push_with_a_hostile_name_lands_whole_and_literal(device, bundle, scp):
    remote = _dev(device, scp=scp).push(bundle)
    landed = _bundles(device) / bundle.name
    assert remote == f"{_bundles(device).resolve()}/{bundle.name}" and (landed / "manifest.json").is_file()
    assert sorted(p.name for p in landed.rglob("*")) == sorted(p.name for p in bundle.rglob("*"))
    assert not (device.home / "x").exists() and not Path("x").exists() and _leftovers(device) == []


def test_repush_keeps_engines_built_on_the_device(device, bundle):
    dev = _dev(device)
    dev.push(bundle)
    engines = _bundles(device) / bundle.name / "engines"
    engines.mkdir(exist_ok=True)
    (engines / "k.engine").write_bytes(b"e")
    dev.push(bundle)
    assert (engines / "k.engine").read_bytes() == b"e" and _leftovers(device) == []


def test_push_never_replaces_what_edgekit_did_not_write(device, tmp_path):
    b = write_test_bundle(tmp_path / "mine")
    foreign = _bundles(device) / "mine"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("user data")
    with pytest.raises(DeviceError, match="exists and is not an edgekit bundle"):
        _dev(device).push(b)
    assert (foreign / "notes.txt").read_text() == "user data" and _leftovers(device) == []


def test_interrupted_push_leaves_nothing_half_pushed(device, tmp_path):
    b = write_test_bundle(tmp_path / "interrupted")

    def ctrl_c_after_the_copy(argv, **kw):
        p = run_argv(argv, **kw)
        if argv[0] in ("rsync", "scp"):
            assert _leftovers(device)  # the staged copy exists on the device now...
            raise KeyboardInterrupt
        return p

    with pytest.raises(KeyboardInterrupt):
        _dev(device, runner=ctrl_c_after_the_copy).push(b)
    assert _leftovers(device) == [] and not (_bundles(device) / "interrupted").exists()  # ...and is gone


def test_wrong_or_corrupt_bundle_is_refused_before_anything_is_copied(device, tmp_path):
    from edgekit.core.errors import ModelError

    with pytest.raises(ModelError, match="does not exist"):
        _dev(device).push(tmp_path / "nope")
    b = write_test_bundle(tmp_path / "corrupt")
    data = bytearray((b / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (b / "model.onnx").write_bytes(bytes(data))
    with pytest.raises(ModelError, match="model.onnx does not match its sha256"):
        _dev(device).push(b)
    assert not (_bundles(device) / "corrupt").exists() and _leftovers(device) == []


@pytest.mark.parametrize("case, message", [
    ("closed port", "is unreachable"),
    ("host key mismatch", "does not match the one in"),
    ("unknown host key", "is not in"),
    ("no edgekit", "edgekit is not installed on"),
    ("other version", f"runs edgekit 0.0.1 but this host runs {__version__}"),
    ("trt mismatch", "has TensorRT 8.6.1 but the bundle targets jetson-xavier-nx"),
])
def test_bad_device_is_one_clear_line(device, tmp_path, case, message):
    port = device.port
    opts, edgekit_cmd = [], None
    if case == "closed port":
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]  # nothing listens there once closed
    elif case == "host key mismatch":
        opts = [f"UserKnownHostsFile={device.bad_known_hosts}"]
    elif case == "unknown host key":
        opts = [f"UserKnownHostsFile={tmp_path / 'empty_known_hosts'}"]
    elif case == "no edgekit":
        edgekit_cmd = "no-such-edgekit"
    elif case == "other version":
        edgekit_cmd = "edgekit-old"
    elif case == "trt mismatch":
        (device.site / "tensorrt").mkdir()
        (device.site / "tensorrt" / "__init__.py").write_text("__version__ = '8.6.1'\n")
    b = write_test_bundle(tmp_path / "b")
    _set_target(b, "jetson-xavier-nx")
    cfg = SshConfig.build(f"root@127.0.0.1:{port}", opts, config_file=str(device.ssh_config), connect_timeout=5,
                          environ={})
    dev = Device(cfg, RemoteOptions.build(remote_edgekit=edgekit_cmd, environ={}))
    with pytest.raises(DeviceError, match=message) as e:
        dev.check("jetson-xavier-nx", "onnxruntime")
        dev.push(b)
    assert "\n" not in e.value.format() and _leftovers(device) == []
    if case == "host key mismatch":
        assert f"ssh-keygen -f {device.bad_known_hosts} -R '[127.0.0.1]:{port}'" in e.value.format()
    if case == "unknown host key":
        assert f"ssh-keyscan -p {port} 127.0.0.1 >> {tmp_path / 'empty_known_hosts'}" in e.value.format()


def _set_target(bundle: Path, target: str) -> None:
    m = json.loads((bundle / "manifest.json").read_text())
    m["target"] = target
    (bundle / "manifest.json").write_text(json.dumps(m))


def test_no_sudo_for_nvpmodel_is_one_line_and_nothing_is_changed(device, bundle, tmp_path):
    (device.root / "no_sudo").write_text("")
    dev = _dev(device, remote_edgekit="edgekit-standin")
    from edgekit.jetson.remote import run_bench

    with pytest.raises(DeviceError, match="nvpmodel needs root on root@127.0.0.1") as e:
        run_bench(dev, bundle, tmp_path / "out", {"backend": "onnxruntime"}, power_mode=8)
    assert "NOPASSWD" in e.value.format() and not (tmp_path / "out").exists()
    assert (device.root / "nvpmodel.mode").read_text().strip() == "2"


def test_build_runs_engine_build_there_and_its_failure_is_one_line(device, bundle):
    dev = _dev(device)
    with pytest.raises(DeviceError, match="has no TensorRT"):  # refused before anything is pushed
        dev.build(bundle, ["--precision", "fp16"])
    seen = []

    def record(argv, **kw):
        seen.append(argv)
        return run_argv(argv, **kw)

    (device.site / "tensorrt").mkdir()
    (device.site / "tensorrt" / "__init__.py").write_text("__version__ = '8.5.2.2'\n")
    dev = _dev(device, runner=record)
    with pytest.raises(DeviceError, match="engine build on root@127.0.0.1.* failed") as e:
        dev.build(bundle, ["--precision", "fp16"])
    # the device's own one-line reason comes back in ours (here: the fake tensorrt module is no TensorRT)
    assert "\n" not in e.value.format() and "TensorRT is not importable" in e.value.format()
    last = seen[-1][-1]
    assert last.startswith("edgekit engine build ") and last.endswith(" --precision fp16")
    assert f"'{_bundles(device).resolve()}/{bundle.name}'" in last  # the hostile name, quoted


def test_bench_with_a_stand_in_and_power_mode_restored(device, bundle, tmp_path, capsys):
    """The remote flow (push, power mode, tegrastats, bench, pull, energy) with a stand-in `edgekit bench`."""
    from edgekit.jetson.remote import run_bench

    out = tmp_path / "out"
    report = run_bench(_dev(device, remote_edgekit="edgekit-standin"), bundle, out,
                       {"backend": "onnxruntime", "iterations": 10}, power_mode=8, jetson_clocks=True, interval_ms=50)
    calls = device.calls()
    run_dir = str(json.loads((out / "bench.json").read_text())["argv"][-3]).rsplit("/", 1)[0]
    assert [c for c in calls if c.startswith("sudo")] == [  # (the fake sudo runs the tool, which records too)
        f"sudo -n jetson_clocks --store {run_dir}/clocks.conf", "sudo -n nvpmodel -m 8", "sudo -n jetson_clocks",
        "sudo -n nvpmodel -m 2", f"sudo -n jetson_clocks --restore {run_dir}/clocks.conf"]
    tegra = calls.index(f"tegrastats --interval 50 --logfile {run_dir}/tegrastats.log")
    assert calls.index("sudo -n jetson_clocks") < tegra < calls.index("sudo -n nvpmodel -m 2")  # sampled in the mode
    assert (device.root / "nvpmodel.mode").read_text().strip() == "2"
    power = report["power"]
    assert power["available"] and power["rail"] == "VDD_IN"
    w = report["throughput"]["pipelined"]
    assert power["energy_per_frame_mj"] == pytest.approx(FAKE_VDD_IN_MW * (w["end_unix"] - w["start_unix"]) / 10)
    assert power["power_mode"]["benched"]["id"] == 8 and power["power_mode"]["previous"]["id"] == 2
    assert (out / "power.json").is_file() and "energy per frame" in (out / "bench.md").read_text()
    assert report["environment"]["device"]["l4t"] == "35.4.1"
    assert "\rpipelined 10/10" in capsys.readouterr().err  # the device's progress, streamed as it came


def _gone(pid: int) -> bool:
    try:  # a zombie (killed, not reaped by the adopting init) counts as stopped
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def test_interrupted_bench_stops_it_there_and_restores_the_device(device, bundle, tmp_path):
    """The local ssh dies mid-bench (Ctrl-C, or here a timeout): the remote bench and tegrastats are
    stopped, the power mode is restored, nothing is written locally."""
    import subprocess

    from edgekit.jetson.remote import run_bench

    def interrupt_the_bench(argv, **kw):
        if "bench.pid" in argv[-1]:
            kw["timeout"] = 3
        return run_argv(argv, **kw)

    out = tmp_path / "out"
    with pytest.raises(subprocess.TimeoutExpired):
        run_bench(_dev(device, remote_edgekit="edgekit-standin", runner=interrupt_the_bench), bundle, out,
                  {"backend": "onnxruntime", "iterations": 1000}, power_mode=8, interval_ms=50,
                  progress=False)  # silent: it would not even die of a broken pipe
    pid_file = next((device.home / "edgekit" / "runs").glob("*/bench.pid"))
    assert _gone(int(pid_file.read_text()))
    assert _gone(int((device.root / "tegrastats.running").read_text()))
    assert (device.root / "nvpmodel.mode").read_text().strip() == "2" and not out.exists()


needs_bench = pytest.mark.skipif(importlib.util.find_spec("edgekit.bench") is None,
                                 reason="edgekit.bench (the `edgekit bench` stage) is not in this checkout yet")


def _tiny_obb_dataset(root: Path) -> Path:
    """A YOLO-OBB val split of 3 images whose labels overlap the test bundle's constant box."""
    import cv2
    import numpy as np

    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "data.yaml").write_text("names: [a, b]\nval: images/val\n")
    corners = "0.37 0.35 0.63 0.35 0.63 0.65 0.37 0.65"
    for i, label in enumerate([f"0 {corners}", f"1 {corners}", ""]):
        cv2.imwrite(str(root / "images" / "val" / f"im{i}.jpg"), np.full((64, 64, 3), 40 * i, np.uint8))
        (root / "labels" / "val" / f"im{i}.txt").write_text(label + "\n" if label else "")
    return root


@needs_bench
def test_edgekit_bench_device_jetson_end_to_end(device, tmp_path, monkeypatch):
    """`edgekit bench --device jetson --host root@127.0.0.1:PORT` with the real bench on the Python 3.8,
    numpy<1.24, no-torch device: the report comes back with energy per frame, and its parity and mAP
    equal the host's own `edgekit bench` of the same bundle (ONNX Runtime on both)."""
    from click.testing import CliRunner

    from edgekit.cli.main import cli

    b = write_test_bundle(tmp_path / "e2e")
    data = _tiny_obb_dataset(tmp_path / "data")
    common = ["--backend", "onnxruntime", "--iterations", "20", "--warmup", "2", "--data", str(data), "--no-progress"]
    host = CliRunner().invoke(cli, ["bench", str(b), *common, "--out", str(tmp_path / "host"), "--no-plots"])
    assert host.exit_code == 0, host.output
    monkeypatch.setenv("EDGEKIT_SSH_CONFIG", str(device.ssh_config))
    out = tmp_path / "out"
    r = CliRunner().invoke(cli, ["bench", str(b), "--device", "jetson", "--host", device.host, *common,
                                 "--out", str(out), "--json"])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "bench.json").read_text())
    here = json.loads((tmp_path / "host" / "bench.json").read_text())
    assert report["settings"]["backend"] == "onnxruntime"
    assert report["environment"]["device"]["python"].startswith("3.8.")
    assert report["environment"]["versions"]["numpy"] < "1.24" and "torch" not in report["environment"]["versions"]
    # parity against the bundle's golden outputs, on the device (core's parity check, when this checkout has it)
    has_parity = importlib.util.find_spec("edgekit.core.parity") is not None
    assert report["parity"]["status"] == here["parity"]["status"] == ("passed" if has_parity else "skipped")
    assert report["accuracy"]["n_images"] == here["accuracy"]["n_images"] == 3
    assert report["accuracy"]["map50"] == pytest.approx(here["accuracy"]["map50"], abs=1e-9)
    assert report["accuracy"]["map50_95"] == pytest.approx(here["accuracy"]["map50_95"], abs=1e-9)
    assert report["power"]["available"] and report["power"]["energy_per_frame_mj"] > 0
    assert any(c.startswith("tegrastats --interval") for c in device.calls())
    assert (out / "power.json").is_file() and "Power (tegrastats on the device)" in (out / "bench.md").read_text()


def test_results_directory_policy(device, bundle, tmp_path):
    """--out: a directory holding the user's files is refused before anything runs on the device; an
    earlier bench result is replaced whole."""
    from edgekit.core.errors import DataError
    from edgekit.jetson.remote import run_bench

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match="--out"):
        run_bench(_dev(device, remote_edgekit="edgekit-standin"), bundle, foreign, {"iterations": 2})
    assert (foreign / "notes.txt").read_text() == "keep" and device.calls() == []
    out = tmp_path / "out"
    for _ in range(2):
        run_bench(_dev(device, remote_edgekit="edgekit-standin"), bundle, out, {"iterations": 2}, interval_ms=50)
    assert sorted(p.name for p in out.iterdir()) == [".edgekit-output.json", "bench.json", "bench.md", "power.json"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".edgekit-stage")] == []
