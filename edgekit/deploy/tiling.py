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
covers at least half of it; a cut box that no one sees whole (an object larger than the overlap)
absorbs the overlapping cut boxes of its class from other tiles, best score first, one hop (so
low-score boxes cannot chain a seam into one box): one box, the minimum-area rectangle of their
corners. Class-aware greedy NMS on the exact polygon IoU then removes the duplicates two
tiles both see whole.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError
from edgekit.core.geometry import convex_intersection_area, corners_to_xywhr, xywhr_to_corners
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
        if getattr(detector.runner, "decode_spec", None) is not None:  # its outputs are one frame's kept boxes
            raise ConfigError("sliced inference needs the model's raw outputs, and this runner decodes on its device",
                              "build the runner without decode= for tiling")
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
    def prepare(self, frame_bgr: np.ndarray, reuse: bool = False) -> Tuple[Dict[str, np.ndarray], TilePlan]:
        """Frame -> one feed holding every tile (and the full frame) on the batch axis, and the plan.

        ``reuse`` is accepted for the Detector's signature; the stacked feed is always a new array.
        """
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


def _hulls(boxes: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    corners = xywhr_to_corners(boxes)
    return corners, np.concatenate([corners.min(1), corners.max(1)], 1)


def _touching(h: np.ndarray, hb: np.ndarray) -> np.ndarray:
    """(len(h), len(hb)) bool: axis-aligned hulls (x0, y0, x1, y1) that overlap."""
    return ((h[:, None, 0] < hb[None, :, 2]) & (hb[None, :, 0] < h[:, None, 2])
            & (h[:, None, 1] < hb[None, :, 3]) & (hb[None, :, 1] < h[:, None, 3]))


def _overlap_pairs(a: np.ndarray, b: np.ndarray, min_inter: Optional[np.ndarray] = None, block: int = 256
                   ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sparse overlaps of xywhr boxes ``a`` x ``b``: (i, j, intersection area) for every pair that overlaps
    (by at least ``min_inter[i]``, when given: pairs whose hulls overlap by less are never clipped).

    Rows are taken in x order a block at a time, each against the columns of its x strip only, and
    only hulls that touch are clipped exactly: memory and time stay near linear in the boxes (at mAP
    time's conf 0.001 a frame of many tiles holds tens of thousands of boxes; N x N would not fit).
    """
    if len(a) == 0 or len(b) == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, np.zeros(0)
    ca, ha = _hulls(a)
    cb, hb = _hulls(b)
    order = np.argsort(ha[:, 0], kind="stable")
    rows, cols = [], []
    for r0 in range(0, len(a), block):
        idx = order[r0:r0 + block]
        h = ha[idx]
        strip = np.flatnonzero((hb[:, 0] < h[:, 2].max()) & (hb[:, 2] > h[:, 0].min()))
        i, j = np.nonzero(_touching(h, hb[strip]))
        if min_inter is not None:  # the hulls' overlap bounds the boxes' from above
            hi, hj = h[i], hb[strip[j]]
            box = (np.minimum(hi[:, 2], hj[:, 2]) - np.maximum(hi[:, 0], hj[:, 0])) * (
                np.minimum(hi[:, 3], hj[:, 3]) - np.maximum(hi[:, 1], hj[:, 1]))
            sel = box >= min_inter[idx[i]]
            i, j = i[sel], j[sel]
        rows.append(idx[i])
        cols.append(strip[j])
    i, j = np.concatenate(rows), np.concatenate(cols)
    inter = np.concatenate([convex_intersection_area(ca[i[k:k + 65536]], cb[j[k:k + 65536]])
                            for k in range(0, len(i), 65536)]) if len(i) else np.zeros(0)
    hit = inter > 0
    return i[hit], j[hit], inter[hit]


def _polygon_nms(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, iou_thr: float, max_det: int
                 ) -> np.ndarray:
    """Class-aware greedy NMS on the exact polygon IoU (as :func:`edgekit.core.geometry.rotated_nms`),
    with corners and hulls computed once: each kept box is clipped only against the boxes it touches."""
    corners, hull = _hulls(boxes)
    area = boxes[:, 2] * boxes[:, 3]
    order = np.argsort(-scores, kind="stable")
    alive = np.ones(len(boxes), bool)
    keep: List[int] = []
    for k in order.tolist():
        if not alive[k]:
            continue
        keep.append(k)
        if len(keep) >= max_det:
            break
        alive[k] = False
        cand = np.flatnonzero(alive & (classes == classes[k]) & _touching(hull[k:k + 1], hull)[0])
        if len(cand):
            inter = convex_intersection_area(np.repeat(corners[k:k + 1], len(cand), 0), corners[cand])
            alive[cand[inter / np.maximum(area[k] + area[cand] - inter, 1e-12) > iou_thr]] = False
    return np.asarray(keep, np.int64)


def _covered_by_whole(boxes: np.ndarray, classes: np.ndarray, cut_idx: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """(len(cut_idx),) True where a whole box of the same class covers COVER_FRACTION of the cut box."""
    covered = np.zeros(len(cut_idx), bool)
    area = np.maximum(boxes[cut_idx, 2] * boxes[cut_idx, 3], 1e-9)
    i, j, inter = _overlap_pairs(boxes[cut_idx], boxes[whole], COVER_FRACTION * area)
    ok = (classes[cut_idx][i] == classes[whole][j]) & (inter / area[i] >= COVER_FRACTION)
    covered[i[ok]] = True
    return covered


def _fuse_cut(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, tiles: np.ndarray,
              cut_idx: np.ndarray) -> Tuple[List[np.ndarray], List[float], List[int]]:
    """Greedy, best score first: a cut box absorbs the overlapping cut boxes of its class from other tiles
    (one hop, each box used once, so low-score boxes cannot chain a whole seam into one box)."""
    i, j, _ = _overlap_pairs(boxes[cut_idx], boxes[cut_idx])
    glob_i, glob_j = cut_idx[i], cut_idx[j]
    ok = (glob_i != glob_j) & (classes[glob_i] == classes[glob_j]) & (tiles[glob_i] != tiles[glob_j])
    neighbours: Dict[int, List[int]] = {}
    for a, b in zip(glob_i[ok].tolist(), glob_j[ok].tolist()):
        neighbours.setdefault(a, []).append(b)
    used = set()
    fused, fused_scores, fused_classes = [], [], []
    for a in cut_idx[np.argsort(-scores[cut_idx], kind="stable")].tolist():
        if a in used:
            continue
        members = [a] + [b for b in neighbours.get(a, []) if b not in used]
        used.update(members)
        if len(members) == 1:
            fused.append(boxes[a])
        else:
            fused.append(corners_to_xywhr(xywhr_to_corners(boxes[members]).reshape(1, -1, 2))[0])
        fused_scores.append(float(scores[a]))
        fused_classes.append(int(classes[a]))
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
    covered = _covered_by_whole(boxes, classes, cut_idx, whole)
    fused, fused_scores, fused_classes = _fuse_cut(boxes, scores, classes, tiles, cut_idx[~covered])
    out_boxes = np.concatenate([boxes[whole], np.asarray(fused, np.float64).reshape(-1, 5)])
    out_scores = np.concatenate([scores[whole], np.asarray(fused_scores, np.float32)])
    out_classes = np.concatenate([classes[whole], np.asarray(fused_classes, np.int64)])
    keep = _polygon_nms(out_boxes, out_scores, out_classes, iou, max_det)
    boxes_k = out_boxes[keep]
    if not obb:
        corners = xywhr_to_corners(boxes_k)
        boxes_k = np.concatenate([corners.min(1), corners.max(1)], 1)
    return Detections(boxes_k.astype(np.float32), out_scores[keep], out_classes[keep])


def tiled(detector: Detector, tile: int = 640, overlap: int = 128, **options: Any) -> TiledDetector:
    """``detector`` with sliced inference (:class:`TiledDetector`)."""
    return TiledDetector(detector, tile, overlap, **options)


__all__ = ["TiledDetector", "TilePlan", "merge_tiles", "tiled", "EDGE_MARGIN_PX", "COVER_FRACTION"]
