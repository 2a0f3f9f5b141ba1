"""The running service: capture -> infer -> publish, model loading, warm-up and hot reload.

Capture is the frame source (newest-frame for live sources, every frame for files); infer is the
pipelined runtime of :mod:`edgekit.deploy.pipeline` (the one ``edgekit bench`` measures); publish
is a thread that turns each result into the JSON every client gets and fans it out to per-client
bounded queues, so no client can slow inference. Queues between stages are bounded and every
drop is counted per stage.

A reload loads and warms the new bundle in a background thread while the old one keeps serving;
the swap happens between two frames (the pipeline is drained, not cut). If loading fails the old
model stays and the failure is reported.
"""

from __future__ import annotations

import collections
import json
import logging
import queue
import re
import threading
import time
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterator, List, Optional, Tuple

import numpy as np

from edgekit.core.errors import ConfigError, EdgekitError, ModelError

from ..bundle import Bundle
from ..pipeline import FrameResult, Pipeline
from .config import DaemonConfig
from .fanout import Fanout
from .metrics import DaemonMetrics
from .sources import FrameSource

log = logging.getLogger("edgekit.serve")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
EXIT_OK, EXIT_FAILED = 0, 3


class Service:
    """One bundle served from one source. ``start()`` returns at once; ``done`` is set at the end."""

    def __init__(self, cfg: DaemonConfig, bundle: Bundle, source: FrameSource) -> None:
        self.cfg = cfg
        self.bundle = bundle
        self.source = source
        self.models_dir = Path(cfg.models_dir).expanduser().resolve() if cfg.models_dir else bundle.root.parent.resolve()
        self.state = "starting"
        self.state_since = time.monotonic()
        self.error: Optional[str] = None
        self.exit_code = EXIT_OK
        self.done = threading.Event()
        self.fanout = Fanout(cfg.subscriber_queue)
        self.metrics = DaemonMetrics(self.snapshot_state)
        self.published = 0  # frames through the publish stage (the watchdog's progress counter)
        self.reload_status: Dict[str, Any] = {"state": "none"}
        self.publish_hooks: List[Callable[[str], None]] = []  # e.g. the MQTT publisher
        self._detector: Any = None
        self._model_info: Dict[str, Any] = {}
        self._pending: Optional[Tuple[Any, Dict[str, Any]]] = None
        self._reloading = threading.Lock()
        self._stop = threading.Event()
        self._publish_q: queue.Queue = queue.Queue(cfg.queue_size * 4)
        self._latest: Optional[Tuple[Dict[str, Any], Optional[np.ndarray]]] = None
        self._jpeg: Tuple[int, bytes] = (-1, b"")
        self._done_times: Deque[float] = collections.deque(maxlen=120)
        self._seen = {"dropped": 0, "bad": 0, "pipe_bad": 0}
        self._threads = [threading.Thread(target=self._main, name="edgekit-serve", daemon=True),
                         threading.Thread(target=self._publish_loop, name="edgekit-publish", daemon=True)]

    # ---- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Service:
        for t in self._threads:
            t.start()
        return self

    def stop(self, timeout: Optional[float] = None) -> None:
        """Stop reading, let the frames in flight finish (up to ``timeout``), then return."""
        self._set_state("draining")
        self._stop.set()
        self.source.stop()
        self.done.wait(timeout if timeout is not None else self.cfg.drain_timeout_s)

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def _set_state(self, state: str) -> None:
        if self.state in ("failed", "ended") and state == "draining":
            return
        self.state, self.state_since = state, time.monotonic()
        log.info("state: %s", state)

    def _main(self) -> None:
        try:
            det, info = self._load(self.bundle, announce=True)
            self._detector, self._model_info = det, info
            self.metrics.model.info({k: str(v) for k, v in info.items()})
            self._set_state("ready")
            self._serve_frames()
            if self.state != "draining":
                self._set_state("ended")
        except BaseException as e:  # noqa: BLE001 - any runtime failure must end the process non-zero
            self.error = e.format() if isinstance(e, EdgekitError) else f"{type(e).__name__}: {e}"
            log.error("fatal: %s", self.error)
            self.exit_code = EXIT_FAILED
            self._set_state("failed")
        finally:
            self._publish_q.put(None)
            self._threads[1].join(timeout=5)
            for det in (self._detector, self._pending[0] if self._pending else None):
                if det is not None:
                    det.__exit__(None, None, None)
            self.done.set()

    # ---- model loading -----------------------------------------------------------------------------
    def _load(self, bundle: Bundle, announce: bool) -> Tuple[Any, Dict[str, Any]]:
        """Build (TensorRT: possibly minutes, shown as 'building_engine'), activate and warm up."""
        if announce:
            self._set_state("building_engine" if self.cfg.backend == "tensorrt" else "loading_model")
            threading.Thread(target=self._log_progress, name="edgekit-progress", daemon=True).start()
        extra = {"pipeline_sessions": self.cfg.pipeline_sessions} if self.cfg.pipeline_sessions else {}
        det = bundle.detector(self.cfg.backend, self.cfg.precision, tile=self.cfg.tile, tile_overlap=self.cfg.tile_overlap,
                              **extra)
        det.__enter__()
        try:
            if announce:
                self._set_state("warming_up")
            h, w = bundle.manifest.preprocess.imgsz
            frame = np.zeros((h, w, 3), np.uint8)
            for _ in range(self.cfg.warmup_frames):
                det.detect(frame)
        except BaseException:
            det.__exit__(None, None, None)
            raise
        info = {"name": bundle.root.name, "path": str(bundle.root), "task": bundle.task,
                "classes": ",".join(bundle.classes), "backend": self.cfg.backend,
                "precision": self.cfg.precision, "imgsz": "x".join(map(str, bundle.manifest.preprocess.imgsz))}
        return det, info

    def _log_progress(self, every_s: float = 15.0) -> None:
        """A TensorRT build on a Jetson can take minutes with no output of its own: say it is alive."""
        state = self.state
        while not self._stop.wait(every_s) and self.state == state:
            log.warning("still %s after %.0f s (/health/live shows the state)", state.replace("_", " "),
                        time.monotonic() - self.state_since)

    def model_info(self) -> Dict[str, Any]:
        return dict(self._model_info)

    # ---- the RefDet target (POST/GET/DELETE /references) ----------------------------------------------
    def _refdet(self) -> Any:
        det = self._detector
        if det is None:
            raise ModelError("the model is not loaded yet", "wait for /health/ready")
        if not hasattr(det, "set_target"):
            raise ConfigError(f"bundle {self._model_info.get('name')} (task {self._model_info.get('task')}) takes no "
                              "references", "serve a RefDet bundle to set a target")
        return det

    def references(self) -> Dict[str, Any]:
        """Which target the served RefDet bundle looks for (``source``: "bundle default" or "custom")."""
        return {"model": self._model_info.get("name"), "target": self._refdet().target}

    def set_references(self, images: List[np.ndarray]) -> Dict[str, Any]:
        """Make the object in ``images`` (1-3 BGR photos) the target; frames prepared from now on use it.
        A bad photo raises a DataError and leaves the old target."""
        self._refdet().set_target(images)
        log.info("target set from %d reference photo(s)", len(images))
        return self.references()

    def clear_references(self) -> Dict[str, Any]:
        """Back to the bundle's default target (its export's reference photos)."""
        self._refdet().reset_target()
        log.info("target reset to the bundle default")
        return self.references()

    def resolve_model(self, name: str) -> Path:
        """``name`` as a bundle directory directly inside the models directory, or a ConfigError."""
        if not _NAME.match(name or ""):
            raise ConfigError(f"model name {name!r} is not a plain directory name",
                              f"pass the name of a bundle directory inside {self.models_dir}")
        path = (self.models_dir / name).resolve()
        if path.parent != self.models_dir:  # a symlink pointing out of the models directory
            raise ConfigError(f"model {name!r} resolves outside {self.models_dir}",
                              "copy the bundle into the models directory")
        if not path.is_dir():
            raise ModelError(f"no bundle {name!r} in {self.models_dir}", "copy the bundle there first")
        return path

    def request_reload(self, name: str) -> Dict[str, Any]:
        """Start loading bundle ``name`` in the background; raises ConfigError/ModelError at once."""
        path = self.resolve_model(name)
        if not self._reloading.acquire(blocking=False):
            raise ModelError("a reload is already running", "wait for GET /model to report it finished")
        self.reload_status = {"state": "loading", "name": name, "started": time.time()}
        threading.Thread(target=self._reload, args=(path,), name="edgekit-reload", daemon=True).start()
        return dict(self.reload_status)

    def _reload(self, path: Path) -> None:
        try:
            bundle = Bundle.open(path, verify=True)
            det, info = self._load(bundle, announce=False)
            self.reload_status = dict(self.reload_status, state="swapping")
            self._pending = (det, info)
        except BaseException as e:  # noqa: BLE001 - the old model keeps serving; the client reads the error
            msg = e.format() if isinstance(e, EdgekitError) else f"{type(e).__name__}: {e}"
            log.warning("reload of %s failed, keeping %s: %s", path.name, self._model_info.get("name"), msg)
            self.reload_status = dict(self.reload_status, state="failed", error=msg)
            self.metrics.reloads.labels("failed").inc()
            self._reloading.release()

    def _swap(self) -> None:
        assert self._pending is not None
        (det, info), self._pending = self._pending, None
        old, self._detector, self._model_info = self._detector, det, info
        self.metrics.model.info({k: str(v) for k, v in info.items()})
        old.__exit__(None, None, None)
        self.reload_status = dict(self.reload_status, state="ok", finished=time.time())
        self.metrics.reloads.labels("ok").inc()
        log.info("now serving %s", info["name"])
        self._reloading.release()

    # ---- capture -> infer ----------------------------------------------------------------------------
    def _serve_frames(self) -> None:
        frames = self.source.frames()
        ended = [False]
        while not ended[0]:
            pipe = Pipeline(self._detector, queue_size=self.cfg.queue_size, keep_frames=True, skip_bad_frames=True)
            for result in pipe.run(self._feed(frames, ended)):
                self._sync_capture_counters(pipe.stats.bad_frames)
                self.metrics.observe_frame(result.timings)
                if not self.source.live:  # files: every frame reaches the clients
                    self._publish_q.put(result)
                    continue
                try:
                    self._publish_q.put_nowait(result)
                except queue.Full:  # live: a slow publisher loses frames, inference goes on
                    self.metrics.dropped.labels("publish").inc()
            self._sync_capture_counters(pipe.stats.bad_frames)
            self._seen["pipe_bad"] = 0
            if self._pending is not None:
                self._swap()

    def _feed(self, frames: Iterator[np.ndarray], ended: list) -> Iterator[np.ndarray]:
        """The source's frames until it ends or a new model waits to be swapped in."""
        while self._pending is None:
            frame = next(frames, None)
            if frame is None:
                ended[0] = True
                return
            self.metrics.frames.labels("capture").inc()
            yield frame

    def _sync_capture_counters(self, pipe_bad: int) -> None:
        c, seen = self.source.counters, self._seen
        self.metrics.dropped.labels("capture").inc(c.dropped - seen["dropped"])
        bad = c.bad - seen["bad"] + pipe_bad - seen["pipe_bad"]
        if bad:
            self.metrics.bad_frames.inc(bad)
            self.metrics.dropped.labels("capture").inc(bad)
        seen.update(dropped=c.dropped, bad=c.bad, pipe_bad=pipe_bad)

    # ---- publish -------------------------------------------------------------------------------------
    def _publish_loop(self) -> None:
        while True:
            result = self._publish_q.get()
            if result is None:
                return
            payload = self.payload(result, self.published)
            text = json.dumps(payload)
            self._latest = (payload, result.frame)
            self._done_times.append(time.monotonic())
            dropped = self.fanout.publish(text)
            if dropped:
                self.metrics.dropped.labels("publish").inc(dropped)
            self.metrics.frames.labels("publish").inc()
            self.published += 1
            for hook in list(self.publish_hooks):
                hook(text)

    def payload(self, result: FrameResult, seq: int) -> Dict[str, Any]:
        """One frame's JSON: ``frame`` counts published frames from 0 since start (it does not restart
        when a file loops or a model is swapped); ``detections`` is :meth:`Detections.to_dict`."""
        ms = {k[:-2] + "_ms": round(v * 1000.0, 3) for k, v in result.timings.items()}
        return {"frame": seq, "time": time.time(), "frame_shape": list(result.frame_shape),
                "model": self._model_info.get("name"), "timings": ms, "detections": result.detections.to_dict()}

    def latest(self) -> Optional[Dict[str, Any]]:
        return self._latest[0] if self._latest else None

    def latest_jpeg(self) -> Optional[Tuple[Dict[str, Any], bytes]]:
        """The newest frame as JPEG with its payload (encoded once per frame, on demand)."""
        latest = self._latest
        if latest is None or latest[1] is None:
            return None
        payload, frame = latest
        if self._jpeg[0] != payload["frame"]:
            import cv2

            ok, buf = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, self.cfg.jpeg_quality])
            self._jpeg = (payload["frame"], buf.tobytes() if ok else b"")
        return payload, self._jpeg[1]

    def fps(self) -> float:
        times = list(self._done_times)
        now = time.monotonic()
        recent = [t for t in times if now - t <= 3.0]
        if len(recent) < 2:
            return 0.0
        return (len(recent) - 1) / max(recent[-1] - recent[0], 1e-6)

    def snapshot_state(self) -> Dict[str, Any]:
        c = self.source.counters
        return {"state": self.state, "ready": self.ready, "state_s": round(time.monotonic() - self.state_since, 1),
                "error": self.error, "fps": self.fps(), "subscribers": len(self.fanout),
                "source": {"uri": self.cfg.source.uri, "kind": self.source.kind, "live": self.source.live,
                           "state": c.state, "frames": c.frames, "dropped": c.dropped, "bad": c.bad},
                "reconnects": c.reconnects, "losses": c.losses,
                "queues": {"capture": c.waiting, "publish": self._publish_q.qsize()},
                "model": self.model_info(), "reload": dict(self.reload_status)}


__all__ = ["Service", "EXIT_OK", "EXIT_FAILED"]
