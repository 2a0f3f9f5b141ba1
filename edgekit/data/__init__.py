"""Datasets: formats, checks, converters, tiling, synthetic generators, dataset layout.

Host-side, but light: importing it pulls in neither torch nor OpenCV (images and videos are read
with OpenCV on first use). The synthetic generators live in :mod:`edgekit.data.synth`.
"""

from .check import FORMATS, CheckReport, check_dataset, detect_format
from .convert import ConvertResult, convert_dataset
from .formats import Issue
from .layout import DatasetLayout, label_path_for, list_images
from .tile import TileResult, TileSettings, tile_dataset

__all__ = [
    "DatasetLayout", "label_path_for", "list_images",
    "Issue", "CheckReport", "check_dataset", "detect_format", "FORMATS",
    "ConvertResult", "convert_dataset", "TileSettings", "TileResult", "tile_dataset",
]
