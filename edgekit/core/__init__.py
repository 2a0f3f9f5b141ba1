"""Core types and contracts with no heavy dependencies (runs on the Jetson, Python 3.8)."""

from .detections import Detections
from .errors import CalibrationError, ConfigError, DataError, DeviceError, EdgekitError, ModelError
from .geometry import (
    box_iou_matrix,
    corners_to_xywhr,
    nms_xyxy,
    obb_iou_matrix,
    polygon_area,
    polygon_iou,
    probiou_matrix,
    regularize_xywhr,
    rotated_nms,
    xywhr_to_corners,
)
from .manifest import (
    BundleManifest,
    CalibrationEntry,
    FileEntry,
    GoldenEntry,
    ModelEntry,
    Provenance,
    TensorSpec,
    describe_files,
    file_sha256,
    load_manifest,
    verify_bundle_files,
    write_manifest,
)
from .metrics import MapResult, MatchResult, PRCurve, evaluate_map, match_detections, pairwise_iou
from .postprocess import PostprocessSpec, decode, decode_detect, decode_obb

__all__ = [
    "EdgekitError", "ConfigError", "DataError", "ModelError", "CalibrationError", "DeviceError",
    "Detections",
    "xywhr_to_corners", "corners_to_xywhr", "regularize_xywhr", "polygon_area", "polygon_iou",
    "obb_iou_matrix", "probiou_matrix", "box_iou_matrix", "rotated_nms", "nms_xyxy",
    "PostprocessSpec", "decode_obb", "decode_detect", "decode",
    "evaluate_map", "MapResult", "PRCurve", "match_detections", "MatchResult", "pairwise_iou",
    "BundleManifest", "ModelEntry", "TensorSpec", "FileEntry", "CalibrationEntry", "GoldenEntry", "Provenance",
    "write_manifest", "load_manifest", "file_sha256", "describe_files", "verify_bundle_files",
]
