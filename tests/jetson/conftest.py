"""A real sshd on 127.0.0.1 and a fake Jetson behind it (Python 3.8 venv, numpy<1.24, no torch).

The sshd runs with its own host key, user key and config in a temp dir (no system config is
touched); ``SetEnv`` gives remote commands the device's PATH (fake JetPack tools first, then the
Python 3.8 venv), its HOME (so ``~/edgekit`` lands in the temp dir) and ``EDGEKIT_JETSON_ROOT``
(the fake /etc and /proc). The host side reaches it through an ssh config file (``-F``) naming the
key and a known_hosts holding ``[127.0.0.1]:PORT``: host-key checking stays on.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.jetson import fake_device

SSHD = "/usr/sbin/sshd"
DEVICE_VENV = Path(os.environ.get("EDGEKIT_PY38_DEVICE_VENV", "~/.cache/edgekit-py38-device")).expanduser()
REPO = Path(__file__).resolve().parents[2]


@dataclass
class Loopback:
    dir: Path
    port: int
    host: str  # root@127.0.0.1:PORT
    ssh_config: Path
    known_hosts: Path
    bad_known_hosts: Path  # the same host with another key
    root: Path  # fake device /etc, /proc, state
    site: Path  # on the device's PYTHONPATH (tests drop a fake tensorrt there)
    home: Path

    def calls(self):
        return fake_device.calls(self.root)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _keygen(path: Path) -> str:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return " ".join(path.with_suffix(".pub").read_text().split()[:2])


def _wait_listening(port: int, proc: subprocess.Popen, log: Path, timeout: float = 10.0) -> None:
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text() if log.exists() else ''}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError("sshd did not start listening")


@pytest.fixture(scope="session")
def loopback(tmp_path_factory):
    if not os.path.exists(SSHD):
        pytest.skip(f"{SSHD} missing: apt-get install openssh-server (see docs/jetson.md)")
    if not (DEVICE_VENV / "bin" / "python").exists():
        pytest.skip(f"device venv {DEVICE_VENV} missing: create it with pyenv's Python 3.8 and "
                    "numpy<1.24 pydantic<2.11 pyyaml click tqdm opencv-python-headless<4.11 onnxruntime<1.20")
    d = tmp_path_factory.mktemp("sshd")
    host_pub = _keygen(d / "host_key")
    _keygen(d / "user_key")
    other_pub = _keygen(d / "other_host_key")
    shutil.copy(str(d / "user_key.pub"), str(d / "authorized_keys"))
    root, site, home, fakebin = d / "device", d / "site", d / "home", d / "fakebin"
    for p in (root, site, home):
        p.mkdir()
    fake_device.write_device_root(root)
    fake_device.write_fakes(fakebin, str(DEVICE_VENV / "bin" / "python"))
    path = f"{fakebin}:{DEVICE_VENV / 'bin'}:/usr/local/bin:/usr/bin:/bin"
    os.makedirs("/run/sshd", exist_ok=True)  # sshd's privilege-separation directory
    port = _free_port()
    (d / "sshd_config").write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {d / 'host_key'}",
        f"AuthorizedKeysFile {d / 'authorized_keys'}", "PasswordAuthentication no", "KbdInteractiveAuthentication no",
        f"PidFile {d / 'sshd.pid'}", "StrictModes no", "UsePAM no", "PermitRootLogin prohibit-password", "Subsystem sftp internal-sftp",
        f"SetEnv PATH={path} HOME={home} EDGEKIT_JETSON_ROOT={root} PYTHONPATH={REPO}:{site} "
        "PYTHONDONTWRITEBYTECODE=1 YOLO_OFFLINE=1", ""]))
    # -E: log to a file (a pipe nobody reads would fill up and stall sshd)
    proc = subprocess.Popen([SSHD, "-D", "-E", str(d / "sshd.log"), "-f", str(d / "sshd_config")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_listening(port, proc, d / "sshd.log")
        (d / "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
        (d / "bad_known_hosts").write_text(f"[127.0.0.1]:{port} {other_pub}\n")
        (d / "ssh_config").write_text("\n".join([
            "Host 127.0.0.1", f"  IdentityFile {d / 'user_key'}", "  IdentitiesOnly yes",
            f"  UserKnownHostsFile {d / 'known_hosts'}", ""]))
        yield Loopback(d, port, f"root@127.0.0.1:{port}", d / "ssh_config", d / "known_hosts",
                       d / "bad_known_hosts", root, site, home)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def device(loopback):
    """The loopback device with its state reset (no sudo refusal, no TensorRT, power mode 2)."""
    fake_device.reset_state(loopback.root, loopback.site)
    return loopback
