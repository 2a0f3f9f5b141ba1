"""Tiny real models for the runner contract: one torch module and the ONNX file exported from it."""

from __future__ import annotations

from pathlib import Path

import pytest

INPUT_SHAPE = (1, 3, 32, 32)


@pytest.fixture(scope="session")
def tiny_torch_model():
    torch = pytest.importorskip("torch")

    class Tiny(torch.nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(0)
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)

        def forward(self, x):
            y = torch.relu(self.conv(x))
            return y.mean(dim=(2, 3)), y  # two outputs, like a head's (decoded, raw maps)

    return Tiny().eval()


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory, request) -> Path:
    """The tiny model as ONNX: exported from torch where torch exists, else the same graph built with
    onnx.helper (the device has no torch; the ONNX-only backends still run the contract there)."""
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    try:
        import torch
    except ImportError:
        return _tiny_onnx_without_torch(path)
    model = request.getfixturevalue("tiny_torch_model")
    torch.onnx.export(model, torch.zeros(INPUT_SHAPE), str(path), input_names=["images"],
                      output_names=["pooled", "maps"], opset_version=17, dynamo=False)
    return path


def _tiny_onnx_without_torch(path: Path) -> Path:
    onnx = pytest.importorskip("onnx")
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.normal(0, 0.2, (4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.normal(0, 0.1, (4,)).astype(np.float32), "b")]
    nodes = [helper.make_node("Conv", ["images", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["maps"]),
             helper.make_node("ReduceMean", ["maps"], ["pooled"], axes=[2, 3], keepdims=0)]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, INPUT_SHAPE)],
                              [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, [1, 4]),
                               helper.make_tensor_value_info("maps", TensorProto.FLOAT, [1, 4, 32, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


# ---- a small but complete bundle, written the way export writes one ------------------------------
def constant_obb_model(path: Path, raw, imgsz: int = 64, dynamic: bool = False) -> Path:
    """A real ONNX graph whose output is ``raw`` (B, 4+nc+1, A) plus 0 x the input."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = ["batch", 3, "height", "width"] if dynamic else [1, 3, imgsz, imgsz]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(raw.shape))
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["raw", "z"], ["output0"])]
    inits = [numpy_helper.from_array(raw, "raw"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    model = helper.make_model(helper.make_graph(nodes, "const_obb", [x], [y], inits),
                              opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def obb_raw():
    import numpy as np

    r = np.zeros((1, 4 + 2 + 1, 3), np.float32)  # 2 classes, 3 anchors
    r[0, :, 0] = [32, 32, 20, 10, 0.9, 0.1, 0.5]
    r[0, :, 1] = [10, 40, 6, 4, 0.05, 0.6, 0.0]
    r[0, :, 2] = [50, 20, 6, 4, 0.1, 0.2, 0.0]
    return r


def write_test_bundle(root: Path, imgsz: int = 64, dynamic: bool = False, golden: bool = True) -> Path:
    """model.onnx + golden/ + manifest.json (schema v2, every file hashed), like edgekit export."""
    import json

    import numpy as np

    from edgekit.core.letterbox import LetterboxSpec
    from edgekit.core.manifest import (
        BundleManifest,
        GoldenEntry,
        ModelEntry,
        TensorSpec,
        describe_files,
        write_manifest,
    )

    root.mkdir(parents=True, exist_ok=True)
    raw = obb_raw()
    constant_obb_model(root / "model.onnx", raw, imgsz, dynamic)
    if golden:
        g = root / "golden"
        g.mkdir()
        x = np.zeros((1, 3, imgsz, imgsz), np.float32)
        np.save(str(g / "input_000.images.npy"), x)
        np.save(str(g / "fp32_000.output0.npy"), raw)
        (g / "golden.json").write_text(json.dumps({
            "reference": "onnxruntime CPU (host)", "postprocess_conf": 0.25,
            "cases": [{"image": "zeros.jpg", "inputs": {"images": "input_000.images.npy"},
                       "fp32": {"output0": "fp32_000.output0.npy"}, "int8": {}}],
            "tolerances": {"fp32": {"atol": 0.05, "rtol": 1e-3, "min_iou": 0.9, "min_match_rate": 0.99}}}))
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    in_shape = ["batch", 3, "height", "width"] if dynamic else [1, 3, imgsz, imgsz]
    manifest = BundleManifest(
        task="obb", classes=["a", "b"], target="x86", preprocess=LetterboxSpec(imgsz=imgsz),
        models={"fp32": ModelEntry(file="model.onnx", inputs=[TensorSpec(name="images", shape=in_shape)],
                                   outputs=[TensorSpec(name="output0", shape=list(raw.shape))], opset=17)},
        files=describe_files(root, files), golden=GoldenEntry(dir="golden", n=1) if golden else None)
    write_manifest(manifest, root)
    return root
