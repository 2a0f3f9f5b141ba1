"""Where the tiles of a large frame go: one grid rule shared by ``edgekit data tile`` (training data)
and sliced inference on the device (:mod:`edgekit.deploy.tiling`), so a model sees at deploy time
the same crops it was trained on.

Tiles are ``size`` square, ``overlap`` pixels apart from their neighbours' edges (stride ``size -
overlap``); the last tile of a row or column is moved back to end exactly at the frame's edge (as
DOTA's devkit and Ultralytics' ``split_trainval`` do), so every pixel is covered and no tile is
padded. A frame side shorter than ``size`` gets one tile of that side.
"""

from __future__ import annotations

from typing import List, NamedTuple

from .errors import ConfigError


class TileWindow(NamedTuple):
    """One tile: top-left corner and size in frame pixels."""

    x: int
    y: int
    width: int
    height: int

    @property
    def x1(self) -> int:
        return self.x + self.width

    @property
    def y1(self) -> int:
        return self.y + self.height


def check_tile_args(size: int, overlap: int, what: str = "--tile") -> None:
    """A tile size >= 1 and an overlap in [0, size); ConfigError naming ``what`` otherwise."""
    if size < 1:
        raise ConfigError(f"{what} {size}: the tile size must be at least 1 px", f"pass {what} 640 (or the model size)")
    if not 0 <= overlap < size:
        raise ConfigError(f"{what} overlap {overlap} must be >= 0 and smaller than the tile size {size}",
                          "pass an overlap of about the largest object's size, e.g. 128 for 640-px tiles")


def tile_starts(length: int, size: int, overlap: int) -> List[int]:
    """Start offsets along one axis of ``length`` pixels.

    >>> tile_starts(2048, 640, 128)
    [0, 512, 1024, 1408]
    >>> tile_starts(500, 640, 128)
    [0]
    """
    check_tile_args(size, overlap)
    if length <= size:
        return [0]
    stride = size - overlap
    starts = list(range(0, length - size, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return starts


def tile_windows(width: int, height: int, size: int, overlap: int) -> List[TileWindow]:
    """Every tile of a ``width`` x ``height`` frame, row by row.

    >>> [tuple(t) for t in tile_windows(1000, 600, 640, 100)]
    [(0, 0, 640, 600), (360, 0, 640, 600)]
    """
    return [TileWindow(x, y, min(size, width), min(size, height))
            for y in tile_starts(height, size, overlap) for x in tile_starts(width, size, overlap)]


__all__ = ["TileWindow", "check_tile_args", "tile_starts", "tile_windows"]
