"""TensorRT INT8 calibration caches and the sidecar that guards their reuse.

Cache format (what TensorRT's calibrators read and write)::

    TRT-8502-EntropyCalibration2
    images: 3c010a14
    /model.0/conv/Conv_output_0: 3d8e2c1a

The header is ``TRT-<version int>-<algorithm>``; each line maps a tensor name to the big-endian
bits of a float32 *scale* (dynamic range = scale * 127). A cache belongs to one exact graph, one
TensorRT version and one calibration set, yet TensorRT itself only checks the header and skips
tensors it does not know. Ultralytics' users were bitten by a stale ``<model>.cache`` silently
reused after the data or batch changed (#24668), so every cache here has a JSON sidecar
(:class:`CacheSidecar`) and :func:`verify_cache` refuses a cache whose sidecar is missing or
disagrees with what the caller is about to build.

The host computes activation ranges (:mod:`edgekit.calib.ranges`) and writes them here with
:func:`write_cache_with_sidecar`; the on-device calibrator (:mod:`edgekit.deploy.tensorrt.calibration`)
regenerates the cache against the exact parsed network whenever the sidecar does not match, and
the sidecar, not the cache, is what decides reuse.

Device-safe: reading, writing and verifying caches only (no onnx, no onnxruntime).
"""

from __future__ import annotations

import datetime as _dt
import json
import re
import struct
from pathlib import Path
from typing import Any, Dict, Mapping, NamedTuple, Tuple, Union

from edgekit.core.atomic import write_json_atomic, write_text_atomic
from edgekit.core.config import StrictModel
from edgekit.core.errors import CalibrationError
from edgekit.core.manifest import file_sha256
from edgekit.core.vocab import TRT_ALGORITHM_FOR_METHOD

PathLike = Union[str, Path]

# TensorRT's calibrator algorithm names, as they appear in cache headers.
# "minmax"/"entropy" are the cache methods export ships (edgekit.core.vocab: onnxruntime's entropy
# ranges stand in for TRT's Entropy2 on the host); the others name TensorRT's calibrators directly.
ALGORITHMS = {
    "entropy2": "EntropyCalibration2",
    "entropy": TRT_ALGORITHM_FOR_METHOD["entropy"],
    "minmax": TRT_ALGORITHM_FOR_METHOD["minmax"],
    "legacy": "LegacyCalibration",
    "entropy1": "EntropyCalibration",
}
_HEADER = re.compile(r"^TRT-(\d+)-([A-Za-z0-9]+)$")
_LINE = re.compile(r"^(.+): ([0-9a-fA-F]{8})$")


class CalibrationCache(NamedTuple):
    header: str
    trt_version: str
    algorithm: str
    scales: Dict[str, float]


def scale_to_hex(scale: float) -> str:
    """0.0078125 -> '3c000000': big-endian float32 bits, as TensorRT writes them."""
    return struct.pack(">f", float(scale)).hex()


def hex_to_scale(text: str) -> float:
    return struct.unpack(">f", bytes.fromhex(text))[0]


def trt_version_int(version: str) -> str:
    """'8.5.2.2' -> '8502', '10.3.0.26' -> '100300' (NV_TENSORRT_VERSION, as in cache headers)."""
    parts = [int(p) for p in (str(version).split(".") + ["0", "0"])[:3]]
    major, minor, patch = parts
    if major >= 10:  # TRT 10 widened the encoding: major*10000 + minor*100 + patch
        return str(major * 10000 + minor * 100 + patch)
    return str(major * 1000 + minor * 100 + patch)


def parse_cache(text: str, source: str = "cache") -> CalibrationCache:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    m = _HEADER.match(lines[0]) if lines else None
    if m is None:
        raise CalibrationError(f"calibration cache {source} has no 'TRT-<version>-<algorithm>' header",
                               "delete it and re-run calibration")
    scales: Dict[str, float] = {}
    for ln in lines[1:]:
        lm = _LINE.match(ln)
        if lm is None:
            raise CalibrationError(f"calibration cache {source} has a malformed line {ln[:60]!r}",
                                   "delete it and re-run calibration")
        scales[lm.group(1)] = hex_to_scale(lm.group(2))
    return CalibrationCache(lines[0], m.group(1), m.group(2), scales)


def read_cache(path: PathLike) -> CalibrationCache:
    path = Path(path)
    try:
        # latin-1: TRT writes raw bytes; names are ASCII in practice, and this never fails to decode.
        text = path.read_bytes().decode("latin-1")
    except OSError as e:
        raise CalibrationError(f"cannot read calibration cache {path}: {e.strerror}",
                               "re-run calibration to create it") from None
    return parse_cache(text, str(path))


def format_cache(trt_version: str, algorithm: str, scales: Mapping[str, float]) -> str:
    bad = [name for name, s in scales.items() if not (s > 0.0 and s < float("inf"))]
    if bad:
        raise CalibrationError(f"calibration scales must be positive and finite; bad tensors: {', '.join(bad[:5])}")
    lines = [f"TRT-{trt_version}-{algorithm}"] + [f"{name}: {scale_to_hex(s)}" for name, s in scales.items()]
    return "\n".join(lines) + "\n"


def write_cache(path: PathLike, trt_version: str, algorithm: str, scales: Mapping[str, float]) -> Path:
    """Write a TRT-format cache atomically."""
    return write_text_atomic(path, format_cache(trt_version, algorithm, scales))


class CacheSidecar(StrictModel):
    """What a calibration cache was made from; stored beside it as ``<cache>.json``."""

    trt_version: str
    cache_header: str
    onnx_sha256: str
    calib_data_hash: str
    method: str
    imgsz: Tuple[int, int]
    batch: int
    n_images: int
    created_utc: str


def sidecar_path(cache_path: PathLike) -> Path:
    cache_path = Path(cache_path)
    return cache_path.with_name(cache_path.name + ".json")


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()


def _short(value: Any) -> str:
    text = str(value)
    return text[:12] + "..." if len(text) > 16 else text


def verify_cache(cache_path: PathLike, expected: Union[Mapping[str, Any], CacheSidecar]) -> CacheSidecar:
    """Return the cache's sidecar if every field in ``expected`` matches; else CalibrationError.

    ``expected`` may name only some fields (e.g. just ``onnx_sha256`` and ``trt_version`` when no
    calibration images are at hand); those are the ones compared. The cache header is checked
    against the sidecar too, so a cache overwritten by another tool is refused.
    """
    cache_path = Path(cache_path)
    fix = "delete it or re-run calibration"
    if not cache_path.is_file():
        raise CalibrationError(f"calibration cache {cache_path} does not exist", "run calibration to create it")
    side_path = sidecar_path(cache_path)
    if not side_path.is_file():
        raise CalibrationError(f"calibration cache {cache_path} has no sidecar {side_path.name}, so what it was "
                               f"made from is unknown", fix)
    try:
        sidecar = CacheSidecar.model_validate(json.loads(side_path.read_text(encoding="utf-8")))
    except (ValueError, OSError) as e:
        first = str(e).splitlines()[0]
        raise CalibrationError(f"calibration cache sidecar {side_path} is unreadable: {first}", fix) from None
    header = read_cache(cache_path).header
    want = expected.model_dump() if isinstance(expected, CacheSidecar) else dict(expected)
    want.pop("created_utc", None)
    problems = []
    if header != sidecar.cache_header:
        problems.append(f"its header is {header} but the sidecar says {sidecar.cache_header}")
    have = sidecar.model_dump()
    for key, value in want.items():
        if key not in have:
            raise ValueError(f"unknown calibration sidecar field {key!r}")  # a caller bug, not a user error
        mine = tuple(value) if isinstance(value, list) else value
        if have[key] != mine:
            problems.append(f"was made for {key.replace('_', ' ')} {_short(have[key])}, this build has {_short(mine)}")
    if problems:
        raise CalibrationError(f"calibration cache {cache_path} " + "; ".join(problems), fix)
    return sidecar


def write_sidecar(cache_path: PathLike, sidecar: CacheSidecar) -> Path:
    return write_json_atomic(sidecar_path(cache_path), sidecar.model_dump(mode="json"))


def write_cache_with_sidecar(onnx_path: PathLike, scales: Mapping[str, float], method: str, out_dir: PathLike,
                            imgsz: Union[int, Tuple[int, int]], batch: int, *, trt_version: str,
                            calib_data_hash: str, n_images: int) -> Tuple[Path, Path]:
    """Write ``<onnx stem>.<method>.calib.cache`` (``scales`` per tensor) and its sidecar.

    ``trt_version`` is the TensorRT the cache is for, as ``"8.5.2"`` or ``"8502"``: TensorRT
    refuses a cache whose header names another version, so there is no default. Returns
    (cache_path, sidecar_path).
    """
    onnx_path = Path(onnx_path)
    algorithm = ALGORITHMS.get(method)
    if algorithm is None:
        raise CalibrationError(f"unknown calibration method {method!r}", "use 'minmax' or 'entropy'")
    version = trt_version_int(trt_version) if "." in str(trt_version) else str(trt_version)
    if not version.isdigit():
        raise CalibrationError(f"TensorRT version {trt_version!r} is not like 8.5.2 or 8502",
                               "pass the target's TensorRT version")
    cache_path = Path(out_dir) / f"{onnx_path.stem}.{method}.calib.cache"
    size = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else (int(imgsz[0]), int(imgsz[1]))
    sidecar = CacheSidecar(trt_version=version, cache_header=f"TRT-{version}-{algorithm}",
                           onnx_sha256=file_sha256(onnx_path), calib_data_hash=calib_data_hash, method=method,
                           imgsz=size, batch=int(batch), n_images=int(n_images), created_utc=utc_now())
    # Old sidecar out, cache in, new sidecar in: a crash at any point leaves a cache with no sidecar
    # (refused) or a matching pair, never a new cache vouched for by an old sidecar.
    sidecar_path(cache_path).unlink(missing_ok=True)
    write_cache(cache_path, version, algorithm, scales)
    return cache_path, write_sidecar(cache_path, sidecar)


__all__ = [
    "CalibrationCache", "CacheSidecar", "ALGORITHMS", "read_cache", "write_cache", "parse_cache", "format_cache",
    "scale_to_hex", "hex_to_scale", "trt_version_int", "sidecar_path", "verify_cache", "write_sidecar",
    "write_cache_with_sidecar",
]

