"""``RefDetDetector``: the few-shot reference detector on the device (two graphs, one target at a time).

A RefDet bundle holds two graphs (docs/refdet-deploy.md): the *reference encoder* (``refs`` ->
``embedding``, run once per reference photo when the target changes) and the *per-frame graph*
(``images`` + ``embedding`` -> ``output0`` (1, 5, A): cx, cy, w, h, score). :meth:`set_target` runs
the encoder on 1-3 photos, averages their L2-normalised embeddings and L2-normalises the mean (the
model's own rule for several references); every frame then goes through the per-frame graph with
that embedding as its second input. Boxes come out as ``xywhr`` rows with angle 0 and class 0.

The detector keeps the stage interface of :class:`~edgekit.deploy.detector.Detector`
(``prepare``/``infer``/``decode``/``__call__``), so :class:`~edgekit.deploy.pipeline.Pipeline`,
``edgekit bench`` and the daemon run it unchanged; until a target is set it uses the bundle's
default target (the export's reference photos, ``references/`` in the bundle). Changing the
target while frames flow is safe: a frame's feed takes the embedding current when it is prepared.

Device side: Python 3.8, numpy and the runner contract only (no torch).

>>> with Bundle.open("bundle").detector("onnxruntime") as det:  # doctest: +SKIP
...     det.set_target([cv2.imread("ref1.jpg"), cv2.imread("ref2.jpg")])
...     dets = det(cv2.imread("frame.jpg"))
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import DataError, ModelError
from edgekit.core.image_files import imread
from edgekit.core.letterbox import LetterboxInfo, LetterboxSpec, preprocess, unletterbox_xyxy
from edgekit.core.postprocess import PostprocessSpec, decode_refdet, xywh_to_xyxy

from .detector import Detector
from .runners.base import Runner

MAX_REFERENCES = 3
_REF_FIX = "pass 1-3 reference photos of the target as HxWx3 uint8 BGR images (cv2.imread)"


def l2_normalise(v: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Rows of ``v`` scaled to unit L2 norm (float32)."""
    v = np.asarray(v, np.float32)
    return (v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), eps)).astype(np.float32)


def combine_embeddings(embeddings: Sequence[np.ndarray]) -> np.ndarray:
    """The target embedding of several references: the mean of their L2-normalised embeddings,
    L2-normalised again, as ``(1, D)`` float32 (the contract of the model's ``encode``)."""
    rows = [l2_normalise(np.asarray(e, np.float32).reshape(1, -1)) for e in embeddings]
    return l2_normalise(np.mean(np.concatenate(rows, 0), axis=0, keepdims=True))


def to_frame(dets: Detections, info: LetterboxInfo) -> Detections:
    """Network-pixel RefDet detections (xywhr, angle 0) -> frame pixels, boxes clipped to the frame
    (as the torch predictor of ``edgekit.train.fewshot`` maps them, so both report the same boxes)."""
    if len(dets) == 0:
        return dets
    b = unletterbox_xyxy(xywh_to_xyxy(dets.boxes[:, :4]), info)
    xywhr = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                      np.zeros(len(b), np.float32)], 1)
    return Detections(xywhr, dets.scores, dets.class_ids)


def read_reference_images(paths: Sequence[Path]) -> List[np.ndarray]:
    """Reference photos from files (BGR uint8); an unreadable file is a one-line DataError naming it."""
    out = []
    for p in paths:
        img = imread(p)
        if img is None:
            raise DataError(f"reference photo {p} cannot be decoded", "replace it with a JPEG or PNG photo")
        out.append(img)
    return out


class RefDetDetector(Detector):
    """Frames in, the target's boxes out; :meth:`set_target` says which object is the target.

    ``runner`` runs the per-frame graph, ``encoder`` the reference encoder (neither activated yet);
    ``reference_letterbox`` is how a reference photo becomes the encoder's input; ``default_references``
    (BGR images or a callable returning them) is the target used until :meth:`set_target`.
    """

    def __init__(self, runner: Runner, encoder: Runner, *, letterbox: LetterboxSpec, postprocess: PostprocessSpec,
                 reference_letterbox: LetterboxSpec, input_name: str = "images", embedding_name: str = "embedding",
                 output_name: str = "output0", encoder_input: str = "refs", encoder_output: str = "embedding",
                 default_references: Any = None, default_source: str = "bundle default") -> None:
        super().__init__(runner, letterbox=letterbox, postprocess=postprocess, input_name=input_name,
                         output_name=output_name)
        self.encoder = encoder
        self.reference_letterbox = reference_letterbox
        self.embedding_name = embedding_name
        self.encoder_input, self.encoder_output = encoder_input, encoder_output
        self._default_references = default_references
        self._default_source = default_source
        self._embedding: Optional[np.ndarray] = None
        self._target: Dict[str, Any] = {"source": None, "n_references": 0, "set_unix": None}
        self._lock = threading.Lock()

    # ---- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> RefDetDetector:
        super().__enter__()
        try:
            if not self.encoder.is_active:
                self.encoder.activate()
            if self._embedding is None and self._default_references is not None:
                self.reset_target()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            self.encoder.deactivate()
        finally:
            super().__exit__(exc_type, exc, tb)

    # ---- the target --------------------------------------------------------------------------------
    def encode(self, image_bgr: np.ndarray) -> np.ndarray:
        """One reference photo -> its L2-normalised ``(1, D)`` embedding (the encoder graph)."""
        if not self.encoder.is_active:
            self.encoder.activate()
        x, _ = preprocess(image_bgr, self.reference_letterbox)
        out = self.encoder.infer({self.encoder_input: x})
        emb = out[self.encoder_output] if self.encoder_output in out else next(iter(out.values()))
        return l2_normalise(np.asarray(emb, np.float32).reshape(1, -1))

    def set_target(self, images: Sequence[np.ndarray], source: str = "custom") -> np.ndarray:
        """Make the object in ``images`` (1-3 BGR photos) the target; returns its ``(1, D)`` embedding.

        Every photo is checked before the target changes: a bad one leaves the old target in place.
        """
        images = list(images) if isinstance(images, (list, tuple)) else [images]
        if not 1 <= len(images) <= MAX_REFERENCES:
            raise DataError(f"got {len(images)} reference photos, the target needs 1 to {MAX_REFERENCES}", _REF_FIX)
        embeddings = []
        for i, img in enumerate(images):
            try:
                embeddings.append(self.encode(img))
            except DataError as e:
                raise DataError(f"reference photo {i + 1}: {e.message}", e.fix or _REF_FIX) from None
        embedding = combine_embeddings(embeddings)
        with self._lock:
            self._embedding = embedding
            self._target = {"source": source, "n_references": len(images), "set_unix": time.time()}
        return embedding

    def reset_target(self) -> np.ndarray:
        """Back to the bundle's default target (its export's reference photos)."""
        refs = self._default_references() if callable(self._default_references) else self._default_references
        if not refs:
            raise ModelError("this bundle ships no default reference photos", "set a target with set_target(images)")
        return self.set_target(refs, source=self._default_source)

    @property
    def target(self) -> Dict[str, Any]:
        """Which target is set: ``source`` ("bundle default", "custom" or None), ``n_references``,
        ``set_unix`` and the embedding size ``dim``."""
        with self._lock:
            info = dict(self._target)
            info["dim"] = None if self._embedding is None else int(self._embedding.shape[1])
        return info

    @property
    def embedding(self) -> Optional[np.ndarray]:
        return self._embedding

    # ---- the frame stages --------------------------------------------------------------------------
    def prepare(self, frame_bgr: np.ndarray, reuse: bool = False) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        feed, info = super().prepare(frame_bgr, reuse)
        embedding = self._embedding
        if embedding is None:
            raise ModelError("no target is set for the RefDet detector",
                             "call set_target(images) with 1-3 reference photos (or POST /references)")
        feed[self.embedding_name] = embedding
        return feed, info

    def decode(self, outputs: Dict[str, np.ndarray], info: LetterboxInfo) -> Detections:
        raw = outputs[self.output_name] if self.output_name else next(iter(outputs.values()))
        return to_frame(decode_refdet(raw, self.postprocess)[0], info)

    def golden_runners(self) -> Dict[str, Runner]:
        """The runner of each graph by model role, for the bundle's golden check."""
        return {"reference_encoder": self.encoder, "fp32": self.runner}


__all__ = ["RefDetDetector", "combine_embeddings", "l2_normalise", "read_reference_images", "to_frame",
           "MAX_REFERENCES"]
