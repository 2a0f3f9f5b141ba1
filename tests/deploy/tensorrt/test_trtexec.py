"""trtexec command lines as data (8.5 / 10 / 11), and a build through a fake ``trtexec`` on PATH that
records its argv and writes a plan."""

from __future__ import annotations

import json
import os
import stat
import sys

import pytest

from edgekit.core.errors import ConfigError, ModelError
from edgekit.deploy.tensorrt import (
    EngineBuildOptions,
    ShapeProfile,
    build_engine,
    read_sidecar,
    trtexec_command,
)

DYN = {"images": ShapeProfile(min=(1, 3, 320, 320), opt=(4, 3, 320, 320), max=(8, 3, 640, 640))}


def _o(**kw) -> EngineBuildOptions:
    return EngineBuildOptions(**kw)


def test_85_fp16_dla_with_timing_cache_and_workspace(tmp_path):
    cmd = trtexec_command("m.onnx", "e.plan", _o(precision="fp16", dla_core=1, workspace_mb=512), "8.5.2.2",
                          timing_cache="t.cache")
    assert cmd == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.plan", "--fp16", "--useDLACore=1",
                   "--allowGPUFallback", "--memPoolSize=workspace:512", "--timingCacheFile=t.cache", "--buildOnly"]


def test_85_int8_from_calibration_cache_with_dynamic_shapes(tmp_path):
    cache = tmp_path / "model.calib.cache"
    cache.write_text("TRT-8502-MinMaxCalibration\n")
    cmd = trtexec_command("m.onnx", "e.plan", _o(precision="int8", profiles=DYN), "8.5.2.2", calib_cache=cache,
                          int8_source="calib-cache")
    assert cmd == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.plan", "--fp16", "--int8", f"--calib={cache}",
                   "--memPoolSize=workspace:1024",
                   "--minShapes=images:1x3x320x320", "--optShapes=images:4x3x320x320", "--maxShapes=images:8x3x640x640",
                   "--minShapesCalib=images:4x3x320x320", "--optShapesCalib=images:4x3x320x320",
                   "--maxShapesCalib=images:4x3x320x320", "--buildOnly"]


def test_int8_qdq_passes_int8_without_calib_on_10_and_nothing_on_11(qdq_model):
    ten = trtexec_command(qdq_model, "e.plan", _o(precision="int8", fp16_fallback=False), "10.3.0.26")
    assert ten == ["trtexec", f"--onnx={qdq_model}", "--saveEngine=e.plan", "--int8", "--memPoolSize=workspace:1024",
                   "--skipInference"]
    eleven = trtexec_command(qdq_model, "e.plan", _o(precision="int8"), "11.1.0.5")
    assert not {"--int8", "--fp16", "--best"} & set(eleven) and not any(a.startswith("--calib") for a in eleven)


def test_refusals_name_the_trtexec_trap(tmp_path, onnx_models):
    with pytest.raises(ConfigError, match="TensorRT 11 has no FP16"):
        trtexec_command("m.onnx", "e.plan", _o(precision="fp16"), "11.1.0.5")
    with pytest.raises(ConfigError, match="removed INT8 calibration"):
        trtexec_command("m.onnx", "e.plan", _o(precision="int8", int8_source="calib-cache"), "11.1.0.5")
    with pytest.raises(ConfigError, match="does not exist \\(trtexec would silently calibrate on random data\\)"):
        trtexec_command(onnx_models["static"], "e.plan", _o(precision="int8"), "8.5.2.2",
                        calib_cache=tmp_path / "missing.cache")
    with pytest.raises(ConfigError, match="fake \\+-2 ranges"):  # --int8 without --calib on a float ONNX
        trtexec_command(onnx_models["static"], "e.plan", _o(precision="int8", int8_source="calib-cache"), "8.5.2.2",
                        int8_source="calib-cache")
    with pytest.raises(ConfigError, match="needs the cache"):
        trtexec_command(onnx_models["static"], "e.plan", _o(precision="int8"), "8.5.2.2")


FAKE_TRTEXEC = """#!{python}
import json, os, sys
args = sys.argv[1:]
with open(os.environ["FAKE_TRTEXEC_LOG"], "a") as f:
    f.write(json.dumps(args) + "\\n")
if os.environ.get("FAKE_TRTEXEC_FAIL"):
    print("[E] [TRT] ModelImporter.cpp:726: ERROR: fake failure")
    sys.exit(1)
plan = [a.split("=", 1)[1] for a in args if a.startswith("--saveEngine=")][0]
with open(plan, "wb") as f:
    f.write(b"FAKE-PLAN from trtexec")
print("&&&& PASSED TensorRT.trtexec")
"""


@pytest.fixture
def trtexec_on_path(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    exe = bindir / "trtexec"
    exe.write_text(FAKE_TRTEXEC.format(python=sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "argv.jsonl"
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_TRTEXEC_LOG", str(log))
    return log


def test_build_with_trtexec_runs_it_and_writes_plan_and_sidecar(tmp_path, fake_trt, onnx_models, trtexec_on_path):
    fake_trt("8.5.2.2")
    lines = []
    opts = _o(precision="fp16", builder="trtexec", timing_cache=str(tmp_path / "t.cache"))
    result = build_engine(onnx_models["static"], tmp_path / "e", opts, progress=lines.append)
    argv = json.loads(trtexec_on_path.read_text().splitlines()[0])
    assert argv[0] == f"--onnx={onnx_models['static']}" and "--fp16" in argv and "--buildOnly" in argv
    assert f"--timingCacheFile={tmp_path / 't.cache'}" in argv
    assert result.plan_path.read_bytes() == b"FAKE-PLAN from trtexec"
    side = read_sidecar(result.plan_path)
    assert side.builder == "trtexec" and side.trt_version == "8.5.2.2"
    assert not list((tmp_path / "e").glob(".*"))  # the staging file is gone
    assert any(ln.startswith("build: ") and "trtexec" in ln for ln in lines)
    again = build_engine(onnx_models["static"], tmp_path / "e", opts)
    assert again.reused and len(trtexec_on_path.read_text().splitlines()) == 1
    polygraphy = build_engine(onnx_models["static"], tmp_path / "e", _o(precision="fp16", timing_cache=""))
    assert polygraphy.key != result.key  # the builder is part of the key


def test_trtexec_failure_is_one_line_with_its_error(tmp_path, fake_trt, onnx_models, trtexec_on_path, monkeypatch):
    fake_trt("8.5.2.2")
    monkeypatch.setenv("FAKE_TRTEXEC_FAIL", "1")
    with pytest.raises(ModelError, match="trtexec failed \\(exit 1\\).*fake failure"):
        build_engine(onnx_models["static"], tmp_path / "e", _o(precision="fp16", builder="trtexec", timing_cache=""))
    assert not (tmp_path / "e").exists() or not list((tmp_path / "e").iterdir())
