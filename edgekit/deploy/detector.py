"""``Detector``: one BGR frame in, :class:`~edgekit.core.detections.Detections` in frame pixels out.

frame -> :func:`edgekit.core.letterbox.preprocess` (the bundle's spec) -> any runner of the runner
contract -> :func:`edgekit.core.postprocess.decode` (the bundle's thresholds) -> unletterbox. It
depends on the runner contract and the manifest only, so the same code serves ONNX Runtime on a
laptop and TensorRT on the Jetson.
"""

from __future__ import annotations

import time
from typing import Any, Dict, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError, ModelError
from edgekit.core.letterbox import (
    LetterboxInfo,
    LetterboxSpec,
    letterbox,
    preprocess,
    unletterbox_xywhr,
    unletterbox_xyxy,
)
from edgekit.core.postprocess import (
    CANDIDATE_OUTPUT,
    DECODED_OUTPUT,
    PostprocessSpec,
    decode,
    detections_from_candidates,
    detections_from_rows,
)

from .runners.base import Runner, Ticket
from .uint8_input import takes_uint8_frames


class Detector:
    """Preprocess, infer, decode and map back to the frame, with per-stage timings.

    >>> with Detector(create_runner("onnxruntime", "bundle/model.onnx"), load_manifest("bundle")) as det:  # doctest: +SKIP
    ...     dets = det(cv2.imread("frame.jpg"))
    """

    def __init__(self, runner: Runner, manifest: Any = None, *, letterbox: Optional[LetterboxSpec] = None,
                 postprocess: Optional[PostprocessSpec] = None, input_name: Optional[str] = None,
                 output_name: Optional[str] = None) -> None:
        from_manifest = manifest_settings(manifest) if manifest is not None else {}
        self.runner = runner
        self.letterbox: LetterboxSpec = letterbox or from_manifest.get("letterbox") or LetterboxSpec()
        self.postprocess: PostprocessSpec = postprocess or from_manifest.get("postprocess") or PostprocessSpec()
        self.input_name = input_name or from_manifest.get("input_name")
        self.output_name = output_name or from_manifest.get("output_name")
        self.timings: Dict[str, float] = {}
        self._uint8_input: Optional[bool] = None  # decided from the runner's input on the first frame
        self._input_buffer: Optional[np.ndarray] = None  # the float input prepare(reuse=True) writes into
        self._checked_feed: Optional[Tuple[str, Tuple[int, ...], np.dtype]] = None  # see infer()
        on_device = getattr(runner, "decode_spec", None)  # a runner that decodes on its device (torch GPU path)
        if on_device is not None and on_device != self.postprocess:
            raise ConfigError("the runner decodes with other thresholds than the detector's postprocess settings",
                              "build the runner with decode= the same PostprocessSpec as the detector")

    def __enter__(self) -> Detector:
        if not self.runner.is_active:
            self.runner.activate()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.runner.deactivate()

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect(frame_bgr)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        t0 = time.perf_counter()
        feed, info = self.prepare(frame_bgr, True)  # reuse the input buffer: consumed below
        t1 = time.perf_counter()
        outputs = self.infer(feed)
        t2 = time.perf_counter()
        dets = self.decode(outputs, info)
        t3 = time.perf_counter()
        self.timings = {"preprocess_s": t1 - t0, "infer_s": t2 - t1, "postprocess_s": t3 - t2, "total_s": t3 - t0}
        return dets

    # The three stages, separately callable so the pipelined runtime can overlap them across frames.
    def prepare(self, frame_bgr: np.ndarray, reuse: bool = False) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        """Frame -> the runner's feed (checked: see :func:`edgekit.core.letterbox.as_bgr_frame`).

        ``reuse``: write the float input into the detector's own buffer instead of a new array, for a
        caller that hands the feed to the runner before preparing the next frame (``detect``, the
        bench's per-frame loop); a feed that waits in a queue (the pipeline) must not reuse it.
        """
        name = self._input_name()
        if self._uint8_input is None:
            meta = self.runner.input_metadata()[name]
            self._uint8_input = takes_uint8_frames(meta.shape, meta.dtype)
        if self._uint8_input:  # the model normalises on its own (uint8_input.py): feed the letterboxed frame
            target = getattr(self.runner, "feed_buffer", None) if reuse else None
            buf = target() if callable(target) else None  # a runner's own (pinned) input: no host copy
            copy = getattr(self.runner, "host_copy", None) if buf is not None else None
            boxed, info = letterbox(frame_bgr, self.letterbox, out=buf[0] if buf is not None else None, copy=copy)
            return {name: boxed[None] if buf is None else buf}, info
        x, info = preprocess(frame_bgr, self.letterbox, out=self._input_buffer if reuse else None)
        if reuse:
            self._input_buffer = x
        return {name: x}, info

    # A feed with the same single name, shape and dtype as the last one the runner checked is not
    # checked again: prepare() gives every frame the same (the spec's imgsz), and the runner's checks cost
    # more per frame than the whole host decode on a slow CPU.
    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        key = _feed_key(feed)
        outputs = self.runner.infer(feed, check_inputs=key is None or key != self._checked_feed)
        self._checked_feed = key
        return outputs

    # infer in two halves (the pipelined runtime queues frame i+1 on the device while frame i runs)
    def submit(self, feed: Dict[str, np.ndarray]) -> Ticket:
        key = _feed_key(feed)
        ticket = self.runner.submit(feed, check_inputs=key is None or key != self._checked_feed)
        self._checked_feed = key
        return ticket

    def collect(self, ticket: Ticket) -> Dict[str, np.ndarray]:
        return self.runner.collect(ticket)

    def decode(self, outputs: Dict[str, np.ndarray], info: LetterboxInfo) -> Detections:
        """Raw (or device-decoded) outputs of one frame -> detections in that frame's pixels."""
        if DECODED_OUTPUT in outputs:
            dets = detections_from_rows(outputs[DECODED_OUTPUT])
        elif CANDIDATE_OUTPUT in outputs:  # trimmed on the device, suppressed here
            dets = detections_from_candidates(outputs[CANDIDATE_OUTPUT], self.postprocess)
        else:
            raw = outputs[self.output_name] if self.output_name else next(iter(outputs.values()))
            dets = decode(raw, self.postprocess)[0]
        if len(dets) == 0:
            return dets
        if dets.is_obb:  # unletterbox_xywhr returns a new C-contiguous float32 array: already in checked form
            return Detections.trusted(unletterbox_xywhr(dets.boxes, info), dets.scores, dets.class_ids)
        return Detections(unletterbox_xyxy(dets.boxes, info), dets.scores, dets.class_ids)

    def _input_name(self) -> str:
        if self.input_name:
            return self.input_name
        names = list(self.runner.input_metadata())
        if len(names) != 1:
            raise ModelError(f"model has inputs {names}; the detector needs exactly one image input",
                             "name the image input in the manifest")
        self.input_name = names[0]
        return self.input_name


def _feed_key(feed: Dict[str, np.ndarray]) -> Optional[Tuple[str, Tuple[int, ...], np.dtype]]:
    """(name, shape, dtype) of a one-array feed; None for anything else (always checked)."""
    if len(feed) != 1:
        return None
    name, arr = next(iter(feed.items()))
    return (name, arr.shape, arr.dtype) if type(arr) is np.ndarray else None


def manifest_settings(manifest: Any) -> Dict[str, Any]:
    """Letterbox spec, postprocess spec and I/O names from a bundle manifest (BundleManifest or its dict)."""
    if isinstance(manifest, dict):
        from edgekit.core.config import build_config
        from edgekit.core.manifest import BundleManifest

        manifest = build_config(BundleManifest, manifest, "manifest")
    model = manifest.models.get("fp32") or manifest.models.get("detector") or next(iter(manifest.models.values()), None)
    # The frame goes to the image input (N, C, H, W), which need not be the first: a per-frame graph
    # may also take an embedding.
    images = [t for t in model.inputs if len(t.shape) == 4] if model is not None else []
    return {
        "letterbox": manifest.preprocess,
        "postprocess": manifest.postprocess,
        "input_name": (images or model.inputs)[0].name if model is not None and model.inputs else None,
        "output_name": model.outputs[0].name if model is not None and model.outputs else None,
    }


__all__ = ["Detector", "manifest_settings"]
