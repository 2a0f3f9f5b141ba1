"""Helpers that write a small but complete bundle, the way export writes one (used across tests)."""

from __future__ import annotations

from pathlib import Path


# ---- a small but complete bundle, written the way export writes one ------------------------------
def constant_obb_model(path: Path, raw, imgsz: int = 64, dynamic: bool = False, per_image: bool = False) -> Path:
    """A real ONNX graph whose output is ``raw`` (B, 4+nc+1, A) plus 0 x the input (``per_image``: plus 0 x
    each image's mean, so a batch of N gives N copies of ``raw``)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    shape = ["batch", 3, "height", "width"] if dynamic else [1, 3, imgsz, imgsz]
    x = helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)
    y = helper.make_tensor_value_info("output0", TensorProto.FLOAT, (["batch"] if per_image else []) + list(raw.shape)[
        1 if per_image else 0:])
    nodes = [helper.make_node("ReduceMean", ["images"], ["m"], keepdims=0),
             helper.make_node("Mul", ["m", "zero"], ["z"]),
             helper.make_node("Add", ["raw", "z"], ["output0"])]
    inits = [numpy_helper.from_array(raw, "raw"), numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    if per_image:
        nodes[0] = helper.make_node("ReduceMean", ["images"], ["m4"], axes=[1, 2, 3], keepdims=1)
        nodes.insert(1, helper.make_node("Reshape", ["m4", "b11"], ["m"]))
        inits.append(numpy_helper.from_array(np.array([-1, 1, 1], np.int64), "b11"))
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


def write_test_bundle(root: Path, imgsz: int = 64, dynamic: bool = False, golden: bool = True,
                      per_image: bool = False) -> Path:
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
    constant_obb_model(root / "model.onnx", raw, imgsz, dynamic, per_image)
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
                                   outputs=[TensorSpec(name="output0", shape=(["batch"] if per_image else [])
                                                       + list(raw.shape)[1 if per_image else 0:])], opset=17)},
        files=describe_files(root, files), golden=GoldenEntry(dir="golden", n=1) if golden else None)
    write_manifest(manifest, root)
    return root
