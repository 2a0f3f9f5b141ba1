"""Calibration image sets: which images calibrate INT8, and how they become network inputs.

A :class:`CalibrationSet` lists the images under a folder (recursively), picks a deterministic
subset, and yields batches preprocessed by :func:`edgekit.core.letterbox.preprocess` -- the very
function the device runs -- so calibration sees exactly the pixels inference will see. Its
:meth:`CalibrationSet.data_hash` (file bytes + preprocessing spec) goes into every calibration
cache sidecar, so a cache made from other images or another preprocessing is never reused.

Runs on the device (Python 3.8): numpy and OpenCV only, OpenCV imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Iterator, List, Sequence, Union

import numpy as np

from edgekit.core.errors import CalibrationError
from edgekit.core.image_files import IMAGE_SUFFIXES, is_image_file, suffix_list
from edgekit.core.letterbox import LetterboxSpec, preprocess


def list_images(root: Path) -> List[Path]:
    """All images under ``root`` (recursive; the suffixes datasets use), sorted so every machine lists them in one order."""
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and is_image_file(p))


class CalibrationSet:
    """A fixed, ordered list of calibration images plus the preprocessing that feeds them.

    >>> calib = CalibrationSet.from_dir("data/images/val", LetterboxSpec(imgsz=320), size=32)  # doctest: +SKIP
    >>> next(calib.batches(4)).shape  # doctest: +SKIP
    (4, 3, 320, 320)
    """

    def __init__(self, paths: Sequence[Union[str, Path]], spec: LetterboxSpec, source: str = "") -> None:
        if not paths:
            raise CalibrationError(f"calibration set {source or '(given list)'} has no images",
                                   f"pass a folder with {suffix_list()} images")
        self.paths: List[Path] = [Path(p) for p in paths]
        self.spec = spec
        self.source = source

    @classmethod
    def from_dir(cls, dir: Union[str, Path], spec: LetterboxSpec, size: int, min_images: int = 8,
                 seed: int = 0) -> CalibrationSet:
        """Pick ``size`` images under ``dir`` (all if fewer), the same ones for the same seed."""
        root = Path(dir)
        if root.is_file():
            raise CalibrationError(f"calibration image folder {root} is a file, not a folder",
                                   "pass the folder that holds the images (e.g. the dataset's images/val)")
        if not root.is_dir():
            raise CalibrationError(f"calibration image folder {root} does not exist",
                                   "pass a folder of images (e.g. the dataset's images/val)")
        found = list_images(root)
        if len(found) < max(1, min_images):
            raise CalibrationError(
                f"found {len(found)} images in {root}, need >= {min_images}",
                f"add images or pass --calib-size {len(found)}" if found else
                f"add {suffix_list()} images to it (a dataset's images/train is the usual choice)")
        if size < 1:
            raise CalibrationError(f"calibration size {size} for {root} must be >= 1", "pass --calib-size N with N >= 1")
        if size < len(found):
            # random.Random(seed) is stable across Python versions for sample() on a list.
            found = sorted(random.Random(seed).sample(found, size))
        return cls(found, spec, source=str(root))

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, path: Path) -> np.ndarray:
        """One image as the (1, 3, H, W) network input."""
        import cv2  # lazy: heavy import, only needed when images are read

        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            raise CalibrationError(f"cannot read calibration image {path}", "remove or replace the file")
        x, _ = preprocess(img, self.spec)
        return x

    def batches(self, batch_size: int = 1, drop_last: bool = False) -> Iterator[np.ndarray]:
        """Yield float NCHW batches in list order; the last may be short unless ``drop_last``."""
        if batch_size < 1:
            raise CalibrationError(f"calibration batch size {batch_size} must be >= 1", "pass a batch size >= 1")
        for start in range(0, len(self.paths), batch_size):
            chunk = self.paths[start:start + batch_size]
            if drop_last and len(chunk) < batch_size:
                return
            yield np.concatenate([self.load(p) for p in chunk], axis=0)

    def data_hash(self) -> str:
        """sha256 over every image's bytes (in order) and the preprocessing spec."""
        h = hashlib.sha256()
        h.update(json.dumps(self.spec.model_dump(mode="json"), sort_keys=True).encode("utf-8"))
        for p in self.paths:
            try:
                data = p.read_bytes()
            except OSError as e:
                raise CalibrationError(f"cannot read calibration image {p}: {e.strerror}",
                                       "remove or replace the file") from None
            h.update(hashlib.sha256(data).digest())
        return h.hexdigest()

    def __repr__(self) -> str:
        return f"CalibrationSet({len(self)} images from {self.source or 'a list'}, imgsz={self.spec.imgsz})"


__all__ = ["CalibrationSet", "list_images", "IMAGE_SUFFIXES"]
