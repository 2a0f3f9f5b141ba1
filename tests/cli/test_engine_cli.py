"""`edgekit engine build BUNDLE` on a real bundle directory with a fake TensorRT under Polygraphy."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgekit.cli.main import cli, main

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
pytest.importorskip("polygraphy")

from tests.deploy.bundles import write_test_bundle  # noqa: E402
from tests.fakes.fake_tensorrt import FakeTensorRT  # noqa: E402


@pytest.fixture
def bundle(tmp_path):
    return write_test_bundle(tmp_path / "bundle", imgsz=32)


@pytest.fixture
def trt85():
    with FakeTensorRT("8.5.2.2", num_dla_cores=2) as env:
        yield env


def test_build_prints_progress_and_writes_into_the_engine_cache(bundle, trt85):
    res = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--no-timing-cache"])
    assert res.exit_code == 0, res.output
    phases = [ln.split(":")[0] for ln in res.output.splitlines() if ln.startswith("[engine]")]
    assert phases == ["[engine] parse", "[engine] configure", "[engine] build", "[engine] write"]
    built = [ln for ln in res.output.splitlines() if ln.startswith("built ")]
    assert built and f"{bundle}/engines/fp16-" in built[0] and built[0].endswith(".plan")
    again = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--no-timing-cache"])
    assert any(ln.startswith("reused ") for ln in again.output.splitlines()), again.output
    forced = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--no-timing-cache", "--force", "--quiet"])
    assert forced.exit_code == 0 and "[engine]" not in forced.output and "built " in forced.output


def test_dla_core_and_workspace_reach_the_build(bundle, trt85):
    res = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--dla-core", "1", "--workspace-mb", "64",
                                   "--no-timing-cache"])
    assert res.exit_code == 0, res.output
    assert "fp16-dla1-" in res.output
    assert ("config.set_memory_pool_limit", "WORKSPACE", 64 << 20) in trt85.trt._calls


def test_print_trtexec(bundle, trt85):
    res = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--print-trtexec", "--dla-core", "0"])
    assert res.exit_code == 0, res.output
    line = res.output.strip()
    assert line.startswith(f"trtexec --onnx={bundle}/model.onnx ") and "--useDLACore=0 --allowGPUFallback" in line
    assert "--fp16" in line and "--buildOnly" in line


def test_choices_come_from_the_vocabulary(bundle):
    res = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--precision", "int4"])
    assert res.exit_code == 2 and "'fp32', 'fp16', 'int8'" in res.output


def test_user_errors_are_one_line_exit_1(bundle, trt85, capsys):
    with pytest.raises(SystemExit) as code:
        main(["engine", "build", str(bundle), "--precision", "int8", "--int8-source", "qdq"])
    assert code.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has no 'int8_qdq' model" in err[0] and "--int8" in err[0]
    with pytest.raises(SystemExit):
        main(["engine", "build", str(bundle.parent / "missing")])
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_int8_calibrated_here_from_images(bundle, trt85, tmp_path):
    from tests.fakes.onnx_graphs import write_images

    write_images(tmp_path / "calib", 9)
    res = CliRunner().invoke(cli, ["engine", "build", str(bundle), "--precision", "int8", "--calib-data",
                                   str(tmp_path / "calib"), "--calib-size", "9", "--no-timing-cache"])
    assert res.exit_code == 0, res.output
    assert "[engine] calibrate: 9 images, MinMaxCalibration" in res.output
    assert "[engine] calibrate: batch 9/9 (1 images of 32x32)" in res.output  # static batch-1 input
    plan = [ln.split(" ", 1)[1] for ln in res.output.splitlines() if ln.startswith("built ")][0]
    assert plan.endswith(".plan") and "/int8-" in plan
