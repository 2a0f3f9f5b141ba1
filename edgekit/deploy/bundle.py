"""``Bundle``: the one way every consumer (detector, demo, bench, daemon, jetson) opens a deploy bundle.

:meth:`Bundle.open` refuses a bundle before anything is built from it: an unknown or newer schema,
a file whose size or sha256 differs from ``manifest.json`` (tampered, truncated or swapped), a file
that escapes the bundle through a link, a missing golden set, or a model whose real ONNX input
(read from the file, :mod:`edgekit.core.onnx_io`) disagrees with the manifest's letterbox. Each
refusal is one line naming the file. Then it exposes what the device needs: model roles and paths,
the calibration cache in TensorRT's own vocabulary, the engine optimisation profile, the golden
set, a ready :class:`~edgekit.deploy.detector.Detector` (for a RefDet bundle a
:class:`~edgekit.deploy.refdet.RefDetDetector`), and the engine cache directory.

>>> with Bundle.open("runs/demo/bundle").detector("onnxruntime") as det:  # doctest: +SKIP
...     dets = det(cv2.imread("frame.jpg"))
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

from edgekit.core.errors import ConfigError, ModelError
from edgekit.core.manifest import (
    MANIFEST_NAME,
    TRT_ALGORITHM_OF_METHOD,
    BundleManifest,
    ModelEntry,
    load_manifest,
    verify_bundle_files,
)

from .detector import Detector

PathLike = Union[str, "os.PathLike[str]"]
Shape = Tuple[int, ...]
ENGINE_CACHE_ENV = "EDGEKIT_ENGINE_CACHE"  # where engines go when the bundle itself is read-only
GOLDEN_INDEX = "golden.json"
_REEXPORT = "re-export the bundle (edgekit export)"
# Which bundle model each (backend, precision) runs. TensorRT FP16 builds from the FP32 graph;
# TensorRT INT8 from the Q/DQ graph (or FP32 + calibration cache: decided by the engine builder).
_ONNX_ROLE = {("onnxruntime", "fp32"): "fp32", ("onnxruntime", "int8"): "int8_qdq"}
ENCODER_ROLE = "reference_encoder"  # RefDet's reference encoder: FP32 ONNX, built FP16 on TensorRT, never INT8


def encoder_precision(backend: str, entry: Optional[ModelEntry] = None) -> str:
    """The precision a RefDet bundle's reference encoder runs at on ``backend`` (whatever the frames run at):
    TensorRT builds it at the manifest's ``engine_precision`` (export writes "fp16": it runs once per target,
    INT8 would cost accuracy for no frame-rate gain), ONNX Runtime runs the FP32 file."""
    if backend != "tensorrt":
        return "fp32"
    return (entry.engine_precision if entry is not None else None) or "fp16"


class CalibrationInfo(NamedTuple):
    """The bundle's implicit-INT8 calibration cache, in TensorRT's own terms."""

    cache: Path
    sidecar: Path
    method: str  # how export computed the ranges (minmax | entropy | percentile)
    trt_algorithm: str  # the TensorRT calibrator the cache is for: MinMaxCalibration | EntropyCalibration2
    trt_version: Optional[str]  # the TensorRT version in the cache header (None: a schema v1 bundle)
    model_role: str  # the graph whose tensor names the cache holds
    n_images: int


class Bundle:
    """A verified deploy bundle directory. Build one with :meth:`open`."""

    def __init__(self, root: Path, manifest: BundleManifest, engine_cache_dir: Optional[Path] = None) -> None:
        self.root = root
        self.manifest = manifest
        self._engine_cache_dir = engine_cache_dir

    # ---- opening -------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: PathLike, verify: bool = True, engine_cache_dir: Optional[PathLike] = None) -> Bundle:
        """Open and verify the bundle at ``path`` (its directory or its manifest.json)."""
        root = Path(path).expanduser()
        if root.name == MANIFEST_NAME and root.is_file():
            root = root.parent
        if not root.exists():
            raise ModelError(f"bundle {root} does not exist", "pass the bundle directory that edgekit export wrote")
        if not root.is_dir():
            raise ModelError(f"bundle {root} is not a directory",
                             "pass the bundle directory (untar a .tar bundle first: tar xf BUNDLE.tar)")
        manifest = load_manifest(root)
        cache = Path(engine_cache_dir) if engine_cache_dir else None
        bundle = cls(root.absolute(), manifest, cache)
        if verify:
            bundle.verify()
        return bundle

    def verify(self) -> None:
        """Every check of :meth:`open`; raises :class:`ModelError` naming the first bad file."""
        m = self.manifest
        if not m.models:
            raise ModelError(f"{self.root / MANIFEST_NAME} lists no models", _REEXPORT)
        if m.golden is not None:
            index = f"{m.golden.dir}/{GOLDEN_INDEX}"
            if index not in m.files:
                raise ModelError(f"{MANIFEST_NAME} has a golden set but lists no {index}", _REEXPORT)
        for name in m.files:
            self._inside(name)
        verify_bundle_files(self.root, m)
        for role in m.models:
            self._check_model_io(role)

    def _inside(self, name: str) -> Path:
        path = self.root / name
        real, root = os.path.realpath(path), os.path.realpath(self.root)
        if os.path.commonpath([real, root]) != root:
            raise ModelError(f"bundle file {name} points outside the bundle ({real})", _REEXPORT)
        return path

    def _check_model_io(self, role: str) -> None:
        """The ONNX file's real inputs must be the manifest's, and its image input the letterbox size."""
        from edgekit.core.onnx_io import read_onnx_io

        entry = self.manifest.models[role]
        io = read_onnx_io(self.root / entry.file)
        self._check_class_count(entry.file, io.outputs)
        real = {t.name: t for t in io.inputs}
        declared = {t.name: t for t in entry.inputs}
        if sorted(real) != sorted(declared):
            raise ModelError(f"{entry.file} has inputs {sorted(real)} but {MANIFEST_NAME} says {sorted(declared)}",
                             _REEXPORT)
        h, w = self.manifest.preprocess.imgsz
        own_size = role == ENCODER_ROLE  # reference photos have their own input size, not the frames'
        for name, t in real.items():
            want = declared[name]
            if t.dtype != want.dtype or len(t.shape) != len(want.shape):
                raise ModelError(f"{entry.file} input '{name}' is {t.dtype}{list(t.shape)} but {MANIFEST_NAME} says "
                                 f"{want.dtype}{list(want.shape)}", _REEXPORT)
            if not own_size and _is_image(t.shape) and tuple(t.shape[2:]) != (h, w) and all(isinstance(d, int) for d in t.shape[2:]):
                raise ModelError(f"{entry.file} input '{name}' is {t.shape[2]}x{t.shape[3]} but the manifest's "
                                 f"letterbox imgsz is {h}x{w}", _REEXPORT + " at one --imgsz")

    def _check_class_count(self, file: str, outputs: Sequence[Any]) -> None:
        """An OBB graph's raw output (B, 4 + nc + 1, A) must carry one score row per listed class: a hand-edited
        ``classes`` would otherwise name boxes wrongly (or not at all) without a word."""
        if self.manifest.task != "obb" or len(outputs) != 1 or len(outputs[0].shape) != 3:
            return
        channels = outputs[0].shape[1]
        nc = len(self.manifest.classes)
        if isinstance(channels, int) and channels != nc + 5:
            raise ModelError(f"{file} scores {channels - 5} classes but {MANIFEST_NAME} lists {nc} "
                             f"({', '.join(self.manifest.classes) or 'none'})", _REEXPORT)

    # ---- what it holds -------------------------------------------------------------------------
    @property
    def task(self) -> str:
        return self.manifest.task

    @property
    def classes(self) -> List[str]:
        return list(self.manifest.classes)

    @property
    def roles(self) -> List[str]:
        return list(self.manifest.models)

    def has(self, role: str) -> bool:
        return role in self.manifest.models

    def model(self, role: str) -> ModelEntry:
        if role not in self.manifest.models:
            raise ModelError(f"bundle {self.root} has no '{role}' model (it has {', '.join(self.roles)})",
                             "re-export with the option that adds it (e.g. --int8 for int8_qdq)")
        return self.manifest.models[role]

    def model_path(self, role: str) -> Path:
        return self.root / self.model(role).file

    @property
    def calibration(self) -> Optional[CalibrationInfo]:
        c = self.manifest.calibration
        if c is None:
            return None
        algorithm = c.trt_algorithm or TRT_ALGORITHM_OF_METHOD.get(c.method, "MinMaxCalibration")
        return CalibrationInfo(self.root / c.cache, self.root / c.sidecar, c.method, algorithm, c.trt_version,
                               c.model, c.n_images)

    def engine_profile(self, role: str = "fp32", batch: Optional[int] = None) -> Dict[str, Tuple[Shape, Shape, Shape]]:
        """input -> (min, opt, max) shapes for the engine build of ``role``.

        From the manifest's profile where it has one; else static inputs give their own shape, and a
        dynamic image input gets batch ``batch or 1`` and the letterbox H/W.
        """
        entry = self.model(role)
        out: Dict[str, Tuple[Shape, Shape, Shape]] = {}
        for spec in entry.inputs:
            if spec.name in entry.profile:
                p = entry.profile[spec.name]
                out[spec.name] = (tuple(p.min), tuple(p.opt), tuple(p.max))
                continue
            shape = self._concrete_shape(spec.name, list(spec.shape), batch)
            out[spec.name] = (shape, shape, shape)
        return out

    def _concrete_shape(self, name: str, dims: List[Any], batch: Optional[int]) -> Shape:
        h, w = self.manifest.preprocess.imgsz
        fill = {0: batch or 1}
        if _is_image(tuple(dims)):
            fill.update({2: h, 3: w})
        shape = []
        for axis, d in enumerate(dims):
            if isinstance(d, int) and d > 0:
                shape.append(batch if (axis == 0 and batch and _is_image(tuple(dims))) else d)
            elif axis in fill:
                shape.append(fill[axis])
            else:
                raise ModelError(f"input '{name}' axis {axis} is dynamic ({d!r}) and {MANIFEST_NAME} gives no profile",
                                 "re-export with a static shape or add models.<role>.profile to the manifest")
        return tuple(shape)

    def golden(self) -> Any:
        """The golden inputs and reference outputs for on-device parity (:func:`edgekit.core.parity.read_golden`)."""
        if self.manifest.golden is None:
            raise ModelError(f"bundle {self.root} has no golden set", _REEXPORT + " (export writes golden/)")
        from edgekit.core.parity import read_golden

        return read_golden(self.root / self.manifest.golden.dir)

    @property
    def engine_cache_dir(self) -> Path:
        """Where engines built from this bundle live: ``<bundle>/engines`` unless set (or $EDGEKIT_ENGINE_CACHE)."""
        if self._engine_cache_dir is not None:
            return self._engine_cache_dir
        env = os.environ.get(ENGINE_CACHE_ENV)
        if env:
            return Path(env).expanduser() / self.root.name
        return self.root / "engines"

    # ---- running it ----------------------------------------------------------------------------
    def runner(self, backend: str = "onnxruntime", precision: str = "fp32", role: Optional[str] = None,
               **options: Any) -> Any:
        """A runner (not activated) for this bundle's model on ``backend`` at ``precision``.

        ``role``: another graph than the frame detector's (RefDet's ``reference_encoder``), run from its
        own FP32 file (TensorRT: an engine of ``precision`` built from it).
        """
        from .runners import create_runner

        if role is not None and role not in ("fp32", "int8_qdq"):
            if precision == "int8":
                raise ConfigError(f"the '{role}' graph does not run INT8", "run it at fp32 or fp16")
            if backend == "tensorrt":
                return self._tensorrt_runner(precision, role=role, **options)
            return create_runner(backend, self.model_path(role), **options)
        if backend == "tensorrt":
            return self._tensorrt_runner(precision, **options)
        if backend == "torch":
            raise ConfigError("the torch backend runs checkpoints, not bundles",
                              "use backend 'onnxruntime' or 'tensorrt' for a bundle")
        role = _ONNX_ROLE.get((backend, precision))
        if role is None:
            raise ConfigError(f"backend '{backend}' cannot run precision '{precision}' from a bundle",
                              "use onnxruntime with fp32 or int8, or tensorrt with fp32/fp16/int8")
        model: Any = self.model_path(role)
        if options.pop("uint8_input", False):
            from .uint8_input import uint8_input_variant

            model = uint8_input_variant(model, self.manifest.preprocess)
            options.setdefault("name", f"{self.model(role).file} (uint8 input)")
        return create_runner(backend, model, **options)

    def _tensorrt_runner(self, precision: str, role: Optional[str] = None, **options: Any) -> Any:
        from edgekit.deploy.tensorrt import EngineBuildOptions, TensorRTRunner, build_from_bundle

        trt_module = options.pop("trt_module", None)
        uint8 = bool(options.pop("uint8_input", False))
        build = EngineBuildOptions(precision=precision, **options)
        result = build_from_bundle(self, build, trt_module=trt_module, uint8_input=uint8, role=role)
        return TensorRTRunner(result.plan_path, trt_module=trt_module)

    def detector(self, backend: str = "onnxruntime", precision: str = "fp32", *, tile: Optional[int] = None,
                 tile_overlap: Optional[int] = None, full_frame: Optional[bool] = None, **options: Any) -> Any:
        """A :class:`Detector` over this bundle: its letterbox, thresholds and I/O names.

        Sliced inference (:class:`~edgekit.deploy.tiling.TiledDetector`) when ``tile`` is given, or
        by default when the manifest declares a tiling plan; ``tile=0`` runs whole frames regardless.
        """
        if self.task == "refdet":
            if tile:
                raise ConfigError("sliced inference (--tile) is not available for RefDet bundles",
                                  "run whole frames (leave --tile out)")
            return self._refdet_detector(backend, precision, **options)
        det = self._frame_detector(backend, precision, **options)
        plan = self.manifest.tiling
        if tile == 0 or (tile is None and plan is None):
            return det
        from .tiling import TiledDetector

        size = tile if tile is not None else plan.tile  # type: ignore[union-attr]
        overlap = tile_overlap if tile_overlap is not None else (plan.overlap if plan is not None else size // 5)
        full = full_frame if full_frame is not None else bool(plan is not None and plan.full_frame)
        return TiledDetector(det, size, overlap, full_frame=full, batch=plan.batch if plan is not None else None)

    def _frame_detector(self, backend: str, precision: str, **options: Any) -> Detector:
        if self.task not in ("obb", "detect"):
            raise ConfigError(f"bundle task '{self.task}' has no frame detector yet", "use an obb or detect bundle")
        role = _ONNX_ROLE.get((backend, precision), "fp32")
        entry = self.model(role if self.has(role) else "fp32")
        input_name = entry.inputs[0].name
        if options.get("uint8_input"):
            from .uint8_input import UINT8_SUFFIX

            input_name += UINT8_SUFFIX
        return Detector(self.runner(backend, precision, **options), letterbox=self.manifest.preprocess,
                        postprocess=self.manifest.postprocess, input_name=input_name,
                        output_name=entry.outputs[0].name)

    def _refdet_detector(self, backend: str, precision: str, **options: Any) -> Any:
        """Both graphs of a RefDet bundle: the per-frame one at ``precision``, the encoder at
        :func:`encoder_precision`; the bundle's reference photos are the default target."""
        from edgekit.core.letterbox import LetterboxSpec

        from .refdet import RefDetDetector, read_reference_images

        if options.get("uint8_input"):
            raise ConfigError("--uint8-input is not available for RefDet bundles", "drop --uint8-input")
        frame = self.model(_ONNX_ROLE.get((backend, precision), "fp32") if backend != "tensorrt" else "fp32")
        encoder = self.model(ENCODER_ROLE)
        images = [t.name for t in frame.inputs if len(t.shape) == 4]
        others = [t.name for t in frame.inputs if len(t.shape) != 4]
        if len(images) != 1 or len(others) != 1 or len(encoder.inputs) != 1:
            raise ModelError(f"{frame.file} must take one image and one embedding input and {encoder.file} one "
                             f"image, got {[t.name for t in frame.inputs]} and {[t.name for t in encoder.inputs]}",
                             _REEXPORT)
        ref_size = encoder.inputs[0].shape[2:]
        if not all(isinstance(d, int) for d in ref_size):
            raise ModelError(f"{encoder.file} input has no static size ({ref_size})", _REEXPORT)
        ref_spec = LetterboxSpec(**dict(self.manifest.preprocess.model_dump(), imgsz=tuple(ref_size)))
        refs = [self.root / name for name in self.manifest.references]
        enc_options = {k: v for k, v in options.items() if k in ("providers", "intra_op_threads", "trt_module")}
        return RefDetDetector(
            self.runner(backend, precision, **options),
            self.runner(backend, encoder_precision(backend, encoder), role=ENCODER_ROLE, **enc_options),
            letterbox=self.manifest.preprocess, postprocess=self.manifest.postprocess, reference_letterbox=ref_spec,
            input_name=images[0], embedding_name=others[0], output_name=frame.outputs[0].name,
            encoder_input=encoder.inputs[0].name, encoder_output=encoder.outputs[0].name,
            default_references=(lambda: read_reference_images(refs)) if refs else None)

    def check_parity(self, backend: str = "onnxruntime", precision: str = "fp32", **options: Any) -> Dict[str, Any]:
        """Run the golden inputs on this machine's ``backend`` and compare with the host's reference outputs.

        Raw outputs and decoded detections are judged under the precision's device tolerance
        (:data:`edgekit.core.parity.DEVICE_TOLERANCES`; INT8 on detections only). Returns the
        report; ``report["passed"]`` is the verdict.
        """
        if self.task == "refdet":
            enc_precision = encoder_precision(backend, self.model(ENCODER_ROLE))
            enc_options = {k: v for k, v in options.items() if k in ("providers", "intra_op_threads", "trt_module")}
            with self.runner(backend, precision, **options) as frames, \
                    self.runner(backend, enc_precision, role=ENCODER_ROLE, **enc_options) as encoder:
                report = self.check_golden_graphs({"fp32": (frames, precision), ENCODER_ROLE: (encoder, enc_precision)})
        else:
            with self.runner(backend, precision, **options) as runner:
                report = self.check_golden(runner, precision)
        report["backend"] = backend
        return report

    def check_golden(self, runner: Any, precision: str, role: Optional[str] = None) -> Dict[str, Any]:
        """The golden check on an already active ``runner`` (bench reuses the runner it measures).

        ``role``: which graph's golden cases (default: the graph whose golden inputs are the runner's
        inputs, else the first with outputs). Detections are compared for the frame graph only.
        """
        from edgekit.core.parity import check_golden
        from edgekit.core.postprocess import decode, decode_refdet

        golden = self.golden()
        if role is None:
            role = _golden_role(golden, runner) or next(
                (r for r in golden.roles if self.has(r) and self.model(r).outputs), golden.roles[0])
        output = self.model(role).outputs[0].name
        decode_fn = decode_refdet if self.task == "refdet" else decode

        def decoder(outputs: Dict[str, Any], spec: Any) -> Any:
            return decode_fn(outputs[output], spec)

        detects = self.task in ("obb", "detect") or (self.task == "refdet" and role != ENCODER_ROLE)
        return check_golden(runner, golden, precision, decoder=decoder if detects else None,
                            role=role, post=self.manifest.postprocess)

    def check_golden_graphs(self, runners: Dict[str, Tuple[Any, str]]) -> Dict[str, Any]:
        """The golden check of several graphs (``{role: (active runner, precision)}``): the frame graph's
        report at the top level, every graph's under ``graphs``; ``passed`` only if all pass."""
        reports = {role: self.check_golden(runner, precision, role=role) for role, (runner, precision) in runners.items()}
        primary = next((r for role, r in reports.items() if role != ENCODER_ROLE), next(iter(reports.values())))
        out = dict(primary)
        out["graphs"] = {role: {k: v for k, v in r.items() if k != "images"} for role, r in reports.items()}
        out["passed"] = all(r["passed"] for r in reports.values())
        return out

    def __repr__(self) -> str:
        return f"Bundle({str(self.root)!r}, task={self.task!r}, roles={self.roles})"


def _is_image(shape: Tuple[Any, ...]) -> bool:
    return len(shape) == 4 and shape[1] in (1, 3)


def _golden_role(golden: Any, runner: Any) -> Optional[str]:
    """The golden role whose feeds have exactly ``runner``'s input names (None if not one)."""
    try:
        names = set(runner.input_metadata())
    except Exception:  # noqa: BLE001 - an inactive or foreign runner: fall back to the default role
        return None
    found = [r for r in golden.roles if set(golden.cases_for(r)[0].inputs) == names]
    return found[0] if len(found) == 1 else None


__all__ = ["Bundle", "CalibrationInfo", "ENGINE_CACHE_ENV", "ENCODER_ROLE", "encoder_precision"]
