"""Frame sources for the daemon: files (every frame), cameras and streams (newest frame).

``open_source(cfg)`` picks the kind from the URI:

- a video file: every frame in order (``realtime`` paces it to its frame rate, then it behaves
  like a camera); ``loop`` restarts it at the end;
- an image folder: every image in name order (unreadable images are skipped and counted);
- ``rtsp://...``: OpenCV's FFmpeg backend over TCP, with open/read timeouts;
- ``/dev/videoN`` or ``v4l2:///dev/videoN``: V4L2;
- ``csi://N``: a GStreamer ``nvarguscamerasrc`` pipeline; any string holding `` ! `` is taken as
  a GStreamer pipeline as is (it must end in ``appsink``).

Live sources run a reader thread that keeps only the newest frame (a slow model never builds a
backlog: overwritten frames are counted as capture drops). A live source with no frame for
``stall_timeout_s`` is reopened with exponential backoff; losses and reconnects are counted.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

import numpy as np

from edgekit.core.errors import DataError
from edgekit.core.image_files import imread

from ..sources import list_image_files
from .config import SourceConfig

# OpenCV's FFmpeg backend reads its RTSP options from this variable (UDP loses packets on busy links).
_FFMPEG_OPTIONS = "OPENCV_FFMPEG_CAPTURE_OPTIONS"


class SourceCounters:
    """What the capture stage did (read by /metrics)."""
    def __init__(self) -> None:
        self.frames = 0
        self.dropped = 0  # live frames overwritten before inference took them
        self.bad = 0  # unreadable frames skipped
        self.losses = 0
        self.reconnects = 0
        self.waiting = 0  # live: 1 while a frame waits in the newest-frame slot
        self.state = "opening"


def csi_pipeline(sensor: int, width: int, height: int, fps: int) -> str:
    """The Jetson CSI camera as an OpenCV GStreamer pipeline (Argus ISP -> BGR appsink)."""
    return (f"nvarguscamerasrc sensor-id={sensor} ! video/x-raw(memory:NVMM), width={width}, height={height}, "
            f"framerate={fps}/1 ! nvvidconv ! video/x-raw, format=BGRx ! videoconvert ! video/x-raw, format=BGR "
            "! appsink drop=true max-buffers=1 sync=false")


def source_kind(uri: str) -> str:
    if uri.startswith(("rtsp://", "rtsps://")):
        return "rtsp"
    if uri.startswith("csi://") or " ! " in uri:
        return "gstreamer"
    if uri.startswith("v4l2://") or uri.startswith("/dev/video"):
        return "v4l2"
    if Path(uri).is_dir():
        return "folder"
    return "file"


class FrameSource:
    """Iterate frames; ``live`` says whether the newest-frame policy applies."""
    def __init__(self, cfg: SourceConfig) -> None:
        self.cfg = cfg
        self.kind = source_kind(cfg.uri)
        self.live = self.kind in ("rtsp", "gstreamer", "v4l2") or (self.kind == "file" and cfg.realtime)
        self.counters = SourceCounters()
        self._stop = threading.Event()
        self._check()

    def _check(self) -> None:
        if not self.cfg.uri:
            raise DataError("no source given", "pass --source VIDEO|FOLDER|rtsp://...|/dev/videoN|csi://0")
        if self.kind == "file" and not Path(self.cfg.uri).is_file():
            raise DataError(f"source {self.cfg.uri} does not exist",
                            "pass a video file, an image folder, rtsp://..., /dev/videoN or csi://N")
        if self.kind == "folder":
            list_image_files(self.cfg.uri)

    def stop(self) -> None:
        self._stop.set()

    def frames(self) -> Iterator[np.ndarray]:
        if self.live:
            return self._newest_frames()
        return self._every_frame()

    # ---- files: every frame ------------------------------------------------------------------------
    def _every_frame(self) -> Iterator[np.ndarray]:
        while not self._stop.is_set():
            read = self._folder_once() if self.kind == "folder" else self._video_once(pace=False)
            n = 0
            for frame in read:
                if self._stop.is_set():
                    return
                n += 1
                yield frame
            if not self.cfg.loop or n == 0:
                self.counters.state = "ended"
                return

    def _folder_once(self) -> Iterator[np.ndarray]:
        self.counters.state = "reading"
        for path in list_image_files(self.cfg.uri):
            frame = imread(path)
            if frame is None:
                self.counters.bad += 1
                continue
            self.counters.frames += 1
            yield frame

    def _video_once(self, pace: bool) -> Iterator[np.ndarray]:
        import cv2

        cap = cv2.VideoCapture(self.cfg.uri)
        if not cap.isOpened():
            raise DataError(f"OpenCV cannot open video {self.cfg.uri}", "re-encode it as H.264/MPEG-4 .mp4")
        self.counters.state = "reading"
        period = 1.0 / (cap.get(cv2.CAP_PROP_FPS) or 30.0)
        next_t = time.monotonic()
        try:
            while not self._stop.is_set():
                ok, frame = cap.read()
                if not ok:
                    return
                if frame is None or frame.ndim != 3 or frame.size == 0:
                    self.counters.bad += 1
                    continue
                self.counters.frames += 1
                if pace:
                    next_t += period
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                yield frame
        finally:
            cap.release()

    # ---- live: newest frame ------------------------------------------------------------------------
    def _newest_frames(self) -> Iterator[np.ndarray]:
        slot: Dict[str, Any] = {"frame": None, "ended": False}
        ready = threading.Condition()
        reader = threading.Thread(target=self._reader, args=(slot, ready), daemon=True, name="edgekit-capture")
        reader.start()
        try:
            while not self._stop.is_set():
                with ready:
                    while slot["frame"] is None and not slot["ended"] and not self._stop.is_set():
                        ready.wait(0.1)
                    frame, slot["frame"] = slot["frame"], None
                    self.counters.waiting = 0
                    if frame is None:
                        return
                yield frame
        finally:
            self._stop.set()
            reader.join(timeout=5)

    def _reader(self, slot: Dict[str, Any], ready: threading.Condition) -> None:
        def publish(frame: Optional[np.ndarray]) -> None:
            with ready:
                if frame is None:
                    slot["ended"] = True
                else:
                    if slot["frame"] is not None:
                        self.counters.dropped += 1
                    slot["frame"] = frame
                    self.counters.waiting = 1
                ready.notify()

        try:
            if self.kind == "file":  # a file paced to real time stands in for a camera
                while not self._stop.is_set():
                    for frame in self._video_once(pace=True):
                        publish(frame)
                    if not self.cfg.loop:
                        break
                self.counters.state = "ended"
            else:
                self._read_live(publish)
        finally:
            publish(None)

    def _read_live(self, publish: Callable[[Optional[np.ndarray]], None]) -> None:
        delay = self.cfg.reconnect_min_s
        first = True
        while not self._stop.is_set():
            if not first:
                self.counters.state = "reconnecting"
                if self._stop.wait(delay):
                    return
                delay = min(delay * 2, self.cfg.reconnect_max_s)
                self.counters.reconnects += 1
            first = False
            cap = self._open_live()
            if cap is None:
                continue
            got = self._pump(cap, publish)
            cap.release()
            if got:
                delay = self.cfg.reconnect_min_s  # it worked for a while: start the backoff again
            if not self._stop.is_set():
                self.counters.losses += 1

    def _pump(self, cap: Any, publish: Callable[[Optional[np.ndarray]], None]) -> bool:
        """Read until the stream stalls or ends; True when at least one frame came."""
        got = False
        last = time.monotonic()
        self.counters.state = "reading"
        while not self._stop.is_set():
            ok, frame = cap.read()
            if ok and frame is not None and frame.ndim == 3:
                got, last = True, time.monotonic()
                self.counters.frames += 1
                publish(frame)
            elif ok:
                self.counters.bad += 1
            elif time.monotonic() - last > self.cfg.stall_timeout_s or not cap.isOpened() or not got:
                return got
            else:
                time.sleep(0.01)
        return got

    def _open_live(self) -> Any:
        import cv2

        uri, timeout_ms = self.cfg.uri, int(self.cfg.stall_timeout_s * 1000)
        if self.kind == "rtsp":
            os.environ.setdefault(_FFMPEG_OPTIONS, "rtsp_transport;tcp")
            params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
            cap = cv2.VideoCapture(uri, cv2.CAP_FFMPEG, params)
        elif self.kind == "gstreamer":
            if uri.startswith("csi://"):
                uri = csi_pipeline(int(uri[len("csi://"):] or 0), self.cfg.width, self.cfg.height, self.cfg.fps)
            cap = cv2.VideoCapture(uri, cv2.CAP_GSTREAMER)
        else:
            device = uri[len("v4l2://"):] if uri.startswith("v4l2://") else uri
            cap = cv2.VideoCapture(device, cv2.CAP_V4L2)
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.cfg.width)
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.cfg.height)
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)
        if not cap.isOpened():
            cap.release()
            self.counters.state = "reconnecting"
            return None
        return cap


def open_source(cfg: SourceConfig) -> FrameSource:
    return FrameSource(cfg)


__all__ = ["FrameSource", "SourceCounters", "open_source", "source_kind", "csi_pipeline"]
