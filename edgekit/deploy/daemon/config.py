"""The daemon's typed configuration (``edgekit serve --config daemon.yaml``).

A strict, frozen pydantic model like every edgekit config: unknown keys fail naming the key and
the closest valid one. Command-line options override the file; the file overrides the defaults.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Optional

from pydantic import Field

from edgekit.core.config import StrictModel
from edgekit.core.errors import ConfigError


class SourceConfig(StrictModel):
    """Where frames come from and how they are read."""

    uri: str = Field("", description="video file, image folder, rtsp://..., /dev/videoN, csi://N or a GStreamer pipeline")
    realtime: bool = Field(False, description="pace a video file to its frame rate (then newest-frame, like a camera)")
    loop: bool = Field(False, description="restart a file source at its end instead of exiting")
    stall_timeout_s: float = Field(5.0, gt=0, description="a live source with no frame for this long is reopened")
    reconnect_min_s: float = Field(0.5, gt=0, description="first reconnect delay (doubles up to reconnect_max_s)")
    reconnect_max_s: float = Field(10.0, gt=0, description="longest delay between reconnect attempts")
    width: int = Field(1280, gt=0, description="CSI/V4L2 capture width")
    height: int = Field(720, gt=0, description="CSI/V4L2 capture height")
    fps: int = Field(30, gt=0, description="CSI capture frame rate")


class MqttConfig(StrictModel):
    """Optional MQTT publishing of every frame's detections (paho-mqtt)."""

    host: str = Field("", description="broker host; empty = MQTT off")
    port: int = Field(1883, gt=0, lt=65536, description="broker port")
    topic: str = Field("edgekit/detections", description="topic each frame's JSON is published to")
    qos: int = Field(0, ge=0, le=2, description="MQTT quality of service")


class DaemonConfig(StrictModel):
    """Everything ``edgekit serve`` needs besides the bundle itself."""

    bundle: str = Field("", description="bundle directory (a name inside models_dir, or a path)")
    models_dir: str = Field("", description="the only directory POST /model/reload may load bundles from "
                                            "(default: the bundle's parent directory)")
    backend: str = Field("onnxruntime", description="onnxruntime or tensorrt")
    precision: str = Field("fp32", description="fp32, fp16 (tensorrt) or int8")
    tile: Optional[int] = Field(None, ge=0, description="sliced inference: tile size in px (0 = whole frames; "
                                                       "default: the bundle's tiling plan, if any)")
    tile_overlap: Optional[int] = Field(None, ge=0, description="pixels shared by neighbouring tiles "
                                                               "(default: the plan's, else tile/5)")
    pipeline_sessions: int = Field(0, ge=0, description="onnxruntime: N single-threaded sessions run whole frames "
                                                         "in parallel (0: one multi-threaded session)")
    host: str = Field("127.0.0.1", description="bind address; anything but loopback needs a token")
    port: int = Field(8080, ge=0, lt=65536, description="TCP port (0 = any free port)")
    token_file: str = Field("", description="file holding the bearer token (else env EDGEKIT_TOKEN)")
    source: SourceConfig = Field(default_factory=SourceConfig)  # type: ignore[arg-type]
    queue_size: int = Field(2, ge=1, le=64, description="bounded queue length between stages")
    subscriber_queue: int = Field(8, ge=1, le=1024, description="frames kept per WebSocket subscriber "
                                                                "(oldest dropped when a client is slow)")
    warmup_frames: int = Field(3, ge=0, description="inferences run before /health/ready turns 200")
    max_upload_bytes: int = Field(1_000_000, gt=0, description="largest request body accepted (413 beyond)")
    drain_timeout_s: float = Field(3.0, gt=0, description="how long SIGTERM waits for frames in flight")
    socket_sndbuf: int = Field(65536, ge=4096, description="kernel send buffer per client: bounds the stale "
                                                         "frames a client that stopped reading can have queued")
    jpeg_quality: int = Field(70, ge=10, le=100, description="live page JPEG quality")
    mqtt: MqttConfig = Field(default_factory=MqttConfig)  # type: ignore[arg-type]


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def read_token(cfg: DaemonConfig) -> Optional[str]:
    """The bearer token from ``token_file`` or env ``EDGEKIT_TOKEN`` (None when neither is set)."""
    if cfg.token_file:
        path = Path(cfg.token_file).expanduser()
        try:
            token = path.read_text(encoding="utf-8").strip()
        except OSError as e:
            raise ConfigError(f"cannot read token file {path}: {e.strerror}", "pass a readable --token-file") from None
        if len(token) < 16:
            raise ConfigError(f"token in {path} is shorter than 16 characters",
                              "write a long random token, e.g. `openssl rand -hex 32 > FILE`")
        return token
    token = os.environ.get("EDGEKIT_TOKEN", "").strip()
    return token or None


def check_bind(cfg: DaemonConfig, token: Optional[str]) -> None:
    """Refuse a non-loopback address without a token (anyone on the network could reload models)."""
    if not is_loopback(cfg.host) and not token:
        raise ConfigError(f"refusing to bind {cfg.host} without a token",
                          "set EDGEKIT_TOKEN or pass --token-file, or bind 127.0.0.1")
    if cfg.backend not in ("onnxruntime", "tensorrt"):
        raise ConfigError(f"backend '{cfg.backend}' cannot serve", "use --backend onnxruntime or tensorrt")
    if cfg.pipeline_sessions and cfg.backend != "onnxruntime":
        raise ConfigError(f"pipeline_sessions is an onnxruntime option, not {cfg.backend}",
                          "drop pipeline_sessions (--pipeline-sessions) or serve with --backend onnxruntime")
    if cfg.pipeline_sessions == 1:
        raise ConfigError("pipeline_sessions 1 adds nothing to the main session", "give 0 (off) or 2 and more")


__all__ = ["DaemonConfig", "SourceConfig", "MqttConfig", "is_loopback", "read_token", "check_bind"]
