"""Label formats: typed records, readers that keep source file and line, atomic writers, checks.

YOLO txt (oriented and axis-aligned), DOTA txt, COCO detection json, RefDet video json.
"""

from .base import ERROR, WARNING, Issue
from .coco import (
    CocoAnnotation,
    CocoCategory,
    CocoDataset,
    CocoImage,
    check_coco_file,
    find_coco_files,
    parse_coco,
    read_coco,
    write_coco,
)
from .dota import (
    DOTA_CLASSES,
    DotaLabelFile,
    DotaObject,
    check_dota_dataset,
    parse_dota,
    read_dota,
    write_dota,
)
from .media import VideoInfo, image_size, read_image_size, read_video_info
from .refdet import (
    RefDetBox,
    RefDetTrack,
    RefDetVideo,
    check_refdet_root,
    find_refdet_roots,
    parse_refdet,
    read_refdet_annotations,
    write_refdet_annotations,
)
from .yolo_obb import (
    YoloBoxLabel,
    YoloObbLabel,
    check_yolo_dataset,
    parse_yolo_labels,
    read_yolo_labels,
    read_yolo_obb,
    write_yolo_labels,
    write_yolo_obb,
)

__all__ = [
    "Issue", "ERROR", "WARNING",
    "YoloObbLabel", "YoloBoxLabel", "parse_yolo_labels", "read_yolo_labels", "read_yolo_obb", "write_yolo_labels",
    "write_yolo_obb", "check_yolo_dataset",
    "DotaObject", "DotaLabelFile", "DOTA_CLASSES", "parse_dota", "read_dota", "write_dota", "check_dota_dataset",
    "CocoImage", "CocoAnnotation", "CocoCategory", "CocoDataset", "parse_coco", "read_coco", "write_coco",
    "find_coco_files", "check_coco_file",
    "RefDetBox", "RefDetTrack", "RefDetVideo", "parse_refdet", "read_refdet_annotations", "write_refdet_annotations",
    "find_refdet_roots", "check_refdet_root",
    "VideoInfo", "image_size", "read_image_size", "read_video_info",
]
