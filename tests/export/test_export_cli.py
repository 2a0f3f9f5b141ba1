"""``edgekit export`` end to end through the CLI: a complete verified INT8 bundle, and one-line errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.core.errors import CalibrationError, ConfigError, DataError, ModelError


def _invoke(*args):
    return CliRunner().invoke(cli, ["export", *map(str, args)])


def _assert_one_line_error(res, kind, text):
    assert res.exit_code == 1, res.output
    assert isinstance(res.exception, kind), repr(res.exception)
    message = str(res.exception)
    assert "\n" not in message and text in message, message


@pytest.fixture
def corrupt_checkpoint(tmp_path, obb_checkpoint):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(obb_checkpoint.read_bytes()[:4096])  # a truncated zip: what a killed copy leaves
    return bad


def test_corrupt_checkpoint_is_one_line_error(corrupt_checkpoint, tmp_path):
    res = _invoke(corrupt_checkpoint, "--out", tmp_path / "b")
    _assert_one_line_error(res, ModelError, "cannot load checkpoint")
    assert "broken.pt" in str(res.exception) and not (tmp_path / "b").exists()


@pytest.mark.parametrize("n_images,kind,text", [
    (0, CalibrationError, "found 0 images"),
    (3, CalibrationError, "found 3 images"),
])
def test_bad_calibration_dir_is_one_line_error(obb_run_dir, obb_dataset, tmp_path, n_images, kind, text):
    calib = tmp_path / "calib"
    calib.mkdir()
    for src in sorted((obb_dataset / "images" / "train").glob("*.jpg"))[:n_images]:
        shutil.copy(src, calib / src.name)
    res = _invoke(obb_run_dir, "--int8", "--calib-data", calib, "--calib-size", 16, "--out", tmp_path / "b")
    _assert_one_line_error(res, kind, text)
    assert str(calib) in str(res.exception) and not (tmp_path / "b").exists()


@pytest.mark.parametrize("args,kind,text", [
    (["--opset", "18"], ConfigError, "above what TensorRT 8.5"),
    (["--imgsz", "70"], ConfigError, "not a multiple of the model stride"),
])
def test_option_errors(obb_run_dir, tmp_path, args, kind, text):
    res = _invoke(obb_run_dir, *args, "--out", tmp_path / "b")
    _assert_one_line_error(res, kind, text)


def test_missing_source_is_one_line_error(tmp_path):
    _assert_one_line_error(_invoke(tmp_path / "nope"), ModelError, "does not exist")


def test_checkpoint_without_any_images_is_one_line_error(tmp_path, obb_checkpoint):
    import torch

    ckpt = torch.load(str(obb_checkpoint), map_location="cpu", weights_only=False)
    ckpt["train_args"]["data"] = str(tmp_path / "moved" / "data.yaml")  # the dataset it was trained on is gone
    lonely = tmp_path / "lonely.pt"
    torch.save(ckpt, str(lonely))
    _assert_one_line_error(_invoke(lonely, "--out", tmp_path / "b"), DataError, "no images to verify")


def test_cli_error_prints_one_line_on_stderr(tmp_path):
    import subprocess
    import sys

    res = subprocess.run([sys.executable, "-m", "edgekit", "export", str(tmp_path / "nope.pt")],
                         capture_output=True, text=True, timeout=120)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert res.returncode == 1 and len(lines) == 1 and lines[0].startswith("error:"), res.stderr


def test_int8_export_produces_complete_verified_bundle(obb_run_dir, tmp_path):
    from edgekit.calib.cache import verify_cache
    from edgekit.calib.qdq_check import check_qdq_trt85
    from edgekit.core.manifest import load_manifest, verify_bundle_files
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

    out = tmp_path / "bundle"
    res = _invoke(obb_run_dir, "--int8", "--calib-size", 8, "--out", out, "--quiet")
    assert res.exit_code == 0, (res.output, res.exception)
    for name in ("manifest.json", "model.onnx", "model.int8.qdq.onnx", "export_report.json", "onnx_parity.json",
                 "model.minmax.calib.cache", "model.minmax.calib.cache.json", "golden/golden.json"):
        assert (out / name).is_file(), name
    assert "INT8 mAP50" in res.output and "model.int8.qdq.onnx" in res.output  # the summary table

    manifest = load_manifest(out)
    verify_bundle_files(out, manifest)  # every listed file present with its sha256
    assert check_qdq_trt85(out / "model.int8.qdq.onnx") == []
    sidecar = json.loads((out / "model.minmax.calib.cache.json").read_text())
    verify_cache(out / "model.minmax.calib.cache", {"onnx_sha256": sidecar["onnx_sha256"], "method": "minmax"})
    # the cache is for the target's TensorRT (Xavier NX: 8.5.2), and the manifest says which calibrator
    from edgekit.calib.cache import read_cache

    assert read_cache(out / "model.minmax.calib.cache").header == "TRT-8502-MinMaxCalibration"
    assert (manifest.calibration.trt_algorithm, manifest.calibration.trt_version) == ("MinMaxCalibration", "8502")
    assert manifest.target == "jetson-xavier-nx" and set(manifest.models) == {"fp32", "int8_qdq"}

    report = json.loads((out / "export_report.json").read_text())
    acc = report["int8"]["accuracy"]
    assert set(acc) >= {"fp32", "int8", "map50_drop_points"} and acc["fp32"]["n_images"] > 0
    assert report["onnx"]["ir_version"] == 8 and report["onnx"]["opset"] == 17
    assert "built on the device" in report["engine"]["note"]

    golden = json.loads((out / "golden" / "golden.json").read_text())  # golden outputs reproduce under ORT
    case = golden["cases"][0]
    feed = {k: np.load(out / "golden" / v) for k, v in case["inputs"].items()}
    for model, key in (("model.onnx", "fp32"), ("model.int8.qdq.onnx", "int8")):
        with OnnxRuntimeRunner(out / model) as runner:
            got = runner.infer(feed)
        for name, file in case[key].items():
            np.testing.assert_allclose(got[name], np.load(out / "golden" / file), rtol=1e-5, atol=1e-5)


def test_parity_gate_fails_beyond_tolerance_and_keeps_no_bundle(obb_run_dir, tmp_path):
    from edgekit.export import ExportOptions, ParityTolerance, export_model

    out = tmp_path / "strict"
    tight = ParityTolerance(atol=1e-12, rtol=0.0)  # float32 export noise (~1e-5) must trip it
    with pytest.raises(ModelError, match="parity gate failed for model.onnx: raw max abs error"):
        export_model(ExportOptions(source=obb_run_dir, out=out, tolerance=tight, target="x86"))
    assert not out.exists()
    failed = json.loads((tmp_path / "strict.onnx_parity.failed.json").read_text())
    assert failed["passed"] is False and failed["raw"]["max_abs"] > 1e-12

    kept = export_model(ExportOptions(source=obb_run_dir, out=out, tolerance=tight, parity_gate=False, target="x86",
                                      engine=True))
    assert (kept.bundle_dir / "manifest.json").is_file()
    assert json.loads((out / "onnx_parity.json").read_text())["gate"].startswith("off")
    from edgekit.deploy.tensorrt import tensorrt_available

    if not tensorrt_available():  # --engine without TensorRT: a complete bundle and a note, not an error
        assert kept.report["engine"]["built"] is False
        assert "tensorrt not importable" in kept.report["engine"]["note"]



def test_data_of_the_wrong_kind_for_an_obb_checkpoint_is_one_line(obb_run_dir, tmp_path):
    refdet = tmp_path / "refdet"
    (refdet / "annotations").mkdir(parents=True)
    (refdet / "annotations" / "annotations.json").write_text("[]")
    res = _invoke(obb_run_dir, "--data", refdet, "--out", tmp_path / "b")
    _assert_one_line_error(res, DataError, "holds RefDet videos, but")
    res = _invoke(obb_run_dir, "--data", tmp_path / "missing", "--out", tmp_path / "b")
    _assert_one_line_error(res, DataError, "does not exist")
    assert not (tmp_path / "b").exists()
