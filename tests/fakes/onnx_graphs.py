"""Tiny real ONNX graphs built with onnx.helper, and a folder of small real calibration images."""

from __future__ import annotations

from pathlib import Path
from typing import List

import numpy as np


def tiny_conv_model(dynamic: bool = False, opset: int = 17, unsupported: bool = False, size: int = 16):
    """images (1,3,S,S) -> Conv 3x3 (4) -> Relu -> Conv 1x1 (2) -> Sigmoid -> output0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w1 = numpy_helper.from_array(rng.normal(0, 0.5, (4, 3, 3, 3)).astype(np.float32), "w1")
    b1 = numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b1")
    w2 = numpy_helper.from_array(rng.normal(0, 0.5, (2, 4, 1, 1)).astype(np.float32), "w2")
    b2 = numpy_helper.from_array(rng.normal(0, 0.1, (2,)).astype(np.float32), "b2")
    nodes = [
        helper.make_node("Conv", ["images", "w1", "b1"], ["c1"], name="/model.0/conv/Conv", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c1"], ["r1"], name="/model.0/act/Relu"),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], name="/model.1/conv/Conv"),
        helper.make_node("EdgekitUnsupportedOp" if unsupported else "Sigmoid", ["c2"], ["output0"],
                         name="/model.1/Sigmoid", **({"domain": ""} if unsupported else {})),
    ]
    batch, side = ("batch", "side") if dynamic else (1, size)
    graph = helper.make_graph(
        nodes, "tiny",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [batch, 3, side, side])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, [batch, 2, side, side])],
        initializer=[w1, b1, w2, b2])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8  # what onnxruntime 1.17+ and TensorRT 8.5 both read
    if not unsupported:
        onnx.checker.check_model(model)
    return model


def save(model, path: Path) -> Path:
    import onnx

    onnx.save(model, str(path))
    return path


def write_images(folder: Path, n: int, seed: int = 0, size=(48, 64), suffixes=(".jpg",)) -> List[Path]:
    """``n`` small images with coloured rectangles (real JPEG/PNG/BMP files)."""
    import cv2

    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        img = np.full((size[0], size[1], 3), rng.integers(0, 255, 3), np.uint8)
        for _ in range(3):
            x, y = int(rng.integers(0, size[1] - 8)), int(rng.integers(0, size[0] - 8))
            color = tuple(int(v) for v in rng.integers(0, 255, 3))
            cv2.rectangle(img, (x, y), (x + int(rng.integers(4, 20)), y + int(rng.integers(4, 20))), color, -1)
        path = folder / f"img_{i:03d}{suffixes[i % len(suffixes)]}"
        cv2.imwrite(str(path), img)
        paths.append(path)
    return paths
