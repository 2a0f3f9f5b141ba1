"""Bundle.open on real bundle directories: every way a bundle can be wrong is one clear line."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.errors import ConfigError, ModelError  # noqa: E402
from edgekit.core.manifest import file_sha256  # noqa: E402
from edgekit.deploy.bundle import ENGINE_CACHE_ENV, Bundle  # noqa: E402
from tests.deploy.bundles import write_test_bundle  # noqa: E402

pytest.importorskip("onnx")


@pytest.fixture
def bundle_dir(tmp_path) -> Path:
    return write_test_bundle(tmp_path / "bundle")


def _edit(root: Path, change) -> None:
    path = root / "manifest.json"
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def test_open_exposes_roles_paths_profile_and_cache(bundle_dir):
    b = Bundle.open(bundle_dir)
    assert b.task == "obb" and b.classes == ["a", "b"] and b.roles == ["fp32"]
    assert b.model_path("fp32") == bundle_dir.absolute() / "model.onnx"
    assert b.engine_profile("fp32") == {"images": ((1, 3, 64, 64),) * 3}
    assert b.engine_cache_dir == bundle_dir.absolute() / "engines"
    assert b.calibration is None
    assert Bundle.open(bundle_dir / "manifest.json").root == b.root


def test_engine_cache_dir_can_move_off_a_read_only_bundle(bundle_dir, tmp_path, monkeypatch):
    monkeypatch.setenv(ENGINE_CACHE_ENV, str(tmp_path / "cache"))
    assert Bundle.open(bundle_dir).engine_cache_dir == tmp_path / "cache" / "bundle"
    assert Bundle.open(bundle_dir, engine_cache_dir=tmp_path / "x").engine_cache_dir == tmp_path / "x"


def test_dynamic_input_profile_uses_the_letterbox_size(tmp_path):
    b = Bundle.open(write_test_bundle(tmp_path / "dyn", dynamic=True))
    assert b.engine_profile("fp32", batch=4) == {"images": ((4, 3, 64, 64),) * 3}


def _tamper_sha(root):
    _edit(root, lambda d: d["files"]["model.onnx"].update(sha256="0" * 64))


def _truncate(root):
    data = (root / "model.onnx").read_bytes()
    (root / "model.onnx").write_bytes(data[: len(data) // 2])


def _flip_byte(root):
    data = bytearray((root / "model.onnx").read_bytes())
    data[-1] ^= 1
    (root / "model.onnx").write_bytes(bytes(data))


def _schema(root):
    _edit(root, lambda d: d.update(schema_version=99))


def _no_golden(root):
    import shutil

    shutil.rmtree(root / "golden")


def _imgsz_mismatch(root):
    _edit(root, lambda d: d["preprocess"].update(imgsz=[32, 32]))


def _escape_link(root):
    outside = root.parent / "outside.onnx"
    outside.write_bytes((root / "model.onnx").read_bytes())
    (root / "model.onnx").unlink()
    os.symlink(outside, root / "model.onnx")


def _not_json(root):
    (root / "manifest.json").write_text("{not json")


def _no_models(root):
    _edit(root, lambda d: d.update(models={}))


def _traversal(root):
    _edit(root, lambda d: d["models"]["fp32"].update(file="../model.onnx"))


def _inputs_renamed(root):
    _edit(root, lambda d: d["models"]["fp32"]["inputs"][0].update(name="x"))


@pytest.mark.parametrize(("break_it", "message"), [
    (_tamper_sha, "bundle file model.onnx does not match its sha256 in manifest.json"),
    (_truncate, r"bundle file model.onnx is \d+ bytes but manifest.json says \d+"),
    (_flip_byte, "bundle file model.onnx does not match its sha256"),
    (_schema, r"bundle schema v99 is newer than this edgekit \(v2\)"),
    (_no_golden, "bundle file golden/.* listed in manifest.json is missing"),
    (_imgsz_mismatch, "model.onnx input 'images' is 64x64 but the manifest's letterbox imgsz is 32x32"),
    (_escape_link, "bundle file model.onnx points outside the bundle"),
    (_not_json, "cannot parse .*manifest.json"),
    (_no_models, "lists no models"),
    (_traversal, "must be a relative path inside the bundle"),
    (_inputs_renamed, r"model.onnx has inputs \['images'\] but manifest.json says \['x'\]"),
])
def test_a_broken_bundle_is_one_clear_line(bundle_dir, break_it, message):
    break_it(bundle_dir)
    with pytest.raises(ModelError, match=message) as e:
        Bundle.open(bundle_dir)
    assert "\n" not in str(e.value) and "re-export" in str(e.value) or "upgrade" in str(e.value)


def test_manifest_without_golden_entry_says_so_when_asked(tmp_path):
    b = Bundle.open(write_test_bundle(tmp_path / "b", golden=False))
    with pytest.raises(ModelError, match="has no golden set"):
        b.golden()


@pytest.mark.parametrize("path,message", [("missing", "does not exist"), ("file.txt", "is not a directory")])
def test_wrong_paths(tmp_path, path, message):
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(ModelError, match=message):
        Bundle.open(tmp_path / path)


def test_unknown_role_names_the_roles_there(bundle_dir):
    with pytest.raises(ModelError, match=r"has no 'int8_qdq' model \(it has fp32\); re-export with .*--int8"):
        Bundle.open(bundle_dir).model("int8_qdq")


def test_detector_from_bundle_runs_onnxruntime(bundle_dir):
    pytest.importorskip("onnxruntime")
    with Bundle.open(bundle_dir).detector("onnxruntime") as det:
        dets = det(np.zeros((64, 128, 3), np.uint8))
    assert sorted(dets.class_ids.tolist()) == [0, 1]


@pytest.mark.parametrize(("backend", "precision", "message"), [
    ("torch", "fp32", "the torch backend runs checkpoints, not bundles"),
    ("onnxruntime", "fp16", "backend 'onnxruntime' cannot run precision 'fp16'"),
    ("nope", "fp32", "cannot run precision|unknown runner backend"),
])
def test_detector_refuses_what_the_bundle_cannot_run(bundle_dir, backend, precision, message):
    with pytest.raises(ConfigError, match=message):
        Bundle.open(bundle_dir).detector(backend, precision)


def test_verify_hashes_every_file_once_per_open(bundle_dir):
    before = {p: file_sha256(p) for p in bundle_dir.rglob("*") if p.is_file()}
    Bundle.open(bundle_dir)
    assert before == {p: file_sha256(p) for p in bundle_dir.rglob("*") if p.is_file()}  # open writes nothing
