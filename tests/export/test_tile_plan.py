"""A bundle's tiled input plan: ExportOptions.tile_plan -> manifest ``tiling``; with --dynamic the engine
profile (manifest and the export-time engine build) covers the plan's batch; without it a batch > 1 is refused."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from edgekit.cli.main import cli
from edgekit.export import ExportOptions
from edgekit.export.bundle import batch_profile, model_entry
from tests.deploy.bundles import constant_obb_model, obb_raw, write_test_bundle


def test_tile_batch_above_one_needs_dynamic(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="--dynamic"):
        ExportOptions(source=tmp_path, tile_plan={"tile": 640, "overlap": 128, "batch": 8})
    ok = ExportOptions(source=tmp_path, dynamic=True, tile_plan={"tile": 640, "overlap": 128, "batch": 8})
    assert ok.tile_batch == 8
    assert ExportOptions(source=tmp_path, tile_plan={"tile": 640}).tile_batch == 1  # static: tiles stream
    assert ExportOptions(source=tmp_path).tile_batch == 1
    with pytest.raises(ValidationError):
        ExportOptions(source=tmp_path, tile_plan={"tile": 640, "overlap": 640})


def test_cli_flags_build_the_plan(tmp_path: Path) -> None:
    from edgekit.cli.export_cmd import _tile_plan

    assert _tile_plan(None, None, None) is None
    assert _tile_plan(640, None, 4, dynamic=True) == {"tile": 640, "overlap": 128, "batch": 4}
    res = CliRunner().invoke(cli, ["export", str(tmp_path), "--tile", "640", "--tile-batch", "4"])
    assert res.exit_code == 2 and "--dynamic" in res.output
    res = CliRunner().invoke(cli, ["export", str(tmp_path), "--tile-batch", "4"])
    assert res.exit_code == 2 and "--tile" in res.output


def test_manifest_profile_covers_the_tile_batch_of_a_dynamic_model(tmp_path: Path) -> None:
    import numpy as np

    path = constant_obb_model(tmp_path / "model.onnx", obb_raw(), 64, dynamic=True)
    feed = {"images": np.zeros((1, 3, 64, 64), np.float32)}
    entry = model_entry(path, None, feed, batch=6)
    assert entry.profile["images"].model_dump() == {"min": [1, 3, 64, 64], "opt": [6, 3, 64, 64], "max": [6, 3, 64, 64]}
    assert model_entry(path, None, feed).profile["images"].max == [1, 3, 64, 64]  # no plan: as before
    assert batch_profile([1, 3, 64, 64], [1, 3, 64, 64], 6).max == [1, 3, 64, 64]  # a static batch stays


def test_bundle_engine_profile_reads_the_covered_batch(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from edgekit.core.manifest import describe_files
    from edgekit.deploy.bundle import Bundle

    root = write_test_bundle(tmp_path / "b", imgsz=64, dynamic=True, per_image=True)
    data = json.loads((root / "manifest.json").read_text())
    data["models"]["fp32"]["profile"] = {"images": batch_profile([1, 3, 64, 64], ["batch", 3, 64, 64], 9).model_dump()}
    data["tiling"] = {"tile": 64, "overlap": 16, "batch": 9}
    data["files"] = {k: v.model_dump() for k, v in describe_files(root, list(data["files"])).items()}
    (root / "manifest.json").write_text(json.dumps(data))
    bundle = Bundle.open(root)
    assert bundle.engine_profile("fp32")["images"] == ((1, 3, 64, 64), (9, 3, 64, 64), (9, 3, 64, 64))
    assert bundle.detector().batch == 9


def test_export_engine_stage_builds_the_tile_batch_profile(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("polygraphy")
    from edgekit.deploy import tensorrt as trt_build
    from edgekit.export import stages
    from edgekit.export.adapters import GraphSpec
    from tests.fakes.fake_tensorrt import FakeTensorRT
    from tests.fakes.onnx_graphs import save, tiny_conv_model

    save(tiny_conv_model(dynamic=True), tmp_path / "model.onnx")
    seen = []
    real = trt_build.build_engine
    monkeypatch.setattr(trt_build, "build_engine", lambda src, out, options, **kw: seen.append(options) or real(
        src, out, options, **kw))
    graph = GraphSpec("fp32", "model.onnx", ("images",), ("output0",))
    ctx = SimpleNamespace(options=SimpleNamespace(engine=True, int8=False, fp16=True, dynamic=True, tile_batch=4),
                          log=lambda _m: None, imgsz=16, detection_graph=lambda: graph)
    with FakeTensorRT("8.5.2.2"):
        assert stages.engine(ctx, tmp_path).report()["built"] is True
    profile = seen[0].profiles["images"]
    assert (tuple(profile.min), tuple(profile.opt), tuple(profile.max)) == ((1, 3, 16, 16), (4, 3, 16, 16), (4, 3, 16, 16))
