"""Episodes -> training batches (numpy, built deterministically per episode index) and the validation set.

Batch ``i`` depends only on ``(seed, i)``: the episode comes from :class:`EpisodeSampler` and every
augmentation draw from ``numpy.random.default_rng([seed, i, 1])``. So worker processes build the same
batches as the main process and a resumed run replays exactly the batches the interrupted one would have.
Box labels are in network pixels (after letterbox and augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from edgekit.core.letterbox import LetterboxSpec, preprocess

from .augment import augment_frame, augment_reference, crop_box, letterbox_with_boxes, to_chw_rgb
from .config import RefDetTrainConfig
from .data import EpisodeSampler, FrameRef, RefDetDataset

MAX_EPISODES = 1 << 40  # the sampler's episodes are a pure function of their index: no real bound needed


def ref_array(img: np.ndarray, ref_size: int) -> np.ndarray:
    """One BGR photo/crop -> ``[3,R,R]`` RGB 0..1 letterboxed (pad 114): the reference encoder's input."""
    return preprocess(img, LetterboxSpec(imgsz=ref_size))[0][0]


def _stack(items: List[np.ndarray], shape: Tuple[int, ...]) -> np.ndarray:
    return np.stack(items).astype(np.float32) if items else np.zeros((0, *shape), np.float32)


@dataclass
class _Acc:
    """What one episode accumulates before stacking."""

    images: List[np.ndarray]
    boxes: List[np.ndarray]
    image_task: List[int]
    refs: List[np.ndarray]
    ref_task: List[int]
    crops: List[np.ndarray]
    crop_task: List[int]
    bg_crops: List[np.ndarray]
    cross_crops: List[np.ndarray]
    cross_label: List[int]


class EpisodeBatcher:
    """Builds the batch of episode ``index`` from a RefDet root (opened lazily: picklable into workers)."""

    def __init__(self, root: Path, cfg: RefDetTrainConfig, augment: bool = True) -> None:
        self.root, self.cfg, self.augment = Path(root), cfg, augment
        self.imgsz, self.ref_size = cfg.imgsz, cfg.model.ref_size
        self.want_crops = cfg.contrastive or cfg.use_triplet
        self.want_negative_crops = cfg.use_triplet
        self._dataset: Optional[RefDetDataset] = None
        self._sampler: Optional[EpisodeSampler] = None
        self.labels = {r.video_id: i for i, r in enumerate(self.dataset.records)}
        _ = self.sampler  # n_way vs the dataset's targets is checked here, not inside a worker process

    def __getstate__(self) -> Dict[str, Any]:
        state = dict(self.__dict__)
        state["_dataset"] = state["_sampler"] = None  # open decoders do not cross process boundaries
        return state

    @property
    def dataset(self) -> RefDetDataset:
        if self._dataset is None:
            self._dataset = RefDetDataset(self.root, cache_size=self.cfg.cache_size)
        return self._dataset

    @property
    def sampler(self) -> EpisodeSampler:
        if self._sampler is None:
            e = self.cfg.episode
            self._sampler = EpisodeSampler(self.dataset, n_way=e.n_way, n_query=e.n_query, n_episodes=MAX_EPISODES,
                                           n_negative=e.n_negative, cross_class_ratio=e.cross_class_ratio,
                                           seed=self.cfg.seed)
        return self._sampler

    def build(self, index: int) -> Dict[str, np.ndarray]:
        """The batch of episode ``index``: images, padded boxes, task indices, references and crops."""
        episode = self.sampler.episode(index)
        rng = np.random.default_rng([self.cfg.seed, int(index), 1])
        acc = _Acc(*([] for _ in range(10)))
        for t, task in enumerate(episode.tasks):
            for photo in self.dataset.references(task.video_id):
                photo = augment_reference(photo, rng, self.cfg.augment) if self.augment and self.cfg.augment.refs else photo
                acc.refs.append(ref_array(photo, self.ref_size))
                acc.ref_task.append(t)
            for ref in (*task.queries, *task.negatives):
                self._add_frame(acc, t, ref, rng)
        return self._collate(acc, [self.labels[t.video_id] for t in episode.tasks])

    def _add_frame(self, acc: _Acc, t: int, ref: FrameRef, rng: np.random.Generator) -> None:
        frame = self.dataset.frame(ref.video_id, ref.frame)
        if self.want_crops and ref.kind == "query" and len(ref.boxes):
            acc.crops.append(ref_array(crop_box(frame, ref.boxes[0]), self.ref_size))
            acc.crop_task.append(t)
        if self.want_negative_crops and ref.kind == "cross_class":
            other = self.dataset.record(ref.video_id).boxes_at(ref.frame)
            if len(other):
                acc.cross_crops.append(ref_array(crop_box(frame, other[0]), self.ref_size))
                acc.cross_label.append(self.labels[ref.video_id])
        if self.want_negative_crops and ref.kind == "background":
            acc.bg_crops.append(ref_array(self._random_crop(frame, rng), self.ref_size))
        img, boxes = letterbox_with_boxes(frame, ref.boxes, self.imgsz)
        if self.augment:
            img, boxes = augment_frame(img, boxes, rng, self.cfg.augment)
        acc.images.append(to_chw_rgb(img))
        acc.boxes.append(boxes)
        acc.image_task.append(t)

    @staticmethod
    def _random_crop(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        h, w = frame.shape[:2]
        side = rng.uniform(0.1, 0.3) * min(h, w)
        x, y = rng.uniform(0, w - side), rng.uniform(0, h - side)
        return crop_box(frame, np.array([x, y, x + side, y + side]), context=0.0)

    def _collate(self, acc: _Acc, task_labels: List[int]) -> Dict[str, np.ndarray]:
        n, m = len(acc.images), max([len(b) for b in acc.boxes] + [1])
        gt = np.zeros((n, m, 4), np.float32)
        mask = np.zeros((n, m, 1), np.float32)
        for i, b in enumerate(acc.boxes):
            gt[i, :len(b)] = b
            mask[i, :len(b)] = 1.0
        r = (3, self.ref_size, self.ref_size)
        image_task = np.asarray(acc.image_task, np.int64)
        labels = np.asarray(task_labels, np.int64)
        return {"images": np.stack(acc.images), "gt_boxes": gt, "gt_mask": mask, "image_task": image_task,
                "image_label": labels[image_task], "task_label": labels,
                "task_first_image": np.asarray([int(np.argmax(image_task == t)) for t in range(len(labels))], np.int64),
                "refs": _stack(acc.refs, r), "ref_task": np.asarray(acc.ref_task, np.int64),
                "crops": _stack(acc.crops, r), "crop_task": np.asarray(acc.crop_task, np.int64),
                "bg_crops": _stack(acc.bg_crops, r), "cross_crops": _stack(acc.cross_crops, r),
                "cross_label": np.asarray(acc.cross_label, np.int64)}


class EpisodeStream:
    """A map-style dataset (for ``torch.utils.data.DataLoader(batch_size=None)``): item ``i`` = batch ``start + i``."""

    def __init__(self, batcher: EpisodeBatcher, start: int, length: int) -> None:
        self.batcher, self.start, self.length = batcher, int(start), int(length)

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> Dict[str, np.ndarray]:
        return self.batcher.build(self.start + int(i))


@dataclass
class ValVideo:
    """One validation target: its references and evenly spaced frames with boxes (network pixels)."""

    video_id: str
    refs: np.ndarray  # [K,3,R,R]
    images: np.ndarray  # [F,3,S,S]
    boxes: List[np.ndarray]  # per frame (k,4)
    frames: List[int]


def build_val_set(root: Path, cfg: RefDetTrainConfig) -> List[ValVideo]:
    """Every video of ``root``: all references, ``frames_per_video`` frames evenly spaced over the video."""
    ds = RefDetDataset(root, cache_size=0)
    out = []
    try:
        for rec in ds.records:
            n = min(cfg.validation.frames_per_video, rec.frame_count)
            frames = sorted({int(round(x)) for x in np.linspace(0, rec.frame_count - 1, n)})
            imgs, boxes = [], []
            for f in frames:
                img, b = letterbox_with_boxes(ds.frame(rec.video_id, f), rec.boxes_at(f), cfg.imgsz)
                imgs.append(to_chw_rgb(img))
                boxes.append(b)
            refs = np.stack([ref_array(p, cfg.model.ref_size) for p in ds.references(rec.video_id)])
            out.append(ValVideo(rec.video_id, refs, np.stack(imgs), boxes, frames))
    finally:
        ds.close()
    return out


__all__ = ["EpisodeBatcher", "EpisodeStream", "ValVideo", "build_val_set", "ref_array"]
