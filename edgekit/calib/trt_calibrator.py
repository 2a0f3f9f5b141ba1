"""TensorRT's implicit INT8 calibrator (TensorRT 8.5 and 10 only), guarded by the cache sidecar.

:func:`make_calibrator` builds, from whichever ``tensorrt`` module it is given, a subclass of
``trt.IInt8EntropyCalibrator2`` or ``trt.IInt8MinMaxCalibrator`` that feeds a
:class:`~edgekit.calib.dataset.CalibrationSet` through device buffers, and reads and writes a
calibration cache only together with its sidecar:

* ``read_calibration_cache`` verifies the sidecar first (TRT version + algorithm header, ONNX
  hash, calibration data hash, image size) and returns None on any mismatch, so TensorRT
  recalibrates against the exact parsed network instead of silently reusing a stale cache
  (Ultralytics #24668). A host-made cache (:func:`~edgekit.calib.cache.write_calibration_cache`)
  is keyed by ONNX tensor names; TensorRT fills the scales of its own parser-made tensors only
  when it calibrates itself, which is what a mismatch triggers.
* ``write_calibration_cache`` writes cache and sidecar atomically.

TensorRT 11 removed implicit quantization entirely; there :func:`make_calibrator` refuses and
points at the explicit Q/DQ path. Runs on the device (Python 3.8, no onnx, no torch).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Union

import numpy as np

from edgekit.core.atomic import write_bytes_atomic
from edgekit.core.errors import CalibrationError, DeviceError

from .cache import (
    ALGORITHMS,
    CacheSidecar,
    parse_cache,
    sidecar_path,
    trt_version_int,
    utc_now,
    verify_cache,
    write_sidecar,
)

LOG = logging.getLogger(__name__)
CALIBRATOR_CLASSES = {"entropy2": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


def trt_major(trt: Any) -> int:
    return int(str(trt.__version__).split(".")[0])


def expected_sidecar(trt: Any, calib: Any, method: str, sidecar: Optional[Mapping[str, Any]]) -> Dict[str, Any]:
    """The sidecar fields a reusable cache must carry for this build."""
    version = trt_version_int(trt.__version__)
    want: Dict[str, Any] = {"trt_version": version, "cache_header": f"TRT-{version}-{ALGORITHMS[method]}"}
    if calib is not None:
        want.update(calib_data_hash=calib.data_hash(), imgsz=tuple(calib.spec.imgsz))
    want.update(dict(sidecar or {}))
    return want


def make_calibrator(trt: Any, calib: Any, cache_path: Union[str, Path], method: str = "entropy2",
                    batch_size: int = 1, sidecar: Optional[Mapping[str, Any]] = None, cuda: Any = None) -> Any:
    """A TensorRT INT8 calibrator over ``calib`` with a sidecar-guarded cache at ``cache_path``.

    ``sidecar`` holds the fields this build must match, at least ``onnx_sha256``. ``calib`` may be
    None when a valid cache exists (then the cache alone is used, after verifying it now).
    ``cuda`` is a :class:`~edgekit.deploy.runners.tensorrt.CudaMemory`-like object (tests inject one).
    """
    if method not in CALIBRATOR_CLASSES:
        raise CalibrationError(f"unknown TensorRT calibrator {method!r}", "use 'entropy2' or 'minmax' "
                               "(MinMax is the safer choice for OBB heads, Ultralytics #19518)")
    base = getattr(trt, CALIBRATOR_CLASSES[method], None)
    if trt_major(trt) >= 11 or base is None:
        raise DeviceError(f"TensorRT {trt.__version__} has no implicit INT8 calibration (removed in 11)",
                          "build INT8 from the Q/DQ ONNX (model.int8.qdq.onnx, int8_mode='explicit')")
    if not (sidecar or {}).get("onnx_sha256"):
        raise ValueError("make_calibrator needs sidecar={'onnx_sha256': ...} to tie the cache to its model")
    cache_path = Path(cache_path)
    want = expected_sidecar(trt, calib, method, sidecar)
    if calib is None:
        verify_cache(cache_path, want)  # no images to recalibrate with: the cache must be right, now
    elif len(calib) < batch_size:
        raise CalibrationError(f"calibration set {calib.source} has {len(calib)} images, fewer than one batch of "
                               f"{batch_size}", "add images or lower the calibration batch size")

    class EdgekitCalibrator(base):  # type: ignore[misc,valid-type]
        def __init__(self) -> None:
            base.__init__(self)  # TensorRT's pybind trampolines need the base initialised explicitly
            self.cache_path, self.method, self.batch_size = cache_path, method, int(batch_size)
            self.expected, self.calib = want, calib
            self.error: Optional[BaseException] = None
            self.n_fed = 0
            self._cuda, self._ptr, self._stream = cuda, 0, None
            self._batches: Iterator[np.ndarray] = iter(calib.batches(batch_size, drop_last=True) if calib else ())

        def get_batch_size(self) -> int:
            return self.batch_size

        def get_batch(self, names: List[str], *args: Any) -> Optional[List[int]]:
            # Exceptions must not cross into TensorRT's C++ (it would abort the build opaquely):
            # keep the first one for build_engine to raise, and end calibration.
            try:
                return self._next_batch(names)
            except Exception as e:
                self.error = self.error or e
                return None

        def _next_batch(self, names: List[str]) -> Optional[List[int]]:
            batch = next(self._batches, None)
            if batch is None:
                return None
            if len(names) != 1:
                raise CalibrationError(f"calibration feeds one image input, the network has inputs {names}")
            batch = np.ascontiguousarray(batch, dtype=np.float32)
            if self._ptr == 0:
                self._cuda = self._cuda or _cuda_memory()
                self._ptr, self._stream = self._cuda.malloc(batch.nbytes), self._cuda.create_stream()
            self._cuda.htod(self._ptr, batch, self._stream)
            self._cuda.synchronize(self._stream)
            self.n_fed += batch.shape[0]
            return [int(self._ptr)]

        def read_calibration_cache(self) -> Optional[bytes]:
            if not self.cache_path.is_file():
                return None
            try:
                verify_cache(self.cache_path, self.expected)
            except CalibrationError as e:
                LOG.warning("%s; recalibrating", e.message)
                return None
            LOG.info("using calibration cache %s", self.cache_path)
            return self.cache_path.read_bytes()

        def write_calibration_cache(self, cache: Any) -> None:
            try:
                self._write(bytes(cache))
            except Exception as e:
                self.error = self.error or e

        def _write(self, data: bytes) -> None:
            header = parse_cache(data.decode("latin-1"), str(self.cache_path)).header
            fields = dict(self.expected, cache_header=header, method=self.method, batch=self.batch_size,
                          n_images=self.n_fed, created_utc=utc_now())
            fields.setdefault("calib_data_hash", "")
            fields.setdefault("imgsz", (0, 0))
            sidecar_path(self.cache_path).unlink(missing_ok=True)  # never an old sidecar over a new cache
            write_bytes_atomic(self.cache_path, data)
            write_sidecar(self.cache_path, CacheSidecar(**fields))

        def free(self) -> None:
            if self._ptr:
                self._cuda.free(self._ptr)
                self._cuda.destroy_stream(self._stream)
                self._ptr, self._stream = 0, None

    return EdgekitCalibrator()


def _cuda_memory() -> Any:
    # lazy: the device-memory helper lives with the runner
    from edgekit.deploy.runners.tensorrt import CudaMemory

    return CudaMemory()


__all__ = ["make_calibrator", "expected_sidecar", "CALIBRATOR_CLASSES", "trt_major"]
