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

from ..run import RunDir, read_run_meta, update_run_meta
from .config import LoggingConfig

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
    """Fan metrics out to the configured backends; ``notes`` says which ones were skipped and why."""

    def __init__(self) -> None:
        self._loggers: List[Tuple[str, Callable[[Dict[str, float], int], None], Callable[[], None]]] = []
        self.notes: List[str] = []

    @property
    def active(self) -> List[str]:
        return [name for name, _, _ in self._loggers]

    @classmethod
    def open(cls, cfg: LoggingConfig, run: RunDir, config: Dict[str, Any]) -> MetricSinks:
        sinks = cls()
        if cfg.wandb != "disabled":
            sinks._try("wandb", lambda: _open_wandb(resolve_wandb_mode(cfg.wandb), cfg.wandb_project, run, config))
        if cfg.mlflow:
            sinks._try("mlflow", lambda: _open_mlflow(run, config))
        if cfg.tensorboard:
            sinks._try("tensorboard", lambda: _open_tensorboard(run))
        if sinks.notes:
            update_run_meta(run, logging_notes=sinks.notes)
        return sinks

    def _try(self, name: str, opener: Callable[[], Tuple[Callable, Callable]]) -> None:
        try:
            log, close = opener()
        except ImportError:
            note = f"{name} is not installed: skipped (pip install {name})"
            LOG.warning(note)
            self.notes.append(note)
            return
        except Exception as e:  # a logger must never stop training
            note = f"{name} failed to start: {type(e).__name__}: {e}"
            LOG.warning(note)
            self.notes.append(note)
            return
        self._loggers.append((name, log, close))

    def log(self, metrics: Dict[str, Any], step: int) -> None:
        numeric = {_clean_key(k): float(v) for k, v in metrics.items()
                   if isinstance(v, (int, float)) and not isinstance(v, bool)}
        for name, log, _ in self._loggers:
            try:
                log(numeric, step)
            except Exception as e:
                LOG.warning("%s logging failed: %s", name, e)

    def close(self) -> None:
        for _, _, close in self._loggers:
            try:
                close()
            except Exception as e:
                LOG.warning("closing a logger failed: %s", e)
        self._loggers = []


def _open_wandb(mode: str, project: str, run: RunDir, config: Dict[str, Any]):
    import wandb

    wb = wandb.run or wandb.init(project=project, name=run.run_id, id=re.sub(r"[^0-9A-Za-z_-]", "-", run.run_id),
                                 resume="allow", dir=str(run.root), mode=mode, config=config)
    return (lambda m, step: wb.log(m, step=step)), (lambda: None)


def _open_mlflow(run: RunDir, config: Dict[str, Any]):
    import mlflow

    mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or (run.root / "mlruns").as_uri())
    mlflow.set_experiment(os.environ.get("MLFLOW_EXPERIMENT_NAME", "edgekit"))
    run_id = read_run_meta(run).get("mlflow_run_id")  # one MLflow run across stages and resumes
    active = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name=run.run_id)
    if not run_id:
        update_run_meta(run, mlflow_run_id=active.info.run_id)
        mlflow.log_params({k: str(v)[:250] for k, v in config.items()})
    return (lambda m, step: mlflow.log_metrics(m, step=step)), mlflow.end_run


def _open_tensorboard(run: RunDir):
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    writer = SummaryWriter(str(run.root / "tensorboard"))

    def log(m: Dict[str, float], step: int) -> None:
        for k, v in m.items():
            writer.add_scalar(k, v, step)
        writer.flush()

    return log, writer.close


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
