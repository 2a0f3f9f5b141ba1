"""Export is task-agnostic: a toy two-graph adapter (encoder image -> embedding; detector image +
embedding -> OBB output) registered with ``register_adapter`` goes through the real pipeline.

The graphs are real torch modules exported to real ONNX; parity runs them under PyTorch and ONNX
Runtime. Only checkpoint loading is replaced (the toy has no Ultralytics checkpoint to load).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgekit.core.detections import Detections  # noqa: E402
from edgekit.core.letterbox import LetterboxInfo, LetterboxSpec, preprocess  # noqa: E402
from edgekit.core.postprocess import PostprocessSpec, decode_obb  # noqa: E402
from edgekit.deploy.runners.base import Runner, TensorMeta  # noqa: E402
from edgekit.export.adapters import (  # noqa: E402
    ADAPTERS,
    ExportAdapter,
    GraphSpec,
    LoadedCheckpoint,
    read_image,
    register_adapter,
)

IMGSZ, EMB, NC = 32, 8, 2


class Encoder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.fc = torch.nn.Linear(8, EMB)

    def forward(self, ref_image):
        return torch.tanh(self.fc(torch.relu(self.conv(ref_image)).mean(dim=(2, 3))))


class Detector(torch.nn.Module):
    """(images, embedding) -> (1, 4 + NC + 1, A): a grid of boxes whose scores depend on both inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4 + NC + 1, 8, stride=8)
        self.film = torch.nn.Linear(EMB, NC)
        g = (torch.arange(IMGSZ // 8, dtype=torch.float32) + 0.5) * 8
        yy, xx = torch.meshgrid(g, g, indexing="ij")
        self.register_buffer("centres", torch.stack([xx.flatten(), yy.flatten()]))

    def forward(self, images, embedding):
        f = self.conv(images).flatten(2)  # (1, 7, A)
        xy = self.centres[None] + torch.tanh(f[:, 0:2]) * 2.0
        wh = 6.0 + 4.0 * torch.sigmoid(f[:, 2:4])
        cls = torch.sigmoid(4.0 * f[:, 4:4 + NC] + 3.0 * self.film(embedding)[:, :, None])
        angle = 0.5 * torch.tanh(f[:, 4 + NC:])
        return torch.cat([xy, wh, cls, angle], dim=1)


class Toy:
    def __init__(self) -> None:
        torch.manual_seed(0)
        self.encoder, self.detector = Encoder().eval(), Detector().eval()


class ModuleRunner(Runner):
    """A torch module with several named inputs (the reference side of parity)."""

    backend = "torch"

    def __init__(self, module, inputs: Tuple[str, ...], outputs: Tuple[str, ...]) -> None:
        super().__init__(f"torch:{type(module).__name__}")
        self.module, self.inputs, self.outputs = module, inputs, outputs

    def _activate(self) -> Dict[str, TensorMeta]:
        shapes = {"embedding": (1, EMB)}
        return {n: TensorMeta(n, shapes.get(n, (1, 3, IMGSZ, IMGSZ)), np.dtype(np.float32)) for n in self.inputs}

    def _infer(self, feed):
        with torch.inference_mode():
            out = self.module(*(torch.from_numpy(feed[n]) for n in self.inputs))
        return {self.outputs[0]: out.numpy()}

    def _deactivate(self) -> None:
        pass


class TwoGraphAdapter(ExportAdapter):
    task = "refdet"
    ENCODER = GraphSpec("reference_encoder", "reference_encoder.onnx", ("ref_image",), ("embedding",), detections=False)
    DETECTOR = GraphSpec("detector", "detector.onnx", ("images", "embedding"), ("output0",))

    def graphs(self) -> List[GraphSpec]:
        return [self.ENCODER, self.DETECTOR]

    def _module(self, ckpt: LoadedCheckpoint, graph: GraphSpec):
        return ckpt.model.encoder if graph.role == "reference_encoder" else ckpt.model.detector

    def export_graph(self, ckpt, graph, out_path, imgsz, opset, dynamic) -> None:
        x = torch.zeros(1, 3, imgsz, imgsz)
        args = (x,) if graph.role == "reference_encoder" else (x, torch.zeros(1, EMB))
        torch.onnx.export(self._module(ckpt, graph), args, str(out_path), input_names=list(graph.input_names),
                          output_names=list(graph.output_names), opset_version=opset, dynamo=False)

    def reference_runner(self, ckpt, graph) -> Runner:
        return ModuleRunner(self._module(ckpt, graph), graph.input_names, graph.output_names)

    def letterbox_spec(self, imgsz: int) -> LetterboxSpec:
        return LetterboxSpec(imgsz=imgsz)

    def embedding(self, x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.model.encoder(torch.from_numpy(x)).numpy()

    def feed(self, image_path: Path, graph: GraphSpec, spec: LetterboxSpec) -> Tuple[Dict[str, np.ndarray], LetterboxInfo]:
        x, info = preprocess(read_image(image_path), spec)
        if graph.role == "reference_encoder":
            return {"ref_image": x}, info
        return {"images": x, "embedding": self.embedding(x)}, info  # the target: the frame's own embedding

    def calibration_feeds(self, graph: GraphSpec, calib):
        return lambda: ({"images": b, "embedding": self.embedding(b)} for b in calib.batches(1))

    def int8_excluded_nodes(self, graph, onnx_path, float_scope):
        return []  # no Ultralytics head to keep in float

    def decode(self, outputs, post: PostprocessSpec) -> List[Detections]:
        return decode_obb(outputs["output0"], post.model_copy(update={"task": "obb"}))

    def ground_truth(self, image_path, label_path, info) -> Detections:
        return Detections.empty(obb=True)


@pytest.fixture
def toy_task(monkeypatch, tmp_path):
    """The toy adapter registered under 'refdet' (restored after), and a checkpoint file standing for it."""
    import edgekit.export.pipeline as pipeline

    toy = Toy()
    TwoGraphAdapter.model = toy
    saved = ADAPTERS.get("refdet")
    register_adapter("refdet", TwoGraphAdapter)
    ckpt = tmp_path / "toy.pt"
    ckpt.write_bytes(b"toy")
    monkeypatch.setattr(pipeline, "load_checkpoint", lambda path, trust=False: LoadedCheckpoint(
        Path(path), toy, "refdet", {0: "a", 1: "b"}, IMGSZ))
    yield ckpt
    ADAPTERS.pop("refdet")
    if saved is not None:
        ADAPTERS["refdet"] = saved


@pytest.fixture
def images(tmp_path) -> Path:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from fakes.onnx_graphs import write_images

    write_images(tmp_path / "images", 10, seed=3, size=(40, 48))
    return tmp_path / "images"


def test_two_graph_adapter_exports_both_graphs_with_parity_golden_and_roles(toy_task, images, tmp_path):
    from edgekit.core.manifest import load_manifest, verify_bundle_files
    from edgekit.core.parity import check_golden, read_golden
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner
    from edgekit.export import ExportOptions, export_model

    out = tmp_path / "bundle"
    result = export_model(ExportOptions(source=toy_task, out=out, target="x86", calib_data=images, int8=True,
                                        calib_size=8, parity_images=4, golden_count=2))
    for name in ("reference_encoder.onnx", "detector.onnx", "detector.int8.qdq.onnx", "onnx_parity.json"):
        assert (out / name).is_file(), name

    parity = json.loads((out / "onnx_parity.json").read_text())
    assert set(parity["graphs"]) == {"reference_encoder", "detector"}
    assert all(p["passed"] for p in parity["graphs"].values())
    assert parity["graphs"]["detector"]["detections"]["n_ref"] > 0  # detections compared, not vacuous
    assert parity["graphs"]["reference_encoder"]["detections"] is None  # an embedding: raw only
    assert parity["detections"] == parity["graphs"]["detector"]["detections"]  # top level: the detector's report
    report = result.report
    assert set(report["onnx"]["graphs"]) == {"reference_encoder", "detector"}
    assert set(report["parity_by_role"]) == {"reference_encoder", "detector"} and report["parity"]["passed"]
    assert report["int8"]["file"] == "detector.int8.qdq.onnx" and report["golden"]["roles"] == [
        "reference_encoder", "detector"]

    manifest = load_manifest(out)
    verify_bundle_files(out, manifest)
    assert set(manifest.models) == {"reference_encoder", "detector", "int8_qdq"}
    assert [t.name for t in manifest.models["detector"].inputs] == ["images", "embedding"]
    assert manifest.calibration.model == "detector" and manifest.golden.n == 4

    golden = read_golden(out / "golden")
    assert golden.roles == ["reference_encoder", "detector"]
    det_case = golden.cases_for("detector")[0]
    assert set(det_case.inputs) == {"images", "embedding"} and set(det_case.outputs) == {"fp32", "int8"}
    adapter = TwoGraphAdapter()
    for role, file in (("reference_encoder", "reference_encoder.onnx"), ("detector", "detector.onnx")):
        with OnnxRuntimeRunner(out / file) as runner:  # the bundle's graphs reproduce their golden outputs
            decoder = adapter.decode if role == "detector" else None
            assert check_golden(runner, golden, "fp32", decoder, role=role)["passed"], role
    # ...and the check can fail: the encoder graph cannot take the detector's golden feed
    with OnnxRuntimeRunner(out / "reference_encoder.onnx") as wrong, \
            pytest.raises(Exception, match="embedding|ref_image|input"):
        check_golden(wrong, golden, "fp32", None, role="detector")

    from edgekit.deploy.bundle import Bundle

    opened = Bundle.open(out)  # the device's one way in accepts the two-graph bundle
    assert {"reference_encoder", "detector", "int8_qdq"} <= set(opened.roles)


def test_adapter_contract_errors_name_the_graph():
    from edgekit.core.errors import ConfigError, ModelError
    from edgekit.export.adapters import detection_graph

    adapter = TwoGraphAdapter()
    assert ExportAdapter.calibration_feeds(adapter, TwoGraphAdapter.ENCODER, None) is None  # one image input
    with pytest.raises(ConfigError, match="no calibration feeds for detector.onnx, whose inputs are "
                                          r"\['images', 'embedding'\]"):
        ExportAdapter.calibration_feeds(adapter, TwoGraphAdapter.DETECTOR, None)
    assert detection_graph(adapter.graphs()) is TwoGraphAdapter.DETECTOR
    with pytest.raises(ModelError, match="names 0 detection graphs"):
        detection_graph([TwoGraphAdapter.ENCODER])
