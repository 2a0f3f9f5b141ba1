"""MQTT publishing against a real broker (Debian's mosquitto) on 127.0.0.1."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time

import pytest

from edgekit.core.detections import Detections
from edgekit.deploy.daemon.config import MqttConfig
from edgekit.deploy.daemon.server import free_port
from tests.daemon.helpers import make_daemon

mqtt = pytest.importorskip("paho.mqtt.client")
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if shutil.os.path.exists("/usr/sbin/mosquitto") else None)


@pytest.fixture()
def broker(tmp_path):
    if MOSQUITTO is None:
        pytest.skip("no mosquitto here (Debian: apt-get install -y mosquitto)")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    p = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(0.3)
    assert p.poll() is None, p.stderr.read()
    yield port
    p.terminate()
    p.wait(timeout=5)


def test_each_frame_is_published_to_mqtt(media, broker):
    got, connected = [], threading.Event()
    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_connect = lambda c, u, f, rc, p=None: (c.subscribe("edgekit/test", qos=0), connected.set())
    sub.on_message = lambda c, u, msg: got.append(json.loads(msg.payload))
    sub.connect("127.0.0.1", broker)
    sub.loop_start()
    assert connected.wait(5)
    time.sleep(0.2)
    d = make_daemon(media, mqtt=MqttConfig(host="127.0.0.1", port=broker, topic="edgekit/test")).start()
    try:
        d.wait_ready()
        deadline = time.monotonic() + 10
        while len(got) < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        d.stop()
        sub.loop_stop()
    assert len(got) >= 20
    assert all(len(Detections.from_dict(m["detections"])) > 0 and m["model"] == "b1" for m in got[:20])
