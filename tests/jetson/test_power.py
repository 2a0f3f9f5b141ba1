"""nvpmodel/jetson_clocks command lines as data, and the restore on failure, Ctrl-C and SIGTERM."""

from __future__ import annotations

import os
import signal

import pytest

from edgekit.core.errors import DeviceError
from edgekit.jetson.power import (
    PowerMode,
    PowerSession,
    Terminated,
    jetson_clocks_argv,
    jetson_clocks_restore_argv,
    jetson_clocks_store_argv,
    nvpmodel_query_argv,
    nvpmodel_set_argv,
    parse_nvpmodel_query,
)

QUERY_JP5 = "NV Fan Mode:quiet\nNV Power Mode: MODE_15W_6CORE\n2\n"


def test_command_lines():
    assert nvpmodel_query_argv() == ["nvpmodel", "-q"]
    assert nvpmodel_set_argv(8) == ["sudo", "-n", "nvpmodel", "-m", "8"]
    assert jetson_clocks_store_argv("/r/c.conf") == ["sudo", "-n", "jetson_clocks", "--store", "/r/c.conf"]
    assert jetson_clocks_argv() == ["sudo", "-n", "jetson_clocks"]
    assert jetson_clocks_restore_argv("/r/c.conf") == ["sudo", "-n", "jetson_clocks", "--restore", "/r/c.conf"]


@pytest.mark.parametrize("text, mode", [
    (QUERY_JP5, PowerMode(2, "15W_6CORE")),
    ("NV Power Mode: MODE_20W_6CORE\n8", PowerMode(8, "20W_6CORE")),
    ("NV Power Mode: MODE_10W\n1\n", PowerMode(1, "10W")),
])
def test_parse_query(text, mode):
    assert parse_nvpmodel_query(text) == mode


def test_parse_query_garbage_is_one_line():
    with pytest.raises(DeviceError, match="cannot read the power mode"):
        parse_nvpmodel_query("NVPM ERROR: failed")


class FakeDevice:
    """Records argv; ``fail`` maps a command line to (rc, stdout, stderr); ``mode`` follows nvpmodel -m."""

    def __init__(self, fail=None, mode=2):
        self.calls, self.fail, self.mode = [], fail or {}, mode

    def __call__(self, argv):
        self.calls.append(list(argv))
        if " ".join(argv) in self.fail:
            return self.fail[" ".join(argv)]
        if argv == ["nvpmodel", "-q"]:
            return 0, f"NV Power Mode: MODE_X\n{self.mode}\n", ""
        if argv[2:4] == ["nvpmodel", "-m"]:
            self.mode = int(argv[4])
        return 0, "", ""


def test_session_sets_then_restores_in_order():
    dev = FakeDevice()
    with PowerSession(dev, mode=8, clocks=True, store_file="/r/c").session() as s:
        assert dev.mode == 8 and s.previous == PowerMode(2, "X") and s.applied == PowerMode(8, "X")
    assert dev.calls == [
        ["nvpmodel", "-q"], jetson_clocks_store_argv("/r/c"), nvpmodel_set_argv(8), jetson_clocks_argv(),
        ["nvpmodel", "-q"],
        nvpmodel_set_argv(2), jetson_clocks_restore_argv("/r/c"),  # mode first (it resets clocks), then clocks
    ]
    assert dev.mode == 2


def test_nothing_asked_nothing_run():
    dev = FakeDevice()
    with PowerSession(dev).session():
        pass
    assert dev.calls == []


def test_same_mode_is_not_set_nor_restored():
    dev = FakeDevice(mode=8)
    with PowerSession(dev, mode=8).session():
        pass
    assert not any("-m" in c for c in dev.calls)


@pytest.mark.parametrize("exc", [RuntimeError("bench crashed"), KeyboardInterrupt(), DeviceError("x")])
def test_restored_when_the_block_fails(exc):
    dev = FakeDevice()
    with pytest.raises(type(exc)), PowerSession(dev, mode=0, clocks=True, store_file="/c").session():
        raise exc
    assert dev.calls[-2:] == [nvpmodel_set_argv(2), jetson_clocks_restore_argv("/c")] and dev.mode == 2


def test_restored_when_setting_fails_half_way():
    dev = FakeDevice(fail={"sudo -n jetson_clocks": (1, "", "jetson_clocks: boom")})  # pinning fails
    with pytest.raises(DeviceError, match="boom"), PowerSession(dev, mode=7, clocks=True, store_file="/c").session():
        pytest.fail("the block must not run")
    assert dev.calls[-2:] == [nvpmodel_set_argv(2), jetson_clocks_restore_argv("/c")] and dev.mode == 2


def test_sigterm_restores():
    dev = FakeDevice()
    with pytest.raises(Terminated), PowerSession(dev, mode=6).session():
        os.kill(os.getpid(), signal.SIGTERM)
    assert dev.calls[-1] == nvpmodel_set_argv(2)
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # handler put back


def test_no_sudo_is_one_clear_line():
    dev = FakeDevice(fail={"sudo -n nvpmodel -m 8": (1, "", "sudo: a password is required")})
    with pytest.raises(DeviceError) as e, PowerSession(dev, mode=8, where="nvidia@jet").session():
        pass
    msg = e.value.format()
    assert "nvpmodel needs root on nvidia@jet" in msg and "NOPASSWD" in msg and "\n" not in msg


def test_local_execute_without_sudo_is_the_no_sudo_line(monkeypatch, tmp_path):
    from edgekit.jetson.power import local_execute

    monkeypatch.setenv("PATH", str(tmp_path))  # no sudo, no nvpmodel here
    assert local_execute(["sudo", "-n", "nvpmodel", "-m", "8"])[0] == 127
    with pytest.raises(DeviceError, match="nvpmodel needs root on this Jetson"):
        PowerSession(lambda argv: (0, QUERY_JP5, "") if argv[0] == "nvpmodel" else local_execute(argv),
                     mode=8, where="this Jetson").apply()


def test_a_failing_restore_is_reported_not_raised(capsys):
    dev = FakeDevice()
    with PowerSession(dev, mode=8).session():
        dev.fail = {"sudo -n nvpmodel -m 2": (1, "", "NVPM ERROR: busy")}
    err = capsys.readouterr().err
    assert "warning: power mode restore" in err and "NVPM ERROR: busy" in err
