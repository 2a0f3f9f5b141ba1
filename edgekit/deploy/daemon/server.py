"""Run the service behind uvicorn: in the foreground (``edgekit serve``, signals, exit code) or in a
background thread (tests, ``edgekit demo``'s :func:`serve_briefly`).

Exit codes: 0 after SIGTERM/SIGINT (frames in flight drained) or at the end of a file source;
3 after a fatal runtime error (systemd's Restart=on-failure restarts the unit).
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
import urllib.request
from typing import Any, Dict, Optional

from edgekit.core.errors import ModelError

from ..bundle import Bundle
from .config import DaemonConfig, SourceConfig, check_bind, read_token
from .notify import Notifier
from .service import Service
from .sources import open_source

log = logging.getLogger("edgekit.serve")


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def listen_socket(host: str, port: int, sndbuf: int) -> socket.socket:
    """The listening socket, bound before the model loads (a taken port fails at once, port 0 picks one).

    Its send buffer is inherited by every accepted connection: a small one bounds how many frames
    the kernel holds for a client that stopped reading, so that client's own bounded queue starts
    dropping its oldest frames instead of the kernel buffering seconds of stale ones.
    """
    from edgekit.core.errors import ConfigError

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}",
                          "pick a free --port or stop the process holding it") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class Daemon:
    """The service plus its HTTP server. Checks everything that can be checked before listening."""

    def __init__(self, cfg: DaemonConfig) -> None:
        import uvicorn

        from .app import create_app

        token = read_token(cfg)
        check_bind(cfg, token)
        if not cfg.bundle:
            raise ModelError("no bundle given", "pass the bundle directory: edgekit serve BUNDLE --source ...")
        self.sock = listen_socket(cfg.host, cfg.port, cfg.socket_sndbuf)
        cfg = cfg.model_copy(update={"port": self.sock.getsockname()[1]})
        self.cfg = cfg
        bundle = Bundle.open(cfg.bundle, verify=True)
        self.service = Service(cfg, bundle, open_source(cfg.source))
        asgi, self.app = create_app(self.service, token)
        self.server = uvicorn.Server(uvicorn.Config(asgi, host=cfg.host, port=cfg.port, log_level="warning",
                                                    timeout_graceful_shutdown=2, lifespan="off"))
        self.notifier = Notifier(lambda: self.service.ready, lambda: self.service.published)
        self.mqtt: Any = None
        if cfg.mqtt.host:
            from .mqtt import MqttPublisher

            self.mqtt = MqttPublisher(cfg.mqtt)
            self.service.publish_hooks.append(self.mqtt.publish)
        self._thread: Optional[threading.Thread] = None

    @property
    def url(self) -> str:
        return f"http://{self.cfg.host}:{self.cfg.port}"

    def _watch(self) -> None:
        self.service.done.wait()
        self.server.should_exit = True

    def run(self) -> int:
        """Serve in the foreground until SIGTERM/SIGINT, the end of a file source or a fatal error."""
        stopping = threading.Event()

        def on_signal(signum: int, frame: Any) -> None:
            # uvicorn handles the signal while it runs and re-raises it after shutting down: this
            # handler then only notes it, so the process drains and exits 0 instead of dying.
            stopping.set()
            self.server.should_exit = True

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, on_signal)
        if self.mqtt is not None:
            self.mqtt.start()
        self.service.start()
        self.notifier.start()
        threading.Thread(target=self._watch, name="edgekit-watch", daemon=True).start()
        log.warning("edgekit serve: %s on %s (source %s)", self.service.bundle.root.name, self.url, self.cfg.source.uri)
        self.server.run(sockets=[self.sock])
        self.notifier.stop()
        self.service.stop(self.cfg.drain_timeout_s)
        if self.mqtt is not None:
            self.mqtt.stop()
        return self.service.exit_code

    # ---- background mode (tests, demo) -------------------------------------------------------------
    def start(self, timeout: float = 30.0) -> Daemon:
        if self.mqtt is not None:
            self.mqtt.start()
        self.service.start()
        threading.Thread(target=self._watch, name="edgekit-watch", daemon=True).start()
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]},
                                        name="edgekit-http", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"server did not start on {self.url}")
            time.sleep(0.02)
        return self

    def wait_ready(self, timeout: float = 60.0) -> Daemon:
        deadline = time.monotonic() + timeout
        while not self.service.ready:
            if self.service.done.is_set() or time.monotonic() > deadline:
                raise RuntimeError(f"service not ready: {self.service.state} {self.service.error or ''}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.service.stop(self.cfg.drain_timeout_s)
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.mqtt is not None:
            self.mqtt.stop()


def serve_briefly(bundle: Any, source: Any, seconds: float = 3.0) -> Dict[str, float]:
    """Serve ``bundle`` from ``source`` (looped) on a free loopback port for ``seconds`` and return
    the edgekit_* samples /metrics reported at the end (what ``edgekit demo`` prints)."""
    from prometheus_client.parser import text_string_to_metric_families

    cfg = DaemonConfig(bundle=str(bundle), port=0, source=SourceConfig(uri=str(source), loop=True))
    daemon = Daemon(cfg).start()
    try:
        daemon.wait_ready()
        time.sleep(seconds)
        with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as r:
            text = r.read().decode()
    finally:
        daemon.stop()
    out: Dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith(("_bucket", "_created")) or not s.name.startswith("edgekit_"):
                continue
            label = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{label}}}" if label else "")] = s.value
    return out


__all__ = ["Daemon", "serve_briefly", "free_port"]
