"""Sliced inference: a large frame as overlapping tiles through one :class:`~edgekit.deploy.detector.Detector`.

A 4000-px aerial frame letterboxed to 640 shrinks a 20-px car to 3 px; cut into model-sized tiles
instead, each object is seen at (about) native resolution. :class:`TiledDetector` has the Detector
interface (``__call__``, ``prepare/infer/decode``, ``timings``, context manager), so bench, the
pipelined runtime and the daemon take it unchanged:

- **prepare** cuts the frame on the grid of :func:`edgekit.core.tiling.tile_windows` (the rule
  ``edgekit data tile`` trains on; edge tiles are moved inside, never padded), letterboxes every
  tile with the detector's own preprocessing and stacks them on the batch axis; with
  ``full_frame`` the whole frame, letterboxed at model size, is one more entry (large objects);
- **infer** runs them as one batch when the runner's input batch axis is dynamic (or a static
  batch equal to the number of tiles), else in chunks of the static batch (a stream for batch 1);
  ``last_inference_time`` of :attr:`TiledDetector.runner` is the sum over the chunks;
- **decode** decodes each tile with its own ``LetterboxInfo``, shifts the boxes by the tile's
  offset into frame pixels, then merges across tiles (:func:`merge_tiles`).

Merging (numpy only, :mod:`edgekit.core.geometry`): a box that touches an *inner* tile edge (one
that is not the frame's border) is a cut view of its object. It is dropped when a box of the same
class that touches no inner edge (the neighbour that sees the object whole, or the full-frame pass)
covers at least half of it; cut boxes that no one sees whole (objects larger than the overlap) are
fused with the overlapping cut boxes of other tiles into one box (the minimum-area rectangle of
their corners). Class-aware greedy NMS on the exact polygon IoU then removes the duplicates two
tiles both see whole.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError
from edgekit.core.geometry import corners_to_xywhr, obb_iou_matrix, rotated_nms, xywhr_to_corners
from edgekit.core.letterbox import LetterboxInfo, as_bgr_frame
from edgekit.core.tiling import TileWindow, check_tile_args, tile_windows

from .detector import Detector

EDGE_MARGIN_PX = 2.0  # a box within this of an inner tile edge counts as cut by it
COVER_FRACTION = 0.5  # a whole box covering this much of a cut box's area replaces it


class TilePlan(NamedTuple):
    """What :meth:`TiledDetector.prepare` did to one frame: tile windows (frame pixels), the
    letterbox of each batch entry, the frame's (height, width), and whether the last entry is the
    full-frame pass."""

    windows: List[TileWindow]
    letterbox: List[LetterboxInfo]
    frame_shape: Tuple[int, int]
    full_frame: bool

    @property
    def orig_shape(self) -> Tuple[int, int]:
        """The frame's (height, width), as :class:`LetterboxInfo` names it (the pipeline reads it)."""
        return self.frame_shape


class _SummedTimeRunner:
    """The detector's runner, except that ``last_inference_time`` is the sum over one frame's chunks."""

    def __init__(self, runner: Any) -> None:
        self._runner = runner
        self.last_frame_compute_s: Optional[float] = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._runner, name)

    def last_inference_time(self) -> Optional[float]:
        return self.last_frame_compute_s

    def __repr__(self) -> str:
        return f"tiled({self._runner!r})"


class TiledDetector:
    """Sliced inference over ``detector`` (see the module docstring).

    >>> with tiled(Bundle.open("bundle").detector(), tile=640, overlap=128) as det:  # doctest: +SKIP
    ...     dets = det(cv2.imread("aerial_4k.jpg"))
    """

    def __init__(self, detector: Detector, tile: int = 640, overlap: int = 128, full_frame: bool = False,
                 batch: Optional[int] = None, iou: float = 0.5, max_det: Optional[int] = None) -> None:
        check_tile_args(tile, overlap, "--tile")
        if batch is not None and batch < 1:
            raise ConfigError(f"tile batch {batch} must be at least 1", "pass batch=None (from the model) or >= 1")
        self.detector = detector
        self.tile, self.overlap, self.full_frame, self.batch = tile, overlap, full_frame, batch
        self.iou = iou
        self.max_det = max_det or detector.postprocess.max_det
        self.runner = _SummedTimeRunner(detector.runner)
        self.timings: Dict[str, float] = {}

    # The Detector's settings, so code reading them (bench, daemon) sees the model's.
    @property
    def letterbox(self) -> Any:
        return self.detector.letterbox

    @property
    def postprocess(self) -> Any:
        return self.detector.postprocess

    @postprocess.setter
    def postprocess(self, spec: Any) -> None:  # accuracy runs lower the confidence threshold for a while
        self.detector.postprocess = spec

    def __enter__(self) -> TiledDetector:
        self.detector.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.detector.__exit__(exc_type, exc, tb)

    def __call__(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect(frame_bgr)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        t0 = time.perf_counter()
        feed, plan = self.prepare(frame_bgr)
        t1 = time.perf_counter()
        outputs = self.infer(feed)
        t2 = time.perf_counter()
        dets = self.decode(outputs, plan)
        t3 = time.perf_counter()
        self.timings = {"preprocess_s": t1 - t0, "infer_s": t2 - t1, "postprocess_s": t3 - t2, "total_s": t3 - t0,
                        "tiles": float(len(plan.letterbox))}
        return dets

    # ---- the three stages ------------------------------------------------------------------------
    def prepare(self, frame_bgr: np.ndarray) -> Tuple[Dict[str, np.ndarray], TilePlan]:
        """Frame -> one feed holding every tile (and the full frame) on the batch axis, and the plan."""
        frame = as_bgr_frame(frame_bgr)
        h, w = frame.shape[:2]
        windows = tile_windows(w, h, self.tile, self.overlap)
        feeds, infos = [], []
        for win in windows:
            feed, info = self.detector.prepare(frame[win.y:win.y1, win.x:win.x1])
            feeds.append(feed)
            infos.append(info)
        full = self.full_frame and len(windows) > 1  # one tile is the whole frame already
        if full:
            feed, info = self.detector.prepare(frame)
            feeds.append(feed)
            infos.append(info)
        stacked = {name: np.ascontiguousarray(np.concatenate([f[name] for f in feeds], 0)) for name in feeds[0]}
        return stacked, TilePlan(windows, infos, (h, w), full)

    def infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Every batch entry through the runner: at once, or in chunks the model's batch axis takes."""
        n = len(next(iter(feed.values())))
        chunk = self._chunk(feed, n)
        outputs: Dict[str, List[np.ndarray]] = {}
        compute = 0.0
        for start in range(0, n, chunk):
            part = {k: v[start:start + chunk] for k, v in feed.items()}
            real = len(next(iter(part.values())))
            if real < chunk:  # a static batch larger than what is left: pad with copies, drop their outputs
                part = {k: np.concatenate([v] + [v[-1:]] * (chunk - real), 0) for k, v in part.items()}
            out = self.detector.infer(part)
            compute += self.detector.runner.last_inference_time() or 0.0
            for k, v in out.items():
                outputs.setdefault(k, []).append(np.asarray(v)[:real])
        self.runner.last_frame_compute_s = compute
        return {k: np.concatenate(v, 0) for k, v in outputs.items()}

    def _chunk(self, feed: Dict[str, np.ndarray], n: int) -> int:
        if self.batch is not None:
            return self.batch
        metas = self.detector.runner.input_metadata()
        meta = metas.get(next(iter(feed)))
        if meta is None or meta.is_dynamic(0):
            return n
        return int(meta.shape[0])

    def decode(self, outputs: Dict[str, np.ndarray], plan: TilePlan) -> Detections:
        """Raw outputs of every batch entry -> one set of detections in frame pixels, merged across tiles."""
        per_tile: List[Detections] = []
        for i, info in enumerate(plan.letterbox):
            dets = self.detector.decode({k: v[i:i + 1] for k, v in outputs.items()}, info)
            if i < len(plan.windows) and len(dets):
                win = plan.windows[i]
                boxes = dets.boxes.copy()
                boxes[:, 0] += win.x
                boxes[:, 1] += win.y
                if not dets.is_obb:
                    boxes[:, 2] += win.x
                    boxes[:, 3] += win.y
                dets = Detections(boxes, dets.scores, dets.class_ids)
            per_tile.append(dets)
        return merge_tiles(per_tile, plan.windows, plan.frame_shape, self.iou, self.max_det)


def _cut_flags(dets: Detections, win: Optional[TileWindow], frame_shape: Tuple[int, int],
               margin: float = EDGE_MARGIN_PX) -> np.ndarray:
    """(N,) True where a box (frame pixels) touches an inner edge of its tile ``win`` (None: full frame)."""
    if win is None or len(dets) == 0:
        return np.zeros(len(dets), bool)
    h, w = frame_shape
    xyxy = dets.xyxy
    cut = np.zeros(len(dets), bool)
    if win.x > 0:
        cut |= xyxy[:, 0] <= win.x + margin
    if win.y > 0:
        cut |= xyxy[:, 1] <= win.y + margin
    if win.x1 < w:
        cut |= xyxy[:, 2] >= win.x1 - margin
    if win.y1 < h:
        cut |= xyxy[:, 3] >= win.y1 - margin
    return cut


def _intersections(rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """(R, C) intersection areas of xywhr boxes, from their exact IoU (pairs apart cost nothing)."""
    iou = obb_iou_matrix(rows, cols)
    total = (rows[:, 2] * rows[:, 3])[:, None] + (cols[:, 2] * cols[:, 3])[None, :]
    return iou * total / (1.0 + iou)


def _fuse_cut(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, tiles: np.ndarray,
              cut_idx: np.ndarray) -> Tuple[List[np.ndarray], List[float], List[int]]:
    """Cut boxes of one class from different tiles that overlap -> one box each group (union-find)."""
    parent = {int(i): int(i) for i in cut_idx}
    inter = _intersections(boxes[cut_idx], boxes[cut_idx]) if len(cut_idx) else np.zeros((0, 0))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j in zip(*np.nonzero(inter > 0)):
        a, b = int(cut_idx[i]), int(cut_idx[j])
        if a < b and classes[a] == classes[b] and tiles[a] != tiles[b]:
            parent[root(a)] = root(b)
    groups: Dict[int, List[int]] = {}
    for i in cut_idx:
        groups.setdefault(root(int(i)), []).append(int(i))
    fused, fused_scores, fused_classes = [], [], []
    for members in groups.values():
        if len(members) == 1:
            fused.append(boxes[members[0]])
        else:
            fused.append(corners_to_xywhr(xywhr_to_corners(boxes[members]).reshape(1, -1, 2))[0])
        fused_scores.append(float(scores[members].max()))
        fused_classes.append(int(classes[members[0]]))
    return fused, fused_scores, fused_classes


def merge_tiles(per_tile: List[Detections], windows: List[TileWindow], frame_shape: Tuple[int, int],
                iou: float = 0.5, max_det: int = 300) -> Detections:
    """Merge per-entry detections (frame pixels; entries past ``windows`` are full-frame passes).

    See the module docstring for the rule. Axis-aligned boxes are merged as boxes of angle 0.
    """
    obb = not per_tile or per_tile[0].is_obb
    if not any(len(d) for d in per_tile):
        return Detections.empty(obb=obb)
    cut = np.concatenate([_cut_flags(d, windows[i] if i < len(windows) else None, frame_shape)
                          for i, d in enumerate(per_tile)])
    tiles = np.concatenate([np.full(len(d), i) for i, d in enumerate(per_tile)])
    alld = Detections.concat(per_tile, obb=obb)
    boxes, scores, classes = alld.xywhr.astype(np.float64), alld.scores, alld.class_ids
    cut_idx, whole = np.flatnonzero(cut), np.flatnonzero(~cut)
    covered = np.zeros(len(cut_idx), bool)
    if len(cut_idx) and len(whole):  # cut rows x whole columns only: N x N would not fit at low conf
        inter = _intersections(boxes[cut_idx], boxes[whole])
        area = np.maximum(boxes[cut_idx, 2] * boxes[cut_idx, 3], 1e-9)
        same_class = classes[cut_idx][:, None] == classes[whole][None, :]
        covered = ((inter / area[:, None] >= COVER_FRACTION) & same_class).any(1)
    fused, fused_scores, fused_classes = _fuse_cut(boxes, scores, classes, tiles, cut_idx[~covered])
    out_boxes = np.concatenate([boxes[whole], np.asarray(fused, np.float64).reshape(-1, 5)])
    out_scores = np.concatenate([scores[whole], np.asarray(fused_scores, np.float32)])
    out_classes = np.concatenate([classes[whole], np.asarray(fused_classes, np.int64)])
    keep = rotated_nms(out_boxes, out_scores, iou, out_classes, max_det, iou="polygon")
    boxes_k = out_boxes[keep]
    if not obb:
        corners = xywhr_to_corners(boxes_k)
        boxes_k = np.concatenate([corners.min(1), corners.max(1)], 1)
    return Detections(boxes_k.astype(np.float32), out_scores[keep], out_classes[keep])


def tiled(detector: Detector, tile: int = 640, overlap: int = 128, **options: Any) -> TiledDetector:
    """``detector`` with sliced inference (:class:`TiledDetector`)."""
    return TiledDetector(detector, tile, overlap, **options)


__all__ = ["TiledDetector", "TilePlan", "merge_tiles", "tiled", "EDGE_MARGIN_PX", "COVER_FRACTION"]
