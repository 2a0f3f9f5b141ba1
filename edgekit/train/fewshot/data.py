"""Episodic data over the RefDet format: random-access frame decoding, an LRU frame cache, an episode sampler.

A RefDet root (``edgekit/data/formats/refdet.py``) holds one video per target, 1-3 reference photos of it,
and the target's boxes in the frames where it is visible. Training needs a handful of scattered frames
per step, so frames are decoded on demand (:class:`VideoFrameReader`) and kept in a bounded
:class:`FrameCache`. :class:`EpisodeSampler` draws seeded few-shot episodes (structure: :class:`Episode`).
Frames are BGR ``uint8`` arrays, as OpenCV decodes them; boxes are ``(K, 4)`` float32 ``x1, y1, x2, y2`` pixels.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Hashable, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from edgekit.core.errors import ConfigError, DataError
from edgekit.core.image_files import imread
from edgekit.data.formats.media import read_video_info
from edgekit.data.formats.refdet import object_image_paths, read_refdet_annotations, video_path

LOG = logging.getLogger(__name__)

SEEK_MODES = ("auto", "always", "never")


def _cv2():
    import cv2  # lazy, as in edgekit.data.formats.media

    return cv2


class FrameCache:
    """A least-recently-used cache of decoded frames holding at most ``maxsize`` entries (0 disables it).

    ``functools.lru_cache`` sizes one cache per function, shared by every instance; each dataset needs
    its own bound, so this is an ``OrderedDict`` kept in recency order.
    """

    def __init__(self, maxsize: int = 256) -> None:
        if maxsize < 0:
            raise ConfigError(f"frame cache size {maxsize} is negative", "pass cache_size >= 0 (0 disables the cache)")
        self.maxsize = int(maxsize)
        self._items: OrderedDict = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable) -> Optional[np.ndarray]:
        value = self._items.get(key)
        if value is None:
            self.misses += 1
            return None
        self._items.move_to_end(key)
        self.hits += 1
        return value

    def put(self, key: Hashable, value: np.ndarray) -> None:
        if self.maxsize == 0:
            return
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)

    def keys(self) -> List[Hashable]:
        """Keys from least to most recently used."""
        return list(self._items)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)


class VideoFrameReader:
    """Frame ``i`` of one video, by seeking (``CAP_PROP_POS_FRAMES``) or by decoding forward.

    Short forward jumps (``<= max_grab`` frames) always decode forward: cheaper than a seek, which
    restarts decoding at the previous keyframe. ``seek="auto"`` checks once, on the first seek, that
    seeking to frame ``probe_frame`` gives the same pixels as decoding up to it (some containers and
    codecs seek to a nearby keyframe instead); when it does not, or when a later seek lands elsewhere,
    the reader falls back to sequential decoding (reopening the file to go backwards).
    """

    def __init__(self, path: Union[str, Path], seek: str = "auto", max_grab: int = 16, probe_frame: int = 25) -> None:
        if seek not in SEEK_MODES:
            raise ConfigError(f"seek={seek!r} is not a seek mode", f"pass one of {', '.join(SEEK_MODES)}")
        self.path = Path(path)
        info = read_video_info(self.path)
        if info is None:
            raise DataError(f"OpenCV cannot read video {self.path}", "re-encode it (H.264/mp4v) or remove the sample")
        self.frame_count = info.frame_count
        self.mode, self.max_grab, self.probe_frame = seek, max(0, int(max_grab)), int(probe_frame)
        self.seek_reliable: Optional[bool] = {"always": True, "never": False}.get(seek)
        self._cap: Any = None
        self._pos = 0  # index of the frame the next read() returns

    def _open(self) -> None:
        self.close()
        self._cap = _cv2().VideoCapture(str(self.path))
        self._pos = 0

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
        self._cap = None

    def __enter__(self) -> VideoFrameReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _read_next(self, index: int) -> np.ndarray:
        ok, frame = self._cap.read()
        if not ok or frame is None:
            raise DataError(f"{self.path}: frame {index} cannot be decoded ({self.frame_count} frames in the header)",
                            "run `edgekit data check` on the dataset; the video may be truncated")
        self._pos += 1
        return frame

    def _sequential(self, index: int) -> np.ndarray:
        if self._cap is None or index < self._pos:
            self._open()
        while self._pos < index:
            if not self._cap.grab():
                raise DataError(f"{self.path}: decoding stopped at frame {self._pos} before frame {index}",
                                "run `edgekit data check` on the dataset; the video may be truncated")
            self._pos += 1
        return self._read_next(index)

    def _seek(self, index: int) -> Optional[np.ndarray]:
        """The frame by seeking, or None when the seek did not land on ``index``."""
        if self._cap is None:
            self._open()
        cv2 = _cv2()
        if not self._cap.set(cv2.CAP_PROP_POS_FRAMES, index) or int(self._cap.get(cv2.CAP_PROP_POS_FRAMES)) != index:
            self.close()  # position unknown: the next read reopens
            return None
        self._pos = index
        ok, frame = self._cap.read()
        if not ok or frame is None:
            self.close()
            return None
        self._pos += 1
        return frame

    def _probe(self) -> bool:
        target = min(self.probe_frame, self.frame_count - 1)
        sought = self._seek(target)
        return sought is not None and np.array_equal(sought, self._sequential(target))

    def read(self, index: int) -> np.ndarray:
        if not 0 <= index < self.frame_count:
            raise IndexError(f"frame {index} outside 0..{self.frame_count - 1} of {self.path}")
        if self._cap is not None and self._pos <= index <= self._pos + self.max_grab:
            return self._sequential(index)
        if self.seek_reliable is None:
            self.seek_reliable = self._probe()
        if self.seek_reliable:
            frame = self._seek(index)
            if frame is not None:
                return frame
            if self.mode == "auto":
                self.seek_reliable = False
        return self._sequential(index)


@dataclass(frozen=True, eq=False)
class VideoRecord:
    """One target: its video, reference photos and boxes per annotated frame."""
    video_id: str
    video: Path
    references: Tuple[Path, ...]
    frame_count: int
    boxes: Dict[int, np.ndarray]  # frame -> (K, 4) float32 xyxy px

    @property
    def annotated_frames(self) -> List[int]:
        return sorted(self.boxes)

    @property
    def background_frames(self) -> List[int]:
        """Frames where the target is not annotated (not visible, or hidden)."""
        return [f for f in range(self.frame_count) if f not in self.boxes]

    def boxes_at(self, frame: int) -> np.ndarray:
        return self.boxes.get(frame, np.zeros((0, 4), np.float32))


def _record(root: Path, video: Any) -> VideoRecord:
    clip = video_path(root, video.video_id)
    info = read_video_info(clip)
    if info is None:
        raise DataError(f"video {video.video_id!r}: OpenCV cannot read {clip}", "run `edgekit data check` on the dataset")
    refs = tuple(object_image_paths(root, video.video_id))
    if not refs:
        raise DataError(f"video {video.video_id!r} has no reference photo object_images/img_{{1,2,3}}.jpg",
                        "add 1-3 reference photos or remove the video from annotations.json")
    per_frame: Dict[int, List[Tuple[float, float, float, float]]] = {}
    for box in (b for track in video.annotations for b in track.bboxes):
        per_frame.setdefault(box.frame, []).append((box.x1, box.y1, box.x2, box.y2))
    boxes = {f: np.asarray(b, np.float32).reshape(-1, 4) for f, b in per_frame.items() if f < info.frame_count}
    past = sorted(f for f in per_frame if f >= info.frame_count)
    if past:  # a header's frame count can be a little off, so warn rather than refuse (data check reports it)
        LOG.warning("video %r: %d annotated frame(s) from %d on are past the video's %d frames and are ignored "
                    "(training and evaluation); run `edgekit data check` on the dataset",
                    video.video_id, len(past), past[0], info.frame_count)
    return VideoRecord(video.video_id, clip, refs, info.frame_count, boxes)


class RefDetDataset:
    """The videos of one RefDet root with cached random access to frames and reference photos.

    ``cache_size`` bounds the decoded images kept (frames and references share the cache);
    ``max_open_videos`` bounds the open decoders. ``seek`` is :class:`VideoFrameReader`'s mode.
    """

    def __init__(self, root: Union[str, Path], cache_size: int = 256, seek: str = "auto",
                 max_open_videos: int = 8) -> None:
        self.root = Path(root)
        self.records = [_record(self.root, v) for v in read_refdet_annotations(self.root)]
        self._by_id = {r.video_id: r for r in self.records}
        self.cache = FrameCache(cache_size)
        self.seek, self.max_open_videos = seek, max(1, int(max_open_videos))
        self._readers: OrderedDict = OrderedDict()

    def __len__(self) -> int:
        return len(self.records)

    def record(self, video_id: str) -> VideoRecord:
        return self._by_id[video_id]

    def _reader(self, video_id: str) -> VideoFrameReader:
        reader = self._readers.get(video_id)
        if reader is None:
            reader = VideoFrameReader(self._by_id[video_id].video, seek=self.seek)
            self._readers[video_id] = reader
            while len(self._readers) > self.max_open_videos:
                self._readers.popitem(last=False)[1].close()
        self._readers.move_to_end(video_id)
        return reader

    def frame(self, video_id: str, index: int) -> np.ndarray:
        """Frame ``index`` of the video (BGR uint8), from the cache when it holds it."""
        key = (video_id, int(index))
        cached = self.cache.get(key)
        if cached is None:
            cached = self._reader(video_id).read(int(index))
            self.cache.put(key, cached)
        return cached

    def references(self, video_id: str) -> List[np.ndarray]:
        """The target's reference photos (BGR uint8)."""
        out = []
        for path in self._by_id[video_id].references:
            image = self.cache.get(path)
            if image is None:
                image = imread(path)
                if image is None:
                    raise DataError(f"reference photo {path} cannot be decoded", "replace the file")
                self.cache.put(path, image)
            out.append(image)
        return out

    def close(self) -> None:
        for reader in self._readers.values():
            reader.close()
        self._readers.clear()


# -- episodes -------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class FrameRef:
    """One frame of an episode. ``boxes``: the task target's boxes in it ((0, 4) for a negative);
    ``kind``: ``query`` (target visible), ``background`` (target's own video, target not visible) or
    ``cross_class`` (another target's annotated frame: the other target is there, this one is not)."""

    video_id: str
    frame: int
    boxes: np.ndarray
    kind: str


@dataclass(frozen=True, eq=False)
class EpisodeTask:
    """One way of an episode: a target's support (its reference photos), queries and negatives."""
    video_id: str
    support: Tuple[Path, ...]
    queries: Tuple[FrameRef, ...]
    negatives: Tuple[FrameRef, ...]


@dataclass(frozen=True, eq=False)
class Episode:
    """``n_way`` tasks with distinct targets; each task has ``n_query`` queries and ``n_negative`` negatives
    (fewer negatives only when no frame of either negative kind exists)."""

    index: int
    tasks: Tuple[EpisodeTask, ...]


def _pick(rng: np.random.Generator, items: Sequence[Any], n: int) -> List[Any]:
    """``n`` items, without replacement when there are enough."""
    if n <= 0 or not items:
        return []
    idx = rng.choice(len(items), size=n, replace=len(items) < n)
    return [items[int(i)] for i in idx]


class EpisodeSampler:
    """Seeded few-shot episodes over a :class:`RefDetDataset` (or its records).

    Episode ``i`` depends only on ``(seed, i)``: iterating twice, or from another worker, gives the same
    episodes. Targets are videos with at least one annotated frame. Negatives are split
    ``cross_class_ratio`` : ``1 - cross_class_ratio`` between other targets' annotated frames and the
    target's own frames without it; when one kind has no frames the other supplies all of them.
    """

    def __init__(self, dataset: Union[RefDetDataset, Sequence[VideoRecord]], n_way: int, n_query: int,
                 n_episodes: int, n_negative: Optional[int] = None, cross_class_ratio: float = 0.5,
                 seed: int = 0) -> None:
        records = dataset.records if isinstance(dataset, RefDetDataset) else list(dataset)
        self.targets = [r for r in records if r.boxes and r.references]
        self.records = records
        n_negative = n_query if n_negative is None else n_negative
        for key, value, low in (("n_way", n_way, 1), ("n_query", n_query, 1), ("n_episodes", n_episodes, 1),
                                ("n_negative", n_negative, 0)):
            if value < low:
                raise ConfigError(f"{key}={value} is out of range", f"pass {key} >= {low}")
        if n_way > len(self.targets):
            raise ConfigError(f"n_way={n_way} but the dataset has {len(self.targets)} annotated targets",
                              f"pass n_way <= {len(self.targets)} or add videos")
        if not 0.0 <= cross_class_ratio <= 1.0:
            raise ConfigError(f"cross_class_ratio={cross_class_ratio} is outside [0, 1]", "pass a value in [0, 1]")
        self.n_way, self.n_query, self.n_episodes, self.n_negative = n_way, n_query, n_episodes, n_negative
        self.cross_class_ratio, self.seed = float(cross_class_ratio), int(seed)

    def __len__(self) -> int:
        return self.n_episodes

    def __iter__(self) -> Iterator[Episode]:
        return (self.episode(i) for i in range(self.n_episodes))

    def episode(self, index: int) -> Episode:
        rng = np.random.default_rng([self.seed, int(index)])
        chosen = rng.choice(len(self.targets), size=self.n_way, replace=False)
        return Episode(int(index), tuple(self._task(rng, self.targets[int(i)]) for i in chosen))

    def _task(self, rng: np.random.Generator, target: VideoRecord) -> EpisodeTask:
        queries = tuple(FrameRef(target.video_id, f, target.boxes[f], "query")
                        for f in _pick(rng, target.annotated_frames, self.n_query))
        return EpisodeTask(target.video_id, target.references, queries, self._negatives(rng, target))

    def _negatives(self, rng: np.random.Generator, target: VideoRecord) -> Tuple[FrameRef, ...]:
        background = target.background_frames
        others = [(r.video_id, f) for r in self.records if r.video_id != target.video_id for f in r.annotated_frames]
        n_cross = int(round(self.n_negative * self.cross_class_ratio))
        if not background:
            n_cross = self.n_negative
        elif not others:
            n_cross = 0
        empty = np.zeros((0, 4), np.float32)
        refs = [FrameRef(v, f, empty, "cross_class") for v, f in _pick(rng, others, n_cross)]
        refs += [FrameRef(target.video_id, f, empty, "background")
                 for f in _pick(rng, background, self.n_negative - n_cross)]
        return tuple(refs)


__all__ = ["FrameCache", "VideoFrameReader", "VideoRecord", "RefDetDataset", "FrameRef", "EpisodeTask", "Episode",
           "EpisodeSampler", "SEEK_MODES"]
