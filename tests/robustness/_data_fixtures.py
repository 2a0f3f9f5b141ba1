"""Builders for the data cases of the robustness corpus: real image files (EXIF-tagged JPEGs,
16-bit / grayscale / RGBA PNGs), DOTA directories and COCO jsons, written the way users' tools write them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence

import numpy as np

EXIF_ORIENTATION = 274  # the TIFF/EXIF tag number of Orientation


def write_image(path: Path, width: int, height: int, orientation: Optional[int] = None, mode: str = "RGB",
                seed: int = 0) -> Path:
    """A real image of ``width`` x ``height`` *stored* pixels; ``orientation`` writes an EXIF Orientation tag.

    ``mode``: RGB, L (grayscale), RGBA, or I;16 (a 16-bit grayscale PNG).
    """
    from PIL import Image

    rng = np.random.default_rng(seed)
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (height, width), dtype=np.uint16))
    else:
        channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
        pixels = rng.integers(0, 255, (height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels[..., 0] if channels == 1 else pixels, mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: Dict[str, Any] = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = orientation
        kwargs["exif"] = exif
    image.save(str(path), **kwargs)
    return path


def write_dota(root: Path, images: Dict[str, Path], labels: Dict[str, Sequence[str]]) -> Path:
    """``root/images`` + ``root/labelTxt``: ``images`` stem -> an image to copy, ``labels`` stem -> lines."""
    import shutil

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labelTxt").mkdir(parents=True, exist_ok=True)
    for stem, image in images.items():
        shutil.copyfile(image, root / "images" / f"{stem}{image.suffix}")
    for stem, lines in labels.items():
        (root / "labelTxt" / f"{stem}.txt").write_text("".join(line + "\n" for line in lines))
    return root


def write_coco(path: Path, images: Iterable[Dict[str, Any]], annotations: Iterable[Dict[str, Any]],
               categories: Optional[List[Dict[str, Any]]] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"images": list(images), "annotations": list(annotations),
            "categories": [{"id": 1, "name": "plane"}] if categories is None else categories}
    path.write_text(json.dumps(data, indent=1))
    return path


def read_label_values(path: Path) -> List[List[float]]:
    return [[float(v) for v in line.split()] for line in path.read_text().splitlines() if line.strip()]
