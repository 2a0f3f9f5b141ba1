"""Optional MQTT publishing of every frame's JSON (paho-mqtt), for robots that already speak MQTT.

Publishing never blocks the publish thread: paho queues messages and sends them from its own
network thread; the queue is bounded (``max_queued``), and a frame that finds it full (broker down
or slow) is dropped and counted. paho reconnects on its own.
"""

from __future__ import annotations

import logging
from typing import Any

from edgekit.core.errors import ConfigError

from .config import MqttConfig

log = logging.getLogger("edgekit.serve")


class MqttPublisher:
    def __init__(self, cfg: MqttConfig, max_queued: int = 100) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError("mqtt.host is set but paho-mqtt is not installed",
                              "pip install 'paho-mqtt>=2,<3', or leave mqtt.host empty") from None
        self.cfg = cfg
        self.dropped = 0
        self.sent = 0
        self._mqtt = mqtt
        self.client: Any = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edgekit-serve")
        self.client.max_queued_messages_set(max_queued)
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)

    def start(self) -> MqttPublisher:
        self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=30)
        self.client.loop_start()
        log.info("mqtt: publishing to %s:%d topic %s", self.cfg.host, self.cfg.port, self.cfg.topic)
        return self

    def publish(self, text: str) -> None:
        info = self.client.publish(self.cfg.topic, text, qos=self.cfg.qos)
        if info.rc == self._mqtt.MQTT_ERR_SUCCESS:
            self.sent += 1
        else:
            self.dropped += 1

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


__all__ = ["MqttPublisher"]
