"""`python -m edgekit serve` as a real process: SIGTERM, end of file, fatal errors, sd_notify, bind policy."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from edgekit.deploy.daemon.server import free_port

ROOT = Path(__file__).resolve().parents[2]


def serve(args, env=None, **kw):
    e = dict(os.environ, PYTHONPATH=str(ROOT), **(env or {}))
    e.pop("EDGEKIT_TOKEN", None)
    return subprocess.Popen([sys.executable, "-m", "edgekit", "serve", *args], env=e, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def wait_ready(port, proc, timeout=30):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"exited {proc.returncode}: {proc.stderr.read()}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise AssertionError("not ready in time")


def test_sigterm_drains_and_exits_zero(media):
    port = free_port()
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--loop", "--port", str(port)])
    try:
        wait_ready(port, p)
        t = time.monotonic()
        p.send_signal(signal.SIGTERM)
        rc = p.wait(timeout=10)
        elapsed = time.monotonic() - t
    finally:
        p.kill()
    assert rc == 0, p.stderr.read()
    assert elapsed < 5.0


def test_file_source_end_exits_zero(media):
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--port", "0"])
    assert p.wait(timeout=30) == 0, p.stderr.read()


def test_pipeline_sessions_serve_a_file_and_are_refused_off_onnxruntime(media):
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--port", "0", "--pipeline-sessions", "2"])
    assert p.wait(timeout=60) == 0, p.stderr.read()
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--port", "0", "--pipeline-sessions", "2",
               "--backend", "tensorrt"])
    assert p.wait(timeout=30) == 1
    err = p.stderr.read()
    assert "pipeline_sessions is an onnxruntime option, not tensorrt" in err and "Traceback" not in err


def test_fatal_runtime_error_exits_nonzero(media):
    # The TensorRT backend where TensorRT is missing: the engine build fails after the port opened.
    pytest.importorskip("onnxruntime")
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is importable here: the build would not fail")
    except ImportError:
        pass
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--loop", "--port", "0", "--backend", "tensorrt"])
    rc = p.wait(timeout=30)
    assert rc == 3, p.stderr.read()
    assert "fatal error" in p.stderr.read()


def test_refuses_non_loopback_without_token(media):
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--host", "0.0.0.0", "--port", "0"])
    assert p.wait(timeout=30) == 1
    err = p.stderr.read()
    assert "refusing to bind 0.0.0.0 without a token" in err and "Traceback" not in err


def test_missing_bundle_and_source_are_one_line_errors(media, tmp_path):
    p = serve([str(tmp_path / "nope"), "--source", str(media["video"])])
    assert p.wait(timeout=30) == 1 and "does not exist" in p.stderr.read()
    p = serve([str(media["b1"]), "--source", str(tmp_path / "none.mp4")])
    assert p.wait(timeout=30) == 1 and "source" in p.stderr.read()


def test_sd_notify_ready_and_watchdog_only_while_frames_move(media, tmp_path):
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(20)
    port = free_port()
    p = serve([str(media["b1"]), "--source", str(media["video"]), "--loop", "--port", str(port)],
              env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "200000"})
    try:
        got = []
        while not any("WATCHDOG=1" in m for m in got):
            got.append(sock.recv(4096).decode())
        assert any("READY=1" in m for m in got)
        assert got.index(next(m for m in got if "READY=1" in m)) < got.index("WATCHDOG=1")
        p.send_signal(signal.SIGTERM)
        while "STOPPING=1" not in got[-1]:
            got.append(sock.recv(4096).decode())
        assert p.wait(timeout=10) == 0
    finally:
        p.kill()
        sock.close()


def test_watchdog_stays_silent_without_progress():
    import tempfile

    from edgekit.deploy.daemon.notify import Notifier

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "n.sock")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(path)
        s.settimeout(0.5)
        old = os.environ.get("NOTIFY_SOCKET")
        os.environ["NOTIFY_SOCKET"] = path
        try:
            n = Notifier(lambda: True, lambda: 5, interval=0.05).start()  # progress frozen at 5
            msgs = []
            t = time.monotonic()
            while time.monotonic() - t < 0.6:
                try:
                    msgs.append(s.recv(100).decode())
                except socket.timeout:
                    break
            n.stop()
        finally:
            if old is None:
                os.environ.pop("NOTIFY_SOCKET", None)
            else:
                os.environ["NOTIFY_SOCKET"] = old
            s.close()
    assert sum("WATCHDOG=1" in m for m in msgs) == 1  # one ping for the first progress, none after


def test_cli_options_override_the_config_file(tmp_path):
    from edgekit.cli.serve_cmd import _daemon_config

    cfg_file = tmp_path / "daemon.yaml"
    cfg_file.write_text("port: 9000\nhost: 127.0.0.1\nsource:\n  uri: clip.mp4\n  loop: true\n")
    cfg = _daemon_config(str(cfg_file), {"port": 9100, "host": None, "bundle": "b"}, {"uri": None, "loop": None})
    assert cfg.port == 9100 and cfg.host == "127.0.0.1" and cfg.source.uri == "clip.mp4" and cfg.source.loop
    cfg_file.write_text("prot: 9000\n")
    p = serve(["b", "--config", str(cfg_file)])
    assert p.wait(timeout=30) == 1 and "did you mean 'port'" in p.stderr.read()
