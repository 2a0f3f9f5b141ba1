"""edgekit bundle info|check on real bundles (the on-device parity check, here with ONNX Runtime)."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from tests.deploy.bundles import write_test_bundle

pytest.importorskip("onnxruntime")


def _run(*args):
    return subprocess.run([sys.executable, "-m", "edgekit", "bundle", *map(str, args)], capture_output=True, text=True,
                          timeout=120)


def test_info_and_check_pass_on_a_good_bundle(tmp_path):
    b = write_test_bundle(tmp_path / "b")
    res = _run("info", b)
    assert res.returncode == 0, res.stderr
    assert "model       fp32       model.onnx" in res.stdout and "verified" in res.stdout
    res = _run("check", b)
    assert res.returncode == 0, res.stderr
    assert "parity onnxruntime/fp32 on 1 golden inputs" in res.stdout and res.stdout.rstrip().endswith("pass")


def test_check_fails_in_one_line_when_the_device_disagrees(tmp_path):
    b = write_test_bundle(tmp_path / "b")
    # A golden output that this model does not produce (re-hashed, so the bundle itself verifies).
    from edgekit.core.manifest import describe_files, load_manifest, write_manifest

    ref = np.load(b / "golden" / "fp32_000.output0.npy")
    ref[0, 0, 0] += 50.0
    np.save(str(b / "golden" / "fp32_000.output0.npy"), ref)
    m = load_manifest(b)
    write_manifest(m.model_copy(update={"files": describe_files(b, list(m.files))}), b)
    res = _run("check", b)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "does not reproduce its golden outputs on onnxruntime/fp32" in lines[0]
    assert "Traceback" not in res.stderr


def test_tampered_bundle_is_refused_before_running(tmp_path):
    b = write_test_bundle(tmp_path / "b")
    data = json.loads((b / "manifest.json").read_text())
    data["files"]["model.onnx"]["sha256"] = "1" * 64
    (b / "manifest.json").write_text(json.dumps(data))
    res = _run("check", b)
    assert res.returncode == 1 and "does not match its sha256" in res.stderr and "Traceback" not in res.stderr


def test_bad_choice_is_a_usage_error(tmp_path):
    res = _run("check", write_test_bundle(tmp_path / "b"), "--backend", "torch")
    assert res.returncode == 2


def test_info_and_check_cover_both_graphs_of_a_refdet_bundle(tmp_path):
    from tests.deploy.refdet_bundles import encoder_graph, write_refdet_bundle

    b = write_refdet_bundle(tmp_path / "r")
    res = _run("info", b)
    assert res.returncode == 0, res.stderr
    assert "reference_encoder" in res.stdout and "references  2 photo(s) of the default target" in res.stdout
    res = _run("check", b)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("parity")]
    assert len(lines) == 2 and all(ln.endswith("pass") for ln in lines), res.stdout
    assert any(ln.startswith("parity reference_encoder onnxruntime/fp32 on 2") for ln in lines)
    assert any(ln.startswith("parity per-frame graph onnxruntime/fp32 on 2") for ln in lines)

    # an encoder that computes something else: exit 1, one line naming the graph
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(encoder_graph(tmp_path / "enc.onnx")))
    proj = next(i for i in m.graph.initializer if i.name == "proj")
    proj.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(proj), "proj"))
    onnx.save(m, str(b / "reference_encoder.onnx"))
    from edgekit.core.manifest import describe_files, load_manifest, write_manifest

    manifest = load_manifest(b)
    write_manifest(manifest.model_copy(update={"files": describe_files(b, list(manifest.files))}), b)
    res = _run("check", b)
    assert res.returncode == 1
    errors = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and "reference_encoder: raw max abs error" in errors[0], res.stderr
