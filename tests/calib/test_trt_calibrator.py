"""The TensorRT calibrator against fake 8.5/10/11 modules: protocol, device buffers, sidecar-guarded cache."""

from __future__ import annotations

import numpy as np
import pytest
from fakes.fake_cuda import HostCudaMemory
from fakes.fake_tensorrt import make_fake_tensorrt

from edgekit.calib.cache import read_cache, sidecar_path, trt_version_int, verify_cache
from edgekit.calib.dataset import CalibrationSet
from edgekit.calib.trt_calibrator import make_calibrator
from edgekit.core.errors import CalibrationError, DeviceError
from edgekit.core.letterbox import LetterboxSpec

VERSIONS = ["8.5.2.2", "10.3.0.26"]
SHA = {"onnx_sha256": "ab" * 32}


def _run_protocol(calibrator, trt, cuda):
    """What TensorRT does: read cache; if none, get_batch until None; then write the cache."""
    cached = calibrator.read_calibration_cache()
    if cached:
        return cached, []
    batches = []
    while True:
        ptrs = calibrator.get_batch(["images"])
        if ptrs is None:
            break
        n = calibrator.get_batch_size() * 3 * 16 * 16
        batches.append(np.frombuffer(cuda.read(ptrs[0], n * 4), np.float32).copy())
    header = f"TRT-{trt_version_int(trt.__version__)}-{calibrator.algorithm}"  # the fake base's algorithm name
    calibrator.write_calibration_cache(memoryview(f"{header}\nimages: 3c000000\n".encode()))
    return None, batches


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("method, base", [("entropy2", "IInt8EntropyCalibrator2"), ("minmax", "IInt8MinMaxCalibrator")])
def test_calibrates_then_reuses_its_cache(tmp_path, tiny_calib, version, method, base):
    cuda = HostCudaMemory()
    trt = make_fake_tensorrt(version, memory=cuda)
    cache = tmp_path / "m.calib.cache"
    calibrator = make_calibrator(trt, tiny_calib, cache, method=method, batch_size=3, sidecar=SHA, cuda=cuda)
    assert isinstance(calibrator, getattr(trt, base))
    cached, batches = _run_protocol(calibrator, trt, cuda)
    assert cached is None and len(batches) == 2  # 8 images, batches of 3, remainder dropped (TRT needs full ones)
    expected = np.concatenate(list(tiny_calib.batches(3, drop_last=True)))
    np.testing.assert_array_equal(np.concatenate(batches), expected.ravel())
    assert calibrator.error is None
    side = verify_cache(cache, {**SHA, "calib_data_hash": tiny_calib.data_hash(), "method": method, "batch": 3,
                                "n_images": 6, "imgsz": (16, 16)})
    assert side.cache_header == read_cache(cache).header
    calibrator.free()
    assert cuda.live == {} and cuda.streams == {}

    again = make_calibrator(trt, tiny_calib, cache, method=method, batch_size=3, sidecar=SHA, cuda=cuda)
    assert again.read_calibration_cache() == cache.read_bytes()
    cache_only = make_calibrator(trt, None, cache, method=method, sidecar=SHA, cuda=cuda)
    assert cache_only.read_calibration_cache() == cache.read_bytes()


@pytest.mark.parametrize("change", ["onnx", "images", "trt_version", "method", "sidecar_missing"])
def test_stale_cache_makes_tensorrt_recalibrate(tmp_path, tiny_calib, calib_dir, change):
    cuda = HostCudaMemory()
    trt = make_fake_tensorrt("8.5.2.2", memory=cuda)
    cache = tmp_path / "m.calib.cache"
    _run_protocol(make_calibrator(trt, tiny_calib, cache, method="minmax", sidecar=SHA, cuda=cuda), trt, cuda)
    calib, sha, method = tiny_calib, SHA, "minmax"
    if change == "onnx":
        sha = {"onnx_sha256": "cd" * 32}
    elif change == "images":
        calib = CalibrationSet.from_dir(calib_dir, LetterboxSpec(imgsz=16), size=8, seed=5)
    elif change == "trt_version":
        trt = make_fake_tensorrt("10.3.0.26", memory=cuda)
    elif change == "method":
        method = "entropy2"
    else:
        sidecar_path(cache).unlink()
    fresh = make_calibrator(trt, calib, cache, method=method, sidecar=sha, cuda=cuda)
    assert fresh.read_calibration_cache() is None  # TensorRT then calibrates against the exact network
    if change != "images":  # without images the data hash cannot be compared; everything else can
        with pytest.raises(CalibrationError, match=str(cache)):
            make_calibrator(trt, None, cache, method=method, sidecar=sha, cuda=cuda)  # no images: refuse now


def test_refused_on_tensorrt_11_pointing_at_qdq(tmp_path, tiny_calib):
    trt = make_fake_tensorrt("11.4.0.106")
    with pytest.raises(DeviceError, match="Q/DQ"):
        make_calibrator(trt, tiny_calib, tmp_path / "c.cache", sidecar=SHA)


def test_errors_inside_tensorrt_callbacks_are_kept_not_raised(tmp_path, tiny_calib):
    class BrokenMemory(HostCudaMemory):
        def htod(self, ptr, host, stream):
            raise RuntimeError("copy failed")

    trt = make_fake_tensorrt("8.5.2.2")
    calibrator = make_calibrator(trt, tiny_calib, tmp_path / "c.cache", sidecar=SHA, cuda=BrokenMemory())
    assert calibrator.get_batch(["images"]) is None
    assert isinstance(calibrator.error, RuntimeError)


@pytest.mark.parametrize("kwargs, error, match", [
    ({"method": "percentile"}, CalibrationError, "unknown TensorRT calibrator"),
    ({"batch_size": 9}, CalibrationError, "fewer than one batch"),
    ({"sidecar": {}}, ValueError, "onnx_sha256"),
])
def test_bad_arguments(tmp_path, tiny_calib, kwargs, error, match):
    args = {"sidecar": SHA, **kwargs}
    with pytest.raises(error, match=match):
        make_calibrator(make_fake_tensorrt("8.5.2.2"), tiny_calib, tmp_path / "c.cache", **args)
