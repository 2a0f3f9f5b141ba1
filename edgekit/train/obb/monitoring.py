"""Training monitors: W&B / MLflow / TensorBoard sinks and the distillation "signal map" PNGs.

Every backend is imported lazily and is optional: when its package is missing it is skipped with a
warning (recorded in run_meta.json), never a failure. W&B runs online only with a key and a reachable
server, otherwise offline; ``disabled`` turns it off (tests).
"""

from __future__ import annotations

import logging
import netrc
import os
import re
import socket
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlparse

import numpy as np

from edgekit.core.atomic import write_bytes_atomic

from ..run import RunDir, update_run_meta
from .config import LoggingConfig
from .trackers import Tracker, open_mlflow, open_tensorboard, open_wandb

LOG = logging.getLogger(__name__)
WANDB_DEFAULT_URL = "https://api.wandb.ai"


def _wandb_key_present() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = urlparse(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL)).hostname or ""
        return netrc.netrc().authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def _reachable(url: str, timeout: float = 2.0) -> bool:
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def resolve_wandb_mode(requested: str) -> str:
    """``auto`` -> ``online`` with a key and a reachable server, else ``offline``; others pass through."""
    if requested != "auto":
        return requested
    env = os.environ.get("WANDB_MODE", "")
    if env in ("online", "offline", "disabled"):
        return env
    if not _wandb_key_present():
        return "offline"
    return "online" if _reachable(os.environ.get("WANDB_BASE_URL", WANDB_DEFAULT_URL)) else "offline"


def _clean_key(k: str) -> str:
    return re.sub(r"[^0-9A-Za-z_\-./ ]", "", k)


class MetricSinks:
    """Fan metrics, images and artifacts out to the configured trackers (edgekit.train.obb.trackers);
    ``notes`` says which ones were skipped and why."""

    def __init__(self) -> None:
        self._trackers: List[Tuple[str, Tracker]] = []
        self.notes: List[str] = []

    @property
    def active(self) -> List[str]:
        return [name for name, _ in self._trackers]

    @classmethod
    def open(cls, cfg: LoggingConfig, run: RunDir, config: Dict[str, Any]) -> MetricSinks:
        sinks = cls()
        if cfg.wandb != "disabled":
            sinks._try("wandb", lambda: open_wandb(run, config, resolve_wandb_mode(cfg.wandb), cfg.wandb_project))
        if cfg.mlflow:
            sinks._try("mlflow", lambda: open_mlflow(run, config, cfg.mlflow_tracking_uri, cfg.mlflow_experiment))
        if cfg.tensorboard:
            sinks._try("tensorboard", lambda: open_tensorboard(run))
        if sinks.notes:
            update_run_meta(run, logging_notes=sinks.notes)
        return sinks

    def _try(self, name: str, opener: Callable[[], Tracker]) -> None:
        try:
            tracker = opener()
        except ImportError:
            note = f"{name} is not installed: skipped (pip install 'edgekit[track]')"
            LOG.warning(note)
            self.notes.append(note)
            return
        except Exception as e:  # a logger must never stop training
            note = f"{name} failed to start: {type(e).__name__}: {e}"
            LOG.warning(note)
            self.notes.append(note)
            return
        self._trackers.append((name, tracker))

    def _each(self, what: str, fn: Callable[[Tracker], Any]) -> None:
        for name, tracker in self._trackers:
            try:
                fn(tracker)
            except Exception as e:
                LOG.warning("%s %s failed: %s", name, what, e)

    def log(self, metrics: Dict[str, Any], step: int) -> None:
        numeric = {_clean_key(k): float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        self._each("logging", lambda t: t.log(numeric, step))

    def log_image(self, tag: str, path: Path, step: int) -> None:
        """A PNG already on disk (signal maps): TensorBoard/W&B images, an MLflow artifact."""
        self._each("image logging", lambda t: t.image and t.image(tag, Path(path), step))

    def log_artifact(self, path: Path, subdir: str = "") -> None:
        """A file for the trackers that store files (MLflow)."""
        self._each("artifact logging", lambda t: t.artifact and t.artifact(Path(path), subdir))

    def close(self, final: bool = True) -> None:
        """``final=False`` between stages: the tracker run stays open for the next stage."""
        self._each("closing", lambda t: t.close(final))
        self._trackers = []


# -- signal maps -----------------------------------------------------------------------------------
def render_signal_map(img_rgb: np.ndarray, dist: np.ndarray, corners_px: Sequence[np.ndarray],
                      titles: Optional[Sequence[str]] = None, min_side: int = 256) -> np.ndarray:
    """One BGR panel per distance map: the image under a colour map of ``1 - cos`` with GT boxes drawn.

    ``img_rgb`` (H, W, 3) float in [0, 1]; ``dist`` (L, h, w) distances in [0, 2]; ``corners_px`` (4, 2)
    polygons in image pixels. Images shorter than ``min_side`` are enlarged by an integer factor.
    """
    import cv2

    scale = max(1, -(-min_side // img_rgb.shape[0]))  # small training images are enlarged to stay readable
    h, w = img_rgb.shape[0] * scale, img_rgb.shape[1] * scale
    base = cv2.cvtColor((np.clip(img_rgb, 0, 1) * 255).astype(np.uint8), cv2.COLOR_RGB2BGR)
    base = cv2.resize(base, (w, h), interpolation=cv2.INTER_LINEAR)
    corners_px = [np.asarray(c, dtype=np.float64) * scale for c in corners_px]
    panels = []
    for li, d in enumerate(dist):
        heat = cv2.resize(np.clip(d / 2.0, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
        heat = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_JET)
        panel = cv2.addWeighted(base, 0.5, heat, 0.5, 0.0)
        for poly in corners_px:
            cv2.polylines(panel, [np.round(poly).astype(np.int32).reshape(-1, 1, 2)], True, (255, 255, 255), 1)
        if titles:
            cv2.putText(panel, str(titles[li]), (2, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1)
        panels.append(panel)
    return np.concatenate(panels, axis=1)


def write_signal_map(path: Path, signal: Optional[Dict[str, Any]], layers: Sequence[int]) -> Optional[Path]:
    """Render the distiller's last batch (first image) to ``path`` atomically; None if nothing to show."""
    if not signal:
        return None
    import cv2

    from edgekit.core.geometry import xywhr_to_corners

    img = signal["img"][0].float().permute(1, 2, 0).cpu().numpy()
    dist = signal["dist"][0].float().cpu().numpy()  # (L, h, w)
    h, w = img.shape[:2]
    keep = (signal["batch_idx"] == 0).cpu().numpy().reshape(-1)
    boxes = signal["bboxes"].float().cpu().numpy().reshape(-1, 5)[keep]
    boxes = boxes * np.array([w, h, w, h, 1.0])
    corners = list(xywhr_to_corners(boxes)) if len(boxes) else []
    panel = render_signal_map(img, dist, corners, [f"layer {i}" for i in layers])
    ok, png = cv2.imencode(".png", panel)
    if not ok:
        LOG.warning("could not encode signal map %s", path)
        return None
    return write_bytes_atomic(path, png.tobytes())


__all__ = ["MetricSinks", "resolve_wandb_mode", "render_signal_map", "write_signal_map"]
