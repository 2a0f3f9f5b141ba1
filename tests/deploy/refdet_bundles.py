"""A small but complete RefDet bundle built without torch (the device tests run on Python 3.8).

Two real ONNX graphs made with onnx.helper, with the I/O of the RefDet contract:

- ``reference_encoder.onnx``: ``refs`` (1, 3, R, R) -> ``embedding`` (1, D): the mean colour of the
  photo through a fixed linear map, L2-normalised;
- ``model.onnx``: ``images`` (1, 3, H, W) + ``embedding`` (1, D) -> ``output0`` (1, 5, A): one fixed
  box per 16-px cell, scored sigmoid(ALPHA * <embedding, the cell's colour through the same map> + BETA),
  so the cell whose colour matches the target's scores high and what the target is decides the boxes.

The golden set is written from ONNX Runtime outputs, and the manifest the way export writes it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Tuple

import numpy as np

DIM, CELL, ALPHA, BETA = 8, 16, 12.0, -7.0
RED, BLUE, GREY = (0, 0, 230), (230, 0, 0), (128, 128, 128)  # BGR


def _projection() -> np.ndarray:
    rng = np.random.default_rng(7)
    return rng.normal(0, 1, (3, DIM)).astype(np.float32)


def encoder_graph(path: Path, ref_size: int = 32) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    centre = np.full((1, 3), 0.5, np.float32)  # colours relative to mid-grey: the map's sign matters
    nodes = [helper.make_node("ReduceMean", ["refs"], ["m"], axes=[2, 3], keepdims=0),
             helper.make_node("Sub", ["m", "centre"], ["c"]),
             helper.make_node("MatMul", ["c", "proj"], ["e"]),
             helper.make_node("ReduceL2", ["e"], ["n"], axes=[1], keepdims=1),
             helper.make_node("Add", ["n", "eps"], ["ne"]),
             helper.make_node("Div", ["e", "ne"], ["embedding"])]
    inits = [numpy_helper.from_array(_projection(), "proj"), numpy_helper.from_array(centre, "centre"),
             numpy_helper.from_array(np.array(1e-6, np.float32), "eps")]
    graph = helper.make_graph(nodes, "toy_reference_encoder",
                              [helper.make_tensor_value_info("refs", TensorProto.FLOAT, [1, 3, ref_size, ref_size])],
                              [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, DIM])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def anchor_boxes(imgsz: int) -> np.ndarray:
    """(1, 4, A) cx, cy, w, h of the one box per cell, in network pixels."""
    g = (np.arange(imgsz // CELL, dtype=np.float32) + 0.5) * CELL
    yy, xx = np.meshgrid(g, g, indexing="ij")
    n = xx.size
    return np.stack([xx.ravel(), yy.ravel(), np.full(n, CELL - 2.0), np.full(n, CELL - 4.0)])[None].astype(np.float32)


def frame_graph(path: Path, imgsz: int = 64) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    cells = (imgsz // CELL) ** 2
    kernel = np.repeat(_projection().T[:, :, None, None], CELL, 2).repeat(CELL, 3) / (CELL * CELL)  # (D, 3, 16, 16)
    bias = -(0.5 * _projection().sum(0)).astype(np.float32)  # the encoder's centring, folded in
    nodes = [helper.make_node("Conv", ["images", "k", "kb"], ["f"], strides=[CELL, CELL]),
             helper.make_node("Reshape", ["f", "shape"], ["f2"]),  # (1, D, A)
             helper.make_node("Unsqueeze", ["embedding", "ax1"], ["e3"]),  # (1, 1, D)
             helper.make_node("MatMul", ["e3", "f2"], ["dot"]),  # (1, 1, A)
             helper.make_node("Mul", ["dot", "alpha"], ["s0"]),
             helper.make_node("Add", ["s0", "beta"], ["s1"]),
             helper.make_node("Sigmoid", ["s1"], ["score"]),
             helper.make_node("Concat", ["boxes", "score"], ["output0"], axis=1)]
    inits = [numpy_helper.from_array(kernel.astype(np.float32), "k"), numpy_helper.from_array(bias, "kb"),
             numpy_helper.from_array(np.array([1, DIM, cells], np.int64), "shape"),
             numpy_helper.from_array(np.array([1], np.int64), "ax1"),
             numpy_helper.from_array(np.array(ALPHA, np.float32), "alpha"),
             numpy_helper.from_array(np.array(BETA, np.float32), "beta"),
             numpy_helper.from_array(anchor_boxes(imgsz), "boxes")]
    graph = helper.make_graph(nodes, "toy_refdet_frame",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, imgsz, imgsz]),
                               helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, DIM])],
                              [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [1, 5, cells])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def photo(colour: Tuple[int, int, int], size: Tuple[int, int] = (40, 30)) -> np.ndarray:
    """A reference photo: the target's colour filling most of a grey backdrop (BGR uint8)."""
    img = np.full((size[0], size[1], 3), GREY, np.uint8)
    img[4:-4, 4:-4] = colour
    return img


def frame_with(colour: Tuple[int, int, int], cell: Tuple[int, int] = (1, 2), imgsz: int = 64) -> np.ndarray:
    """A grey frame (imgsz x imgsz) with one cell (row, col) of ``colour``."""
    img = np.full((imgsz, imgsz, 3), GREY, np.uint8)
    r, c = cell
    img[r * CELL:(r + 1) * CELL, c * CELL:(c + 1) * CELL] = colour
    return img


def write_refdet_bundle(root: Path, imgsz: int = 64, ref_size: int = 32, default_colour=RED,
                        golden: bool = True) -> Path:
    """reference_encoder.onnx + model.onnx + references/ + golden/ + manifest.json (every file hashed)."""
    import cv2

    from edgekit.core.letterbox import LetterboxSpec, preprocess
    from edgekit.core.manifest import (
        BundleManifest,
        GoldenEntry,
        ModelEntry,
        TensorSpec,
        describe_files,
        write_manifest,
    )
    from edgekit.core.parity import GoldenCase, write_golden
    from edgekit.core.postprocess import PostprocessSpec
    from edgekit.deploy.refdet import combine_embeddings
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

    root.mkdir(parents=True, exist_ok=True)
    encoder_graph(root / "reference_encoder.onnx", ref_size)
    frame_graph(root / "model.onnx", imgsz)
    (root / "references").mkdir()
    refs = [photo(default_colour), photo(default_colour, (30, 44))]
    names = []
    for i, ref in enumerate(refs, 1):
        cv2.imwrite(str(root / "references" / f"img_{i}.png"), ref)
        names.append(f"references/img_{i}.png")
    spec = LetterboxSpec(imgsz=imgsz)
    if golden:
        with OnnxRuntimeRunner(root / "reference_encoder.onnx") as enc, OnnxRuntimeRunner(root / "model.onnx") as det:
            ref_feeds = [{"refs": preprocess(r, LetterboxSpec(imgsz=ref_size))[0]} for r in refs]
            ref_out = [enc.infer(f) for f in ref_feeds]
            emb = combine_embeddings([o["embedding"] for o in ref_out])
            frames = [frame_with(default_colour), frame_with(BLUE, (3, 0))]
            det_feeds = [{"images": preprocess(f, spec)[0], "embedding": emb} for f in frames]
            cases = [GoldenCase(f"img_{i + 1}.png", f, {"fp32": o}, role="reference_encoder")
                     for i, (f, o) in enumerate(zip(ref_feeds, ref_out))]
            cases += [GoldenCase(f"frame_{i}.png", f, {"fp32": det.infer(f)}, role="fp32")
                      for i, f in enumerate(det_feeds)]
        from edgekit.core.parity import DEVICE_TOLERANCES, Tolerance

        write_golden(root / "golden", cases, tolerances={  # as export writes them (RefDetAdapter.golden_tolerances)
            **DEVICE_TOLERANCES, "reference_encoder:fp32": Tolerance(atol=1e-3, rtol=1e-3),
            "reference_encoder:fp16": Tolerance(atol=1e-2, rtol=5e-2)})
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    cells = (imgsz // CELL) ** 2
    manifest = BundleManifest(
        task="refdet", classes=["target"], target="x86", preprocess=spec,
        postprocess=PostprocessSpec(task="detect", conf=0.25, iou=0.5),
        models={"reference_encoder": ModelEntry(file="reference_encoder.onnx", engine_precision="fp16",
                                                inputs=[TensorSpec(name="refs", shape=[1, 3, ref_size, ref_size])],
                                                outputs=[TensorSpec(name="embedding", shape=[1, DIM])], opset=17),
                "fp32": ModelEntry(file="model.onnx", inputs=[TensorSpec(name="images", shape=[1, 3, imgsz, imgsz]),
                                                              TensorSpec(name="embedding", shape=[1, DIM])],
                                   outputs=[TensorSpec(name="output0", shape=[1, 5, cells])], opset=17)},
        files=describe_files(root, files), references=names,
        golden=GoldenEntry(dir="golden", n=4) if golden else None)
    write_manifest(manifest, root)
    return root


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())
