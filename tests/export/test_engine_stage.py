"""export --engine builds through edgekit.deploy.tensorrt (here on fake TensorRT 8.5 under Polygraphy)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from edgekit.deploy.tensorrt import read_sidecar  # noqa: E402
from edgekit.export import stages  # noqa: E402
from tests.fakes.fake_tensorrt import FakeTensorRT  # noqa: E402
from tests.fakes.onnx_graphs import save, tiny_conv_model  # noqa: E402


def _ctx(**options):
    from edgekit.export.adapters import GraphSpec

    opts = dict(engine=True, int8=False, fp16=True, dynamic=False)
    opts.update(options)
    lines = []
    graph = GraphSpec("fp32", "model.onnx", ("images",), ("output0",))
    return SimpleNamespace(options=SimpleNamespace(**opts), log=lines.append, imgsz=16, lines=lines,
                           detection_graph=lambda: graph)


def test_engine_stage_builds_fp16_into_the_bundle(tmp_path):
    save(tiny_conv_model(), tmp_path / "model.onnx")
    ctx = _ctx()
    with FakeTensorRT("8.5.2.2"):
        report = stages.engine(ctx, tmp_path).report()
    assert report["built"] is True and report["precision"] == "fp16"
    plan = tmp_path / "engines" / report["result"]["plan_path"].split("/")[-1]
    assert read_sidecar(plan).precision == "fp16"
    assert any(line.startswith("build: ") for line in ctx.lines)  # the builder's progress reaches export's log


def test_engine_stage_without_tensorrt_leaves_a_note(tmp_path, monkeypatch):
    from edgekit.deploy import tensorrt

    monkeypatch.setattr(tensorrt, "tensorrt_available", lambda: False)
    ctx = _ctx()
    report = stages.engine(ctx, tmp_path).report()
    assert report["built"] is False and "edgekit engine build" in report["note"]
