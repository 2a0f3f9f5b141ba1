"""Engine keys and the sidecar that says what a plan was built from.

An engine is a plain TensorRT plan (what trtexec, Triton and DeepStream read); its provenance lives
beside it in ``<plan stem>.json`` (:class:`EngineSidecar`). The key hashes everything that makes two
plans differ: device, SM, TensorRT version, precision, every build setting, the ONNX bytes and the
calibration cache bytes. A cached plan is reused only when its sidecar carries the same key and
the plan's sha256 matches the sidecar (a truncated or replaced plan is rebuilt).

Device side: Python 3.8, no TensorRT needed.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from edgekit.core.config import StrictModel
from edgekit.core.errors import ModelError
from edgekit.core.manifest import file_sha256

from .options import EngineBuildOptions

LOG = logging.getLogger("edgekit.deploy.tensorrt")
PathLike = Union[str, Path]
KEY_SCHEMA = 1  # bump when the key's fields change meaning


def key_fields(device_name: str, sm: str, trt_version: str, options: EngineBuildOptions, int8_source: Optional[str],
               calib_algorithm: Optional[str], onnx_sha256: str, calib_cache_sha256: Optional[str]) -> Dict[str, Any]:
    """Every input that changes the plan. The timing cache only changes how fast the build is: not in it."""
    return {
        "schema": KEY_SCHEMA,
        "device": device_name,
        "sm": sm,
        "trt_version": trt_version,
        "precision": options.precision,
        "int8_source": int8_source,
        "calib_algorithm": calib_algorithm,
        "fp16_fallback": options.fp16_fallback if options.precision == "int8" else None,
        "dla_core": options.dla_core,
        "gpu_fallback": options.gpu_fallback if options.dla_core is not None else None,
        "workspace_mb": options.workspace_mb,
        "profiles": {name: [list(p.min), list(p.opt), list(p.max)] for name, p in sorted(options.profiles.items())},
        "builder": options.builder,
        "onnx_sha256": onnx_sha256,
        "calib_cache_sha256": calib_cache_sha256,
    }


def engine_key(fields: Dict[str, Any]) -> str:
    """sha256 (hex) of the canonical JSON of :func:`key_fields`."""
    return hashlib.sha256(json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def plan_name(fields: Dict[str, Any], key: str) -> str:
    """``<precision>[-dla<N>]-<key[:16]>.plan``: readable, and distinct for distinct keys."""
    dla = f"-dla{fields['dla_core']}" if fields.get("dla_core") is not None else ""
    return f"{fields['precision']}{dla}-{key[:16]}.plan"


class EngineSidecar(StrictModel):
    """What a plan was built from and for; stored beside it as ``<plan stem>.json``."""

    key: str
    key_fields: Dict[str, Any]
    trt_version: str
    device_name: str
    compute_capability: str
    precision: str
    int8_source: Optional[str] = None
    calib_algorithm: Optional[str] = None
    dla_core: Optional[int] = None
    onnx: str
    onnx_sha256: str
    calib_cache: Optional[str] = None
    calib_cache_sha256: Optional[str] = None
    shapes: Dict[str, List[List[int]]]  # input -> [min, opt, max]
    workspace_mb: int
    builder: str
    timing_cache: Optional[str] = None
    timing_cache_used: bool = False
    plan_sha256: str
    build_seconds: float
    created_utc: str
    edgekit_version: str


def sidecar_path(plan_path: PathLike) -> Path:
    return Path(plan_path).with_suffix(".json")


def read_sidecar(plan_path: PathLike) -> Optional[EngineSidecar]:
    """The plan's sidecar, None when there is none; ModelError when it is unreadable."""
    side = sidecar_path(plan_path)
    if not side.is_file():
        return None
    try:
        return EngineSidecar.model_validate(json.loads(side.read_text(encoding="utf-8")))
    except (ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"engine sidecar {side} is unreadable: {first}",
                         "delete the engine and its sidecar and rebuild (edgekit engine build --force)") from None


def reusable(plan_path: PathLike, key: str) -> Optional[EngineSidecar]:
    """The sidecar of ``plan_path`` when the plan exists, carries ``key`` and matches its sha256."""
    plan_path = Path(plan_path)
    if not plan_path.is_file():
        return None
    try:
        sidecar = read_sidecar(plan_path)
    except ModelError as e:
        LOG.warning("%s; rebuilding", e.message)
        return None
    if sidecar is None or sidecar.key != key:
        return None
    if sidecar.plan_sha256 != file_sha256(plan_path):
        LOG.warning("engine %s does not match the sha256 in its sidecar; rebuilding", plan_path)
        return None
    return sidecar


__all__ = ["KEY_SCHEMA", "key_fields", "engine_key", "plan_name", "EngineSidecar", "sidecar_path", "read_sidecar",
           "reusable"]
