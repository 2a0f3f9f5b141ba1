"""The bundle manifest: the versioned ``manifest.json`` that describes an exported bundle.

A bundle is a directory (optionally tarred) that carries everything the device needs: the ONNX
models, the calibration cache and its sidecar, golden inputs/outputs, and this manifest, which
says how to preprocess, how to decode, and the sha256 of every file. Export writes it
(:func:`write_manifest`), the device reads it (:func:`load_manifest`) and checks the files
(:func:`verify_bundle_files`) before building an engine. Unknown keys are errors, and a manifest
from a newer edgekit is refused rather than half-understood.

Roles in ``models`` are the names of :data:`edgekit.core.vocab.MODEL_ROLES`: a one-graph detector
has "fp32" (+ "int8_qdq"); RefDet adds "reference_encoder" (its per-frame graph is "fp32"), and its
export's reference photos (``references``) are the default target. Every model file, calibration
file and reference photo must also appear in ``files``.
"""

from __future__ import annotations

import hashlib
import json
import os
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Dict, Iterable, List, Literal, Optional, Union

from pydantic import Field, field_validator, model_validator

from .atomic import write_json_atomic
from .config import StrictModel, build_config
from .errors import ConfigError, ModelError
from .letterbox import LetterboxSpec
from .postprocess import PostprocessSpec
from .vocab import TRT_ALGORITHM_FOR_METHOD, TrtCalibAlgorithm

SCHEMA_VERSION = 2  # v2 adds engine profiles, the TensorRT calibration algorithm/version and the target
MANIFEST_NAME = "manifest.json"
_REEXPORT = "re-export the bundle"


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _check_schema_version(version: object) -> None:
    if isinstance(version, bool) or not isinstance(version, int):
        raise ModelError(f"{MANIFEST_NAME}: schema_version must be an integer, got {version!r}", _REEXPORT)
    if version > SCHEMA_VERSION:
        raise ModelError(f"bundle schema v{version} is newer than this edgekit (v{SCHEMA_VERSION})", "upgrade edgekit")
    if version < 1:
        raise ModelError(f"{MANIFEST_NAME}: unknown bundle schema v{version}", _REEXPORT)


def _relative_file(name: str) -> str:
    """Bundle file names are relative POSIX paths that stay inside the bundle."""
    p = PurePosixPath(name)
    if not name or p.is_absolute() or ".." in p.parts or "\\" in name:
        raise ValueError(f"'{name}' must be a relative path inside the bundle (no '..', no absolute paths)")
    return name


class TensorSpec(StrictModel):
    """One model input or output; ``shape`` dims are ints or names of dynamic axes (e.g. "batch")."""

    name: str
    shape: List[Union[int, str]]
    dtype: str = "float32"


class ShapeRange(StrictModel):
    """One input's engine optimisation-profile entry: min <= opt <= max per axis."""

    min: List[int]
    opt: List[int]
    max: List[int]

    @model_validator(mode="after")
    def _ordered(self) -> ShapeRange:
        if not (len(self.min) == len(self.opt) == len(self.max)):
            raise ValueError("min, opt and max must have the same rank")
        if any(not (0 < a <= b <= c) for a, b, c in zip(self.min, self.opt, self.max)):
            raise ValueError(f"need 0 < min <= opt <= max per axis, got {self.min} / {self.opt} / {self.max}")
        return self


class ModelEntry(StrictModel):
    """One model file of the bundle, by role ("fp32", "int8_qdq", "reference_encoder", ...).

    ``profile`` gives min/opt/max shapes for inputs with dynamic axes (the engine's optimisation
    profile); static inputs need none.
    """

    file: str
    inputs: List[TensorSpec]
    outputs: List[TensorSpec]
    opset: Optional[int] = None
    profile: Dict[str, ShapeRange] = Field(default_factory=dict)
    # The precision TensorRT builds this graph at whatever the frames run at (RefDet's reference_encoder:
    # "fp16"); None: the precision asked for.
    engine_precision: Optional[Literal["fp32", "fp16"]] = None

    @field_validator("file")
    @classmethod
    def _inside_bundle(cls, v: str) -> str:
        return _relative_file(v)


class FileEntry(StrictModel):
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    bytes: int = Field(ge=0)


TrtAlgorithm = TrtCalibAlgorithm  # defined once, in edgekit.core.vocab
# What each export calibration method ships as a TensorRT cache: TensorRT has no percentile
# calibrator, so a percentile Q/DQ export ships a MinMax-range cache (said here, in the manifest).
# "entropy2" is how schema v1 manifests named TensorRT's entropy calibrator.
TRT_ALGORITHM_OF_METHOD: Dict[str, str] = {**TRT_ALGORITHM_FOR_METHOD, "entropy2": "EntropyCalibration2"}


class CalibrationEntry(StrictModel):
    """The INT8 calibration cache and the JSON sidecar that says how it was made.

    ``method`` is how the export computed ranges; ``trt_algorithm`` is the TensorRT calibrator
    the cache is for (its header), ``trt_version`` the TensorRT version written in that header and
    ``model`` the role of the graph whose tensor names the cache holds.
    """

    cache: str
    sidecar: str
    method: str  # e.g. "entropy", "minmax", "percentile"
    n_images: int = Field(ge=1)
    trt_algorithm: Optional[TrtAlgorithm] = None  # None only in schema v1 manifests (derived from method)
    trt_version: Optional[str] = None
    model: str = "fp32"

    @field_validator("cache", "sidecar")
    @classmethod
    def _inside_bundle(cls, v: str) -> str:
        return _relative_file(v)


class GoldenEntry(StrictModel):
    """Golden inputs and reference outputs for on-device parity checks."""

    dir: str = "golden"
    n: int = Field(ge=1)
    tolerances: Dict[str, float] = Field(default_factory=dict)  # e.g. {"atol": 1e-3, "min_iou": 0.9}


class Provenance(StrictModel):
    run_id: Optional[str] = None
    git_sha: Optional[str] = None
    created_utc: str = Field(default_factory=_utc_now)
    versions: Dict[str, str] = Field(default_factory=dict)  # package -> version at export
    source_checkpoint: Optional[str] = None


class TilingPlan(StrictModel):
    """A bundle's tiled input plan: frames are cut into ``tile`` px tiles ``overlap`` px apart and run
    ``batch`` at a time (None: all tiles of a frame at once where the model's batch axis allows).

    Optional in schema v2: a manifest without it runs whole frames. ``full_frame`` adds a pass over
    the whole frame at model size, for objects larger than a tile.
    """

    tile: int = Field(ge=32)
    overlap: int = Field(0, ge=0)
    batch: Optional[int] = Field(None, ge=1)
    full_frame: bool = False

    @model_validator(mode="after")
    def _overlap_below_tile(self) -> TilingPlan:
        if self.overlap >= self.tile:
            raise ValueError(f"overlap {self.overlap} must be smaller than tile {self.tile}")
        return self


class BundleManifest(StrictModel):
    """Everything the device needs to know about a bundle (schema v1)."""

    schema_version: int = SCHEMA_VERSION
    task: Literal["obb", "detect", "refdet"]
    classes: List[str]
    models: Dict[str, ModelEntry]
    preprocess: LetterboxSpec = Field(default_factory=LetterboxSpec)
    postprocess: PostprocessSpec = Field(default_factory=PostprocessSpec)
    files: Dict[str, FileEntry] = Field(default_factory=dict)
    calibration: Optional[CalibrationEntry] = None
    golden: Optional[GoldenEntry] = None
    provenance: Provenance = Field(default_factory=Provenance)
    target: Optional[str] = None  # the device the bundle was exported for, e.g. "jetson-xavier-nx"
    tiling: Optional[TilingPlan] = None  # sliced inference by default (edgekit.deploy.tiling); None: whole frames
    # RefDet: the reference photos (bundle-relative, e.g. references/img_1.jpg) of the default target, which
    # bench and the daemon use until a target is set (edgekit.deploy.refdet). Empty for other tasks.
    references: List[str] = Field(default_factory=list)

    @field_validator("schema_version", mode="before")
    @classmethod
    def _known_version(cls, v):  # ModelError passes through pydantic untouched
        _check_schema_version(v)
        return v

    @field_validator("files")
    @classmethod
    def _inside_bundle(cls, v: Dict[str, FileEntry]) -> Dict[str, FileEntry]:
        for name in v:
            _relative_file(name)
        return v

    @field_validator("references")
    @classmethod
    def _references_inside_bundle(cls, v: List[str]) -> List[str]:
        for name in v:
            _relative_file(name)
        return v

    def referenced_files(self) -> List[str]:
        """Files the manifest points at (models, calibration), which ``files`` must hash."""
        names = [m.file for m in self.models.values()]
        if self.calibration is not None:
            names += [self.calibration.cache, self.calibration.sidecar]
        return names + list(self.references)


def file_sha256(path: Union[str, os.PathLike], chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (engines and models can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk_size), b""):
            digest.update(block)
    return digest.hexdigest()


def describe_files(bundle_dir: Union[str, os.PathLike], names: Iterable[str]) -> Dict[str, FileEntry]:
    """``files`` entries (sha256, size) for the given bundle-relative names."""
    root = Path(bundle_dir)
    out = {}
    for name in names:
        path = root / _relative_file(name)
        if not path.is_file():
            raise ModelError(f"bundle file {path} does not exist", "write it before describing the bundle")
        out[name] = FileEntry(sha256=file_sha256(path), bytes=path.stat().st_size)
    return out


def write_manifest(manifest: BundleManifest, bundle_dir: Union[str, os.PathLike]) -> Path:
    """Write ``bundle_dir/manifest.json`` atomically; returns its path."""
    return write_json_atomic(Path(bundle_dir) / MANIFEST_NAME, manifest.model_dump(mode="json"))


def _manifest_path(bundle_dir_or_file: Union[str, os.PathLike]) -> Path:
    path = Path(bundle_dir_or_file)
    if path.is_dir():
        path = path / MANIFEST_NAME
    if path.is_dir():
        raise ModelError(f"bundle manifest {path} is a directory, not a file",
                         f"point at a bundle directory whose {MANIFEST_NAME} is the file edgekit export wrote")
    if not path.is_file():
        raise ModelError(f"bundle manifest {path} does not exist", f"point at a bundle directory with a {MANIFEST_NAME}")
    return path


def load_manifest(bundle_dir_or_file: Union[str, os.PathLike]) -> BundleManifest:
    """Read and validate a manifest (a bundle directory or the manifest file itself)."""
    path = _manifest_path(bundle_dir_or_file)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot parse {path}: {e}", _REEXPORT) from None
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object, got {type(data).__name__}", _REEXPORT)
    _check_schema_version(data.get("schema_version", SCHEMA_VERSION))
    try:
        return build_config(BundleManifest, data, str(path))
    except ConfigError as e:  # the manifest is written by export, never by hand: the fix is to re-export
        fix = e.fix if e.fix and "did you mean" in e.fix else _REEXPORT
        raise ModelError(e.message, fix) from None


def verify_bundle_files(bundle_dir: Union[str, os.PathLike], manifest: BundleManifest) -> None:
    """Check every file listed in the manifest exists with the recorded size and sha256.

    Raises :class:`ModelError` naming the first missing or mismatched file.
    """
    root = Path(bundle_dir)
    if root.is_file():
        root = root.parent
    for name in manifest.referenced_files():
        if name not in manifest.files:
            raise ModelError(f"{MANIFEST_NAME} references {name} but lists no sha256 for it", _REEXPORT)
    for name, entry in manifest.files.items():
        path = root / name
        if not path.is_file():
            raise ModelError(f"bundle file {name} listed in {MANIFEST_NAME} is missing from {root}", _REEXPORT)
        size = path.stat().st_size
        if size != entry.bytes:
            raise ModelError(f"bundle file {name} is {size} bytes but {MANIFEST_NAME} says {entry.bytes}", _REEXPORT)
        if file_sha256(path) != entry.sha256:
            raise ModelError(f"bundle file {name} does not match its sha256 in {MANIFEST_NAME}", _REEXPORT)


__all__ = [
    "SCHEMA_VERSION", "MANIFEST_NAME", "BundleManifest", "ModelEntry", "TensorSpec", "FileEntry", "ShapeRange", "TilingPlan",
    "TrtAlgorithm", "TRT_ALGORITHM_OF_METHOD",
    "CalibrationEntry", "GoldenEntry", "Provenance", "file_sha256", "describe_files", "write_manifest",
    "load_manifest", "verify_bundle_files",
]
