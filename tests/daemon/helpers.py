"""Media and daemon helpers shared by the daemon tests (fixtures live in conftest.py)."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

TOKEN = "t0ken-for-tests-0123456789abcdef"
N_VIDEO = 30
FOLDER_SHAPES = [(120, 160), (90, 200), (200, 100), (64, 64), (150, 150)]


def write_video(path: Path, n: int = N_VIDEO, size=(160, 120)) -> Path:
    import cv2

    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30, size)
    for i in range(n):
        f = np.full((size[1], size[0], 3), 60, np.uint8)
        cv2.rectangle(f, (10 + i, 20), (60 + i, 80), (200, 100, 50), -1)  # no pure green: the page draws green
        w.write(f)
    w.release()
    return path


def write_folder(path: Path) -> Path:
    import cv2

    path.mkdir()
    for i, (h, w) in enumerate(FOLDER_SHAPES):
        img = np.full((h, w, 3), 30 + 40 * i, np.uint8)
        cv2.imwrite(str(path / f"img_{i:02d}.png"), img)
    return path


def make_daemon(media, **over):
    from edgekit.deploy.daemon.config import DaemonConfig, SourceConfig
    from edgekit.deploy.daemon.server import Daemon

    source = over.pop("source", None) or SourceConfig(uri=str(media["video"]), loop=True)
    cfg = DaemonConfig(bundle=str(media["b1"]), port=0, token_file=str(media["token_file"]), source=source, **over)
    return Daemon(cfg)


def wait_for(cond, timeout=20.0, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(step)
    raise AssertionError("condition not met in time")


def copy_bundle(src: Path, dst: Path) -> Path:
    if not dst.exists():
        shutil.copytree(src, dst)
    return dst
