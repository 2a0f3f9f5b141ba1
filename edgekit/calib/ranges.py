"""Host-side activation ranges (onnxruntime's calibrators) and the host-written TensorRT cache.

:func:`write_calibration_cache` computes per-tensor activation ranges on the host and writes them
as a TensorRT calibration cache keyed by the ONNX tensor names, with its sidecar (through the
device-safe :mod:`edgekit.calib.cache`). TensorRT's ONNX parser keeps those names for most
tensors but also creates tensors of its own, which get no scale from a host cache: the on-device
calibrator (:mod:`edgekit.deploy.tensorrt.calibration`) regenerates the cache against the parsed
network whenever the sidecar does not match. The cache header names the TensorRT version of the
*target* (TensorRT refuses a cache of another version), which the caller must say.

Host only: onnxruntime is imported inside the functions.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple, Union

from edgekit.core.errors import CalibrationError

from .cache import write_cache_with_sidecar
from .feeds import CalibrationFeed, FeedFactory

PathLike = Union[str, Path]

# onnxruntime's threshold search is pure numpy, O(bins^2) per tensor: 2048 bins (TensorRT's count) took
# 125 s per model on yolov8n-obb (280 tensors, 2 cores); 512 bins keeps 192 candidate thresholds.
ENTROPY_BINS = 512


def host_activation_ranges(onnx_path: Path, calib: Any, method: str, batch: int,
                           feeds: Optional[FeedFactory] = None) -> Dict[str, float]:
    """Per-tensor max |activation| over the calibration set, from onnxruntime's calibrators.

    ``feeds`` (complete feeds) replaces ``calib`` for graphs with inputs other than one image.
    """
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator

    ort_method = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                  "entropy2": CalibrationMethod.Entropy}.get(method)
    if ort_method is None:
        raise CalibrationError(f"unknown host calibration method {method!r}", "use 'minmax' or 'entropy'")
    with tempfile.TemporaryDirectory(prefix="edgekit-calib-") as tmp:
        calibrator = create_calibrator(str(onnx_path), augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=ort_method,
                                       extra_options=_calibrator_options(ort_method))
        calibrator.collect_data(CalibrationFeed(str(onnx_path), calib, batch, feeds=feeds))
        tensors = calibrator.compute_data()
    ranges: Dict[str, float] = {}
    for name, data in tensors.items():
        lo, hi = (float(abs(v.max() if hasattr(v, "max") else v)) for v in data.range_value)
        if max(lo, hi) > 0.0:
            ranges[name] = max(lo, hi)
    return ranges


def write_calibration_cache(onnx_path: PathLike, calib: Any, method: str, out_dir: PathLike,
                            imgsz: Union[int, Tuple[int, int]], batch: int, *, trt_version: str,
                            ranges: Optional[Mapping[str, float]] = None,
                            feeds: Optional[FeedFactory] = None) -> Tuple[Path, Path]:
    """Calibrate on the host and write ``<onnx stem>.<method>.calib.cache`` plus its sidecar.

    ``calib`` is a :class:`~edgekit.calib.dataset.CalibrationSet`; ``method`` is ``minmax`` or
    ``entropy`` (onnxruntime's entropy ranges, written under TRT's EntropyCalibration2 header).
    ``trt_version`` is the target's TensorRT (``"8.5.2"`` or ``"8502"``): the header must carry it.
    ``ranges`` (max |activation| per tensor) skips the host calibration: pass ranges already computed
    for this very ONNX, ``calib``, ``method`` and ``batch`` (``QdqResult.activation_ranges``).
    Returns (cache_path, sidecar_path).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise CalibrationError(f"ONNX model {onnx_path} does not exist", "export the model first")
    if method not in ("minmax", "entropy", "entropy2"):
        raise CalibrationError(f"unknown calibration method {method!r}", "use 'minmax' or 'entropy'")
    if ranges is None:
        ranges = host_activation_ranges(onnx_path, calib, method, batch, feeds=feeds)
    return write_cache_with_sidecar(onnx_path, {name: r / 127.0 for name, r in ranges.items()}, method, out_dir,
                                    imgsz, batch, trt_version=trt_version, calib_data_hash=calib.data_hash(),
                                    n_images=len(calib))


def _calibrator_options(ort_method: Any) -> Dict[str, Any]:
    from onnxruntime.quantization.calibrate import CalibrationMethod

    if ort_method == CalibrationMethod.Entropy:
        # 128 bins (onnxruntime's default) = 128 quantized bins leaves only the full range: MinMax again.
        return {"symmetric": True, "num_bins": ENTROPY_BINS, "num_quantized_bins": 128}
    return {"symmetric": True}


__all__ = ["ENTROPY_BINS", "host_activation_ranges", "write_calibration_cache"]
