"""``edgekit serve BUNDLE --source SRC``: the on-device detection service (docs/serve.md).

Options given on the command line override ``--config daemon.yaml``, which overrides the
defaults. Everything checkable (bundle, source, token, bind address) is checked before the port
opens; the model then loads (or its TensorRT engine builds) in the background while
``/health/live`` already answers and ``/health/ready`` says 503 with the state.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, Optional

import click

from edgekit.cli.params import SESSIONS


def _daemon_config(config: Optional[str], cli: Dict[str, Any], source: Dict[str, Any]) -> Any:
    from pathlib import Path

    from edgekit.core.config import build_config, read_mapping
    from edgekit.deploy.daemon.config import DaemonConfig

    data: Dict[str, Any] = read_mapping(Path(config)) if config else {}
    data.update({k: v for k, v in cli.items() if v is not None})
    src = dict(data.get("source") or {})
    src.update({k: v for k, v in source.items() if v is not None})
    data["source"] = src
    return build_config(DaemonConfig, data, config or "command line", finite=True)


@click.command("serve")
@click.argument("bundle", required=False, type=click.Path(path_type=str))
@click.option("--source", "uri", help="Video file, image folder, rtsp://..., /dev/videoN, csi://N or a GStreamer pipeline.")
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default=None, help="[default: onnxruntime]")
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default=None, help="[default: fp32]")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Sliced inference: tile size in px (0 = whole frames) [default: the bundle's tiling plan].")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=None, help="Pixels shared by neighbouring tiles.")
@click.option("--pipeline-sessions", type=SESSIONS, default=None,
              help="onnxruntime: N single-threaded sessions run whole frames in parallel [default: 0, one session].")
@click.option("--host", default=None, help="Bind address [default: 127.0.0.1]; others need a token.")
@click.option("--port", type=int, default=None, help="TCP port [default: 8080].")
@click.option("--config", "config", type=click.Path(path_type=str), help="daemon.yaml (see jetson/daemon.yaml).")
@click.option("--token-file", default=None, help="File holding the bearer token (else env EDGEKIT_TOKEN).")
@click.option("--models-dir", default=None, help="Where POST /model/reload may load bundles from [default: BUNDLE's parent].")
@click.option("--loop", is_flag=True, default=None, help="Restart a file source at its end instead of exiting.")
@click.option("--realtime", is_flag=True, default=None, help="Pace a video file to its frame rate.")
@click.option("-v", "--verbose", is_flag=True, help="Log state changes.")
@click.pass_context
def serve(ctx: click.Context, bundle: Optional[str], uri: Optional[str], backend: Optional[str],
          precision: Optional[str], tile: Optional[int], tile_overlap: Optional[int], pipeline_sessions: Optional[int],
          host: Optional[str], port: Optional[int], config: Optional[str],
          token_file: Optional[str], models_dir: Optional[str], loop: Optional[bool], realtime: Optional[bool],
          verbose: bool) -> None:
    """Serve BUNDLE's detections over HTTP/WebSocket from --source, with metrics and a live page at /."""
    from edgekit.deploy.daemon.server import Daemon

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    cfg = _daemon_config(config, {"bundle": bundle, "backend": backend, "precision": precision, "tile": tile,
                                  "tile_overlap": tile_overlap, "pipeline_sessions": pipeline_sessions, "host": host,
                                  "port": port, "token_file": token_file, "models_dir": models_dir},
                         {"uri": uri, "loop": loop, "realtime": realtime})
    code = Daemon(cfg).run()
    if code:
        click.echo(f"error: the service stopped after a fatal error (exit {code}); see the log above", err=True)
    ctx.exit(code)
