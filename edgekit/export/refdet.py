"""Export of a RefDet checkpoint: two graphs, frames paired with their video's target (host only).

:class:`RefDetAdapter` (task ``refdet``) exports, in this order:

- ``reference_encoder.onnx`` (role ``reference_encoder``): ``refs`` (1, 3, R, R) -> ``embedding``
  (1, D), one reference photo letterboxed to R, L2-normalised. Stays FP32 in the bundle and is
  never quantized; the device's TensorRT build makes it FP16 (``edgekit.deploy.bundle.encoder_precision``).
- ``model.onnx`` (role ``fp32``): ``images`` (1, 3, H, W) + ``embedding`` (1, D) -> ``output0``
  (1, 5, A) = cx, cy, w, h, score. The per-frame graph; INT8 Q/DQ is about this one only.

Every image export uses is a real video frame of a RefDet dataset (``--data``), fed with the
embedding of *its own video's* reference photos, computed the way the device does it (the encoder
graph once per photo, L2-normalised embeddings averaged and normalised again,
:func:`edgekit.deploy.refdet.combine_embeddings`). Parity and golden frames and the accuracy frames
come from the evaluation split (``test``/``val``), calibration frames from ``train``. Frames are
named ``<split>-<video>-f<frame>``; they are decoded on demand, never written to disk. The export's
default target, copied into the bundle as ``references/``, is the first evaluation video's photos.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from edgekit.core.detections import Detections
from edgekit.core.errors import ConfigError, DataError, ModelError
from edgekit.core.letterbox import LetterboxInfo, LetterboxSpec, preprocess
from edgekit.core.postprocess import PostprocessSpec, decode_refdet
from edgekit.deploy.refdet import combine_embeddings
from edgekit.deploy.runners.base import Runner, TensorMeta

from .adapters import ExportAdapter, GraphSpec, LoadedCheckpoint

EVAL_SPLITS, CALIB_SPLITS = ("test", "val", "valid"), ("train",)
DEFAULT_VAL_FRAMES = 64  # accuracy frames when --val-size is not given (every frame would take minutes on CPU)
REFERENCES_DIR = "references"
_DATA_FIX = "pass --data DIR: a RefDet root (annotations/ + samples/) or a folder of them (train/, test/)"


# ---- the checkpoint ------------------------------------------------------------------------------
def is_refdet_checkpoint(path: Path) -> bool:
    """Whether ``path`` is a RefDet checkpoint, read from its pickle bytes without unpickling anything.

    ``torch.save`` writes a zip whose ``*/data.pkl`` holds the dict's keys and string values as
    plain UTF-8; a RefDet checkpoint has the key ``edgekit_task`` with the value ``refdet``.
    """
    try:
        with zipfile.ZipFile(str(path)) as z:
            name = next((n for n in z.namelist() if n.endswith("data.pkl")), None)
            data = z.read(name) if name else b""
    except (OSError, zipfile.BadZipFile):
        return False
    return b"edgekit_task" in data and b"refdet" in data


def load_refdet(path: Path, trust: bool = False) -> LoadedCheckpoint:
    """A RefDet checkpoint through ``edgekit.train.fewshot.checkpoint`` (restricted loading)."""
    try:
        from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint
    except ImportError as e:
        raise ModelError(f"{path} is a RefDet checkpoint and this edgekit cannot load RefDet models ({e})",
                         "install edgekit with the train extra (pip install 'edgekit[train,export]')") from None
    model, meta = load_refdet_checkpoint(path, trust=trust)
    meta = dict(meta or {})
    return LoadedCheckpoint(Path(path), model.float().eval(), "refdet", {0: "target"}, int(meta.get("imgsz", 640)),
                            meta)


def graph_wrappers() -> Tuple[Any, Any]:
    """The model's export wrappers (``ReferenceEncoderGraph``, ``DetectorGraph``) of the RefDet contract."""
    from edgekit.train.fewshot.model import DetectorGraph, ReferenceEncoderGraph

    return ReferenceEncoderGraph, DetectorGraph


def ref_size_of(ckpt: LoadedCheckpoint) -> int:
    config = ckpt.train_args.get("model_config") or {}
    return int(config.get("ref_size", 224)) if isinstance(config, dict) else 224


class TorchGraphRunner(Runner):
    """A torch module with named inputs, the parity reference of a RefDet graph (runner contract)."""

    backend = "torch"

    def __init__(self, module: Any, inputs: Dict[str, Tuple[int, ...]], outputs: Sequence[str], name: str) -> None:
        super().__init__(name)
        self.module, self.inputs, self.outputs = module, inputs, list(outputs)

    def _activate(self) -> Dict[str, TensorMeta]:
        return {n: TensorMeta(n, shape, np.dtype(np.float32)) for n, shape in self.inputs.items()}

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        import torch

        with torch.inference_mode():
            out = self.module(*(torch.from_numpy(np.ascontiguousarray(feed[n])) for n in self.inputs))
        out = out if isinstance(out, (list, tuple)) else [out]
        return {name: o.detach().float().cpu().numpy() for name, o in zip(self.outputs, out)}

    def _deactivate(self) -> None:
        pass


# ---- the frames ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class FrameSample:
    """One video frame export uses, and where it comes from."""

    split: str
    root: Path
    video_id: str
    frame: int

    @property
    def name(self) -> str:
        return f"{self.split}-{self.video_id}-f{self.frame:06d}"


def data_splits(data: Path, origin: str = "--data") -> Tuple[Path, Path]:
    """(evaluation root, calibration root) of a RefDet dataset; one root serves both. ``origin`` says
    where the path came from in errors (``--data``, or the run's config)."""
    from edgekit.data.formats.refdet import find_refdet_roots

    data = Path(data)
    if not data.exists():
        raise DataError(f"{origin} {data} does not exist", _DATA_FIX)
    if (data / "data.yaml").is_file() or data.suffix in (".yaml", ".yml"):
        raise DataError(f"{origin} {data} is a YOLO dataset, not RefDet videos", _DATA_FIX)
    roots = find_refdet_roots(data)  # a one-line DataError when there is none
    by_name = {r.name: r for r in roots}
    evaluation = next((by_name[s] for s in EVAL_SPLITS if s in by_name), roots[-1] if len(roots) > 1 else roots[0])
    calib = next((by_name[s] for s in CALIB_SPLITS if s in by_name), roots[0])
    return evaluation, calib


def spread(items: Sequence[Any], n: int) -> List[Any]:
    """``n`` items evenly spaced over ``items`` (all when fewer)."""
    if n >= len(items):
        return list(items)
    idx = np.linspace(0, len(items) - 1, n).round().astype(int)
    return [items[i] for i in dict.fromkeys(idx.tolist())]


class RefDetFrames:
    """The frames of one RefDet root export may use, decoded on demand through the fewshot dataset."""

    def __init__(self, root: Path, split: str) -> None:
        from edgekit.train.fewshot.data import RefDetDataset

        self.root, self.split = Path(root), split
        self.dataset = RefDetDataset(self.root, cache_size=32)
        if not len(self.dataset):
            raise DataError(f"RefDet root {root} annotates no video", _DATA_FIX)

    def pick(self, n: int, seed: int = 0, annotated_share: float = 0.5) -> List[FrameSample]:
        """``n`` frames over every video, ``annotated_share`` of them showing the target, seeded."""
        rng = random.Random(seed)
        per_video = max(1, -(-n // len(self.dataset)))
        out: List[FrameSample] = []
        for rec in self.dataset.records:
            pos = max(1, round(per_video * annotated_share)) if rec.annotated_frames else 0
            frames = spread(rec.annotated_frames, pos) + spread(rec.background_frames, per_video - pos)
            out += [FrameSample(self.split, self.root, rec.video_id, f) for f in sorted(set(frames))]
        rng.shuffle(out)
        return sorted(out[:n], key=lambda s: (s.video_id, s.frame))

    def frame(self, s: FrameSample) -> np.ndarray:
        return self.dataset.frame(s.video_id, s.frame)

    def boxes(self, s: FrameSample) -> np.ndarray:
        return self.dataset.record(s.video_id).boxes_at(s.frame)

    def reference_paths(self, video_id: str) -> List[Path]:
        return list(self.dataset.record(video_id).references)


class RefDetCalibration:
    """The calibration set export's INT8 step reads: frames of the calibration split (size, hash, images)."""

    def __init__(self, frames: RefDetFrames, samples: List[FrameSample], spec: LetterboxSpec) -> None:
        if not samples:
            raise DataError(f"no calibration frames in {frames.root}", _DATA_FIX)
        self.frames, self.samples, self.spec = frames, samples, spec
        self.source = str(frames.root)

    def __len__(self) -> int:
        return len(self.samples)

    def batches(self, batch_size: int = 1) -> Iterator[np.ndarray]:
        for start in range(0, len(self.samples), batch_size):
            chunk = self.samples[start:start + batch_size]
            yield np.concatenate([preprocess(self.frames.frame(s), self.spec)[0] for s in chunk], 0)

    def data_hash(self) -> str:
        """sha256 over the preprocessing, each video file's bytes and the frame indices used."""
        h = hashlib.sha256(json.dumps(self.spec.model_dump(mode="json"), sort_keys=True).encode())
        for video_id in sorted({s.video_id for s in self.samples}):
            h.update(hashlib.sha256(self.frames.dataset.record(video_id).video.read_bytes()).digest())
        h.update(json.dumps([[s.video_id, s.frame] for s in self.samples]).encode())
        return h.hexdigest()


# ---- the adapter ---------------------------------------------------------------------------------
class RefDetAdapter(ExportAdapter):
    """RefDet's two graphs; see the module docstring."""

    task = "refdet"
    default_iou = 0.5  # the torch predictor's NMS IoU (edgekit.train.fewshot.predict), unless --iou/iou= says
    ENCODER = GraphSpec("reference_encoder", "reference_encoder.onnx", ("refs",), ("embedding",), detections=False,
                        engine_precision="fp16")
    FRAMES = GraphSpec("fp32", "model.onnx", ("images", "embedding"), ("output0",))

    def __init__(self) -> None:
        self.ckpt: Optional[LoadedCheckpoint] = None
        self.samples: Dict[str, Tuple[RefDetFrames, FrameSample]] = {}
        self.eval_frames: Optional[RefDetFrames] = None
        self.calib_frames: Optional[RefDetFrames] = None
        self._modules: Dict[str, Any] = {}
        self._targets: Dict[Tuple[str, str], np.ndarray] = {}

    def graphs(self) -> List[GraphSpec]:
        return [self.ENCODER, self.FRAMES]

    # -- graphs ----------------------------------------------------------------------------------
    def module(self, ckpt: LoadedCheckpoint, graph: GraphSpec) -> Any:
        if graph.role not in self._modules:
            encoder_cls, detector_cls = graph_wrappers()
            cls = encoder_cls if graph.role == self.ENCODER.role else detector_cls
            self._modules[graph.role] = cls(ckpt.model).eval()
        self.ckpt = ckpt
        return self._modules[graph.role]

    def input_shapes(self, ckpt: LoadedCheckpoint, graph: GraphSpec, imgsz: int) -> Dict[str, Tuple[int, ...]]:
        r = ref_size_of(ckpt)
        if graph.role == self.ENCODER.role:
            return {"refs": (1, 3, r, r)}
        import torch

        with torch.inference_mode():
            dim = int(self.module(ckpt, self.ENCODER)(torch.zeros(1, 3, r, r)).shape[-1])
        return {"images": (1, 3, imgsz, imgsz), "embedding": (1, dim)}

    def export_graph(self, ckpt: LoadedCheckpoint, graph: GraphSpec, out_path: Path, imgsz: int, opset: int,
                     dynamic: bool) -> None:
        import torch

        self._imgsz = imgsz
        args = tuple(torch.zeros(s) for s in self.input_shapes(ckpt, graph, imgsz).values())
        torch.onnx.export(self.module(ckpt, graph), args, str(out_path), input_names=list(graph.input_names),
                          output_names=list(graph.output_names), opset_version=opset, dynamo=False)

    def reference_runner(self, ckpt: LoadedCheckpoint, graph: GraphSpec) -> Runner:
        shapes = self.input_shapes(ckpt, graph, getattr(self, "_imgsz", ckpt.imgsz))
        return TorchGraphRunner(self.module(ckpt, graph), shapes, graph.output_names,
                                name=f"torch:{ckpt.path.name}:{graph.role}")

    def letterbox_spec(self, imgsz: int) -> LetterboxSpec:
        return LetterboxSpec(imgsz=imgsz)  # the OBB detector's: letterbox 114, RGB, /255 (the contract)

    def reference_spec(self) -> LetterboxSpec:
        assert self.ckpt is not None
        return LetterboxSpec(imgsz=ref_size_of(self.ckpt))

    # -- images ----------------------------------------------------------------------------------
    def choose_images(self, options: Any, source: Any, ckpt: LoadedCheckpoint, imgsz: int) -> Any:
        """Parity/golden and accuracy frames from the evaluation split, the calibration split's frames
        for INT8 (see :meth:`calibration_set`)."""
        from .context import ExportImages

        self.ckpt = ckpt
        for flag, on in (("--dynamic", options.dynamic), ("--tile", options.tile_plan is not None)):
            if on:
                raise ConfigError(f"{flag} is not available for RefDet exports (both graphs take one image at a time)",
                                  f"leave {flag} out")
        data, origin = (options.data, "--data") if options.data is not None else run_data_dir(source)
        if data is None:
            hint = " (--calib-data is an image folder; a RefDet export needs videos with reference photos)" \
                if options.calib_data is not None else ""
            raise DataError(f"a RefDet export needs its dataset and {source.checkpoint} names none{hint}", _DATA_FIX)
        eval_root, calib_root = data_splits(Path(data), origin)
        self.eval_frames = RefDetFrames(eval_root, eval_root.name)
        self.calib_frames = self.eval_frames if calib_root == eval_root else RefDetFrames(calib_root, calib_root.name)
        parity = self._register(self.eval_frames, self.eval_frames.pick(options.parity_images, options.seed, 0.75))
        val = self._register(self.eval_frames, self.eval_frames.pick(options.val_size or DEFAULT_VAL_FRAMES,
                                                                     options.seed + 1))
        return ExportImages(parity=parity, calib_dir=calib_root, val=val, val_labels=list(val), nc=1)

    def _register(self, frames: RefDetFrames, samples: List[FrameSample]) -> List[Path]:
        for s in samples:
            self.samples[s.name] = (frames, s)
        return [Path(s.name) for s in samples]

    def calibration_set(self, ctx: Any) -> RefDetCalibration:
        assert self.calib_frames is not None
        o = ctx.options
        samples = self.calib_frames.pick(o.calib_size, o.seed + 2)
        ctx.log(f"calibration: {len(samples)} frames of {self.calib_frames.root}, each with its video's target")
        return RefDetCalibration(self.calib_frames, samples, self.letterbox_spec(ctx.imgsz))

    def _sample(self, key: Path) -> Tuple[RefDetFrames, FrameSample]:
        try:
            return self.samples[Path(key).name]
        except KeyError:
            raise ModelError(f"{key} is not a frame this RefDet export chose", "this is a bug in RefDetAdapter") from None

    def target(self, frames: RefDetFrames, video_id: str) -> np.ndarray:
        """The (1, D) embedding of a video's reference photos, as the device computes it."""
        key = (str(frames.root), video_id)
        if key not in self._targets:
            from edgekit.deploy.refdet import read_reference_images

            assert self.ckpt is not None
            with self.reference_runner(self.ckpt, self.ENCODER) as encoder:
                embs = [encoder.infer({"refs": preprocess(img, self.reference_spec())[0]})["embedding"]
                        for img in read_reference_images(frames.reference_paths(video_id))]
            self._targets[key] = combine_embeddings(embs)
        return self._targets[key]

    def feed(self, image_path: Path, graph: GraphSpec, spec: LetterboxSpec) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        frames, s = self._sample(image_path)
        if graph.role == self.ENCODER.role:  # the i-th parity frame's video's photo number i (mod its count)
            from edgekit.deploy.refdet import read_reference_images

            refs = frames.reference_paths(s.video_id)
            img = read_reference_images([refs[s.frame % len(refs)]])[0]
            x, info = preprocess(img, self.reference_spec())
            return {"refs": x}, info
        x, info = preprocess(frames.frame(s), spec)
        return {"images": x, "embedding": self.target(frames, s.video_id)}, info

    def calibration_feeds(self, graph: GraphSpec, calib: Any) -> Any:
        if graph.role == self.ENCODER.role:
            raise ConfigError("the reference encoder is never quantized", "this is a bug in the export pipeline")
        return lambda: ({"images": preprocess(calib.frames.frame(s), calib.spec)[0],
                         "embedding": self.target(calib.frames, s.video_id)} for s in calib.samples)

    def int8_excluded_nodes(self, graph: GraphSpec, onnx_path: Path, float_scope: str) -> List[str]:
        return target_dependent_nodes(onnx_path, "embedding", keep_convs=float_scope == "decode")

    def decode(self, outputs: Dict[str, np.ndarray], post: PostprocessSpec) -> List[Detections]:
        return decode_refdet(outputs[self.FRAMES.output_names[0]], post)

    def to_image_space(self, dets: Detections, info: LetterboxInfo) -> Detections:
        from edgekit.deploy.refdet import to_frame

        return to_frame(dets, info)

    def ground_truth(self, image_path: Path, label_path: Path, info: LetterboxInfo) -> Detections:
        frames, s = self._sample(image_path)
        b = frames.boxes(s).astype(np.float32)
        xywhr = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1],
                          np.zeros(len(b), np.float32)], 1) if len(b) else np.zeros((0, 5), np.float32)
        return Detections(xywhr, np.ones(len(b), np.float32), np.zeros(len(b), np.int64))

    def golden_tolerances(self) -> Dict[str, Any]:
        """The encoder's output is a unit vector (entries ~D^-1/2), not pixels: the detectors' device
        tolerances (FP16 atol 0.5) would pass anything. Engineering defaults, not measured on a device."""
        from edgekit.core.parity import Tolerance

        return {"reference_encoder:fp32": Tolerance(atol=1e-3, rtol=1e-3),
                "reference_encoder:fp16": Tolerance(atol=1e-2, rtol=5e-2)}

    # -- the bundle's default target ---------------------------------------------------------------
    def manifest_extras(self, ctx: Any, bundle: Path) -> Dict[str, Any]:
        """Copy the first evaluation video's reference photos to ``references/``: the default target."""
        assert self.eval_frames is not None
        first = self._sample(ctx.images.parity[0])[1].video_id
        (bundle / REFERENCES_DIR).mkdir(exist_ok=True)
        names = []
        for path in self.eval_frames.reference_paths(first):
            dst = bundle / REFERENCES_DIR / path.name
            shutil.copyfile(str(path), str(dst))
            names.append(f"{REFERENCES_DIR}/{path.name}")
        ctx.log(f"default target: the {len(names)} reference photo(s) of video {first} -> {REFERENCES_DIR}/")
        return {"references": names}


def target_dependent_nodes(onnx_path: Path, input_name: str, keep_convs: bool = False) -> List[str]:
    """Nodes that depend on ``input_name`` (the target embedding): fusion, head and decode stay float in
    the Q/DQ model, the image-only backbone is quantized. ``keep_convs`` (float scope ``decode``): Conv
    nodes among them are quantized too, except one fed by a Softmax (the DFL's fixed bin weights)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    tainted, names = {input_name}, []
    softmax_out = {o for n in graph.node if n.op_type == "Softmax" for o in n.output}
    for node in graph.node:  # ONNX nodes are topologically sorted
        if any(i in tainted for i in node.input):
            tainted.update(node.output)
            if keep_convs and node.op_type == "Conv" and node.input[0] not in softmax_out:
                continue
            names.append(node.name)
    if not names:
        raise ModelError(f"{onnx_path.name} has no node that reads '{input_name}'",
                         "export the per-frame graph of a RefDet model (images + embedding inputs)")
    return names


def run_data_dir(source: Any) -> Tuple[Optional[Path], str]:
    """(the dataset a RefDet run trained on, where that was read) from ``data`` in its resolved config.

    A relative path is the one training was given: tried against the working directory, then the run's
    parent directories; the first that exists wins (else the working-directory one, for the error).
    """
    from edgekit.core.config import read_mapping

    if source.run_dir is None:
        return None, "--data"
    for cfg in (source.run_dir / "reports" / "config_resolved.yaml", source.run_dir / "config_resolved.yaml"):
        if not cfg.is_file():
            continue
        try:
            data = read_mapping(cfg).get("data")
        except ConfigError:
            return None, "--data"
        if isinstance(data, dict):
            data = data.get("root") or data.get("path") or data.get("data")
        if not isinstance(data, str) or not data:
            continue
        p = Path(data).expanduser()
        origin = f"the dataset (data: in {cfg})"
        if p.is_absolute():
            return p, origin
        bases = [Path.cwd(), source.run_dir.parent, source.run_dir.parent.parent, cfg.parent]
        return next((b / p for b in bases if (b / p).exists()), p), origin
    return None, "--data"


__all__ = ["RefDetAdapter", "RefDetCalibration", "RefDetFrames", "FrameSample", "TorchGraphRunner",
           "is_refdet_checkpoint", "load_refdet", "graph_wrappers", "target_dependent_nodes", "data_splits"]
