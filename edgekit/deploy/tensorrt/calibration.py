"""Implicit INT8 (TensorRT 8.5 and 10): calibration batches and the calibration cache.

TensorRT's calibrator hands ``get_batch`` the input names and reads, at each returned pointer, the
*volume of the network input* (its static shape, or the calibration profile's OPT shape on a
dynamic input) -- not ``get_batch_size()`` images (``docs/tensorrt.md`` section 3). So the batches here are
shaped from the network input as Polygraphy reports it to the data loader (``input_metadata``):
batch N and H/W come from the network, images are letterboxed to that H/W, and only whole
batches are fed (``len(images) // N`` of them). Polygraphy's ``Calibrator`` does the device copies.

A calibration cache is used only after its sidecar verified it was made for this ONNX and this
TensorRT version (``edgekit.calib.cache.verify_cache``); a cache TensorRT writes while calibrating
here is kept next to the plan with a sidecar of its own.

Device side: Python 3.8, numpy + OpenCV (through CalibrationSet); polygraphy imported lazily.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, NamedTuple, Optional

import numpy as np

from edgekit.calib.cache import (
    CacheSidecar,
    parse_cache,
    read_cache,
    sidecar_path,
    trt_version_int,
    utc_now,
    verify_cache,
    write_sidecar,
)
from edgekit.calib.dataset import CalibrationSet
from edgekit.core.atomic import write_bytes_atomic
from edgekit.core.errors import CalibrationError, ConfigError
from edgekit.core.manifest import file_sha256

from .options import CALIBRATOR_CLASSES

LOG = logging.getLogger("edgekit.deploy.tensorrt")
Progress = Callable[[str], None]
# calibration cache header algorithm -> edgekit's calibration method names (calib sidecars)
METHODS = {"MinMaxCalibration": "minmax", "EntropyCalibration2": "entropy"}  # as export names them


class CalibrationPlan(NamedTuple):
    """What the calibrator starts from: cache bytes to hand TensorRT, and/or images to calibrate on."""

    algorithm: str  # a TensorRT cache-header algorithm name (CALIBRATOR_CLASSES key)
    cache_bytes: Optional[bytes]
    cache_path: Optional[Path]
    cache_sha256: Optional[str]
    images: Optional[CalibrationSet]


def plan_calibration(trt_version: str, onnx_sha256: str, calib_cache: Optional[Path],
                     calib_images: Optional[CalibrationSet], algorithm: Optional[str]) -> CalibrationPlan:
    """Images given: calibrate on them. Else a cache whose sidecar matches this ONNX and TensorRT version."""
    if calib_images is not None:
        if calib_cache is not None:
            LOG.info("calibration images given: calibrating on them, not reading %s", calib_cache)
        return CalibrationPlan(algorithm or "MinMaxCalibration", None, None, None, calib_images)
    if calib_cache is None:
        raise ConfigError("INT8 from a calibration cache needs the cache (or calibration images)",
                          "build from a bundle that ships one, pass calib_cache=PATH, or use the Q/DQ ONNX")
    version = trt_version_int(trt_version)
    try:
        verify_cache(calib_cache, {"trt_version": version, "onnx_sha256": onnx_sha256})
    except CalibrationError as e:
        raise CalibrationError(e.message, f"re-export the bundle for TensorRT {trt_version} "
                               "(its cache header must read TRT-" + version + "-...), or calibrate on this "
                               "device from images") from None
    header_algorithm = read_cache(calib_cache).algorithm
    if header_algorithm not in CALIBRATOR_CLASSES:
        raise CalibrationError(f"calibration cache {calib_cache} was made with TensorRT's {header_algorithm}, "
                               f"which edgekit does not build with", f"use one of {sorted(CALIBRATOR_CLASSES)}")
    if algorithm is not None and algorithm != header_algorithm:
        raise ConfigError(f"calib_algorithm {algorithm} asked, but the cache {calib_cache} holds {header_algorithm} "
                          "ranges (TensorRT would ignore it and calibrate on no data)",
                          f"leave calib_algorithm unset or set it to {header_algorithm}")
    return CalibrationPlan(header_algorithm, calib_cache.read_bytes(), calib_cache, file_sha256(calib_cache), None)


class CalibrationLoader:
    """A Polygraphy calibration data loader over a CalibrationSet, batched as the network input asks.

    Polygraphy sets ``input_metadata`` (name -> dtype and the calibration shape) before the first
    batch. Errors are kept in ``error`` and end the iteration (an exception must not cross into
    TensorRT's C++); the builder raises them after the build.
    """

    def __init__(self, images: CalibrationSet, progress: Optional[Progress] = None) -> None:
        self.images = images
        self.progress = progress or (lambda _msg: None)
        self.input_metadata: Any = None
        self.error: Optional[BaseException] = None
        self.batches_read = 0
        self.paths_read: List[Path] = []
        self.batch_shape: Optional[tuple] = None

    def __iter__(self) -> Iterator[Dict[str, np.ndarray]]:
        return self._batches()  # a generator: nothing runs until TensorRT asks for the first batch

    def _batches(self) -> Iterator[Dict[str, np.ndarray]]:
        try:
            name, shape = self._input()
            per_batch, height, width = shape[0], shape[2], shape[3]
            sized = CalibrationSet(self.images.paths, self.images.spec.model_copy(update={"imgsz": (height, width)}),
                                   source=self.images.source)
            total = len(sized) // per_batch
            if total == 0:
                raise CalibrationError(f"calibration set {self.images.source or '(list)'} has {len(sized)} images, "
                                       f"fewer than one batch of the network input {shape}",
                                       f"add images (at least {per_batch})")
            for index in range(total):
                chunk = sized.paths[index * per_batch:(index + 1) * per_batch]
                batch = np.ascontiguousarray(np.concatenate([sized.load(p) for p in chunk], axis=0), np.float32)
                self.paths_read.extend(chunk)
                self.batches_read += 1
                self.progress(f"calibrate: batch {index + 1}/{total} ({per_batch} images of {height}x{width})")
                yield OrderedDict([(name, batch)])
        except Exception as e:  # kept for the builder to raise after TensorRT returns
            self.error = self.error or e

    def _input(self) -> tuple:
        meta = self.input_metadata
        if meta is None:
            raise CalibrationError("TensorRT gave the calibrator no input shape (no calibration profile)",
                                   "give the dynamic inputs an optimization profile")
        if len(meta) != 1:
            raise CalibrationError(f"calibration feeds one image input; the network has inputs {list(meta)}",
                                   "use the Q/DQ ONNX for INT8 of a multi-input model")
        name = next(iter(meta))
        shape = tuple(int(d) for d in meta[name].shape)
        if len(shape) != 4 or shape[1] != 3 or min(shape) < 1:
            raise CalibrationError(f"calibration feeds NCHW images; network input '{name}' has shape {shape}",
                                   "calibrate a 3-channel NCHW image model, or use the Q/DQ ONNX")
        self.batch_shape = shape
        return name, shape


def make_calibrator(trt: Any, plan: CalibrationPlan, cache_file: Path, progress: Optional[Progress]) -> tuple:
    """(Polygraphy Calibrator, loader or None). ``cache_file`` is where the calibrator reads/writes."""
    from polygraphy.backend.trt import Calibrator

    base = getattr(trt, CALIBRATOR_CLASSES[plan.algorithm], None)
    if base is None:
        raise ConfigError(f"TensorRT {trt.__version__} has no {CALIBRATOR_CLASSES[plan.algorithm]}",
                          "build INT8 from the Q/DQ ONNX")
    write_bytes_atomic(cache_file, plan.cache_bytes or b"")  # empty: Polygraphy calibrates
    loader = CalibrationLoader(plan.images, progress) if plan.images is not None else None
    # Polygraphy iterates the loader at construction; an empty list means "cache only".
    calibrator = Calibrator(loader if loader is not None else [], cache=str(cache_file), BaseClass=base)
    return calibrator, loader


def save_device_cache(calibrator: Any, loader: Optional[CalibrationLoader], plan: CalibrationPlan, trt_version: str,
                      onnx_sha256: str, target: Path) -> Optional[Path]:
    """Keep the cache TensorRT wrote while calibrating here (with its sidecar); None if it used a given cache."""
    data = getattr(calibrator, "cache_contents", None)
    if loader is None or not loader.batches_read or not data:
        return None
    data = bytes(data)
    try:
        header = parse_cache(data.decode("latin-1"), str(target)).header
    except CalibrationError as e:  # the engine is built; only the cache's reuse is lost
        LOG.warning("not keeping TensorRT's calibration cache: %s", e.message)
        return None
    shape = loader.batch_shape or (1, 3, 0, 0)
    sidecar = CacheSidecar(trt_version=trt_version_int(trt_version), cache_header=header, onnx_sha256=onnx_sha256,
                           calib_data_hash=plan.images.data_hash() if plan.images is not None else "",
                           method=METHODS.get(plan.algorithm, plan.algorithm), imgsz=(shape[2], shape[3]),
                           batch=shape[0], n_images=len(loader.paths_read), created_utc=utc_now())
    sidecar_path(target).unlink(missing_ok=True)  # never an old sidecar over a new cache
    write_bytes_atomic(target, data)
    write_sidecar(target, sidecar)
    return target


__all__ = ["CalibrationPlan", "CalibrationLoader", "plan_calibration", "make_calibrator", "save_device_cache"]
