"""``edgekit serve``: the on-device inference service (sources, pipeline, HTTP/WebSocket API,
Prometheus metrics, live page, systemd notify). FastAPI/uvicorn are imported only when serving."""

from __future__ import annotations

from typing import Any, Dict

from .config import DaemonConfig, MqttConfig, SourceConfig


def serve_briefly(bundle: Any, source: Any, seconds: float = 3.0) -> Dict[str, float]:
    """See :func:`edgekit.deploy.daemon.server.serve_briefly`."""
    from .server import serve_briefly as run

    return run(bundle, source, seconds)


__all__ = ["DaemonConfig", "SourceConfig", "MqttConfig", "serve_briefly"]
