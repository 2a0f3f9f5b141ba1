"""Bundle manifest: round trip on real files, and one test per failure the device can meet."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from edgekit.core.errors import ModelError
from edgekit.core.letterbox import LetterboxSpec
from edgekit.core.manifest import (
    MANIFEST_NAME,
    BundleManifest,
    CalibrationEntry,
    GoldenEntry,
    ModelEntry,
    Provenance,
    TensorSpec,
    describe_files,
    file_sha256,
    load_manifest,
    verify_bundle_files,
    write_manifest,
)
from edgekit.core.postprocess import PostprocessSpec


@pytest.fixture
def bundle(tmp_path: Path):
    """A bundle directory with real (small) files and a manifest describing them."""
    root = tmp_path / "bundle"
    root.mkdir()
    (root / "model.onnx").write_bytes(b"fake onnx bytes" * 100)
    (root / "model.int8.qdq.onnx").write_bytes(b"qdq" * 50)
    (root / "calib.cache").write_bytes(b"TRT-8501-EntropyCalibration2\n")
    (root / "calib.json").write_text('{"images": 8}')
    names = ["model.onnx", "model.int8.qdq.onnx", "calib.cache", "calib.json"]
    io = {"inputs": [TensorSpec(name="images", shape=[1, 3, 64, 64])],
          "outputs": [TensorSpec(name="output0", shape=["batch", 8, 84])]}
    manifest = BundleManifest(
        task="obb",
        classes=["plane", "ship", "car"],
        models={"fp32": ModelEntry(file="model.onnx", opset=17, **io),
                "int8_qdq": ModelEntry(file="model.int8.qdq.onnx", **io)},
        preprocess=LetterboxSpec(imgsz=64),
        postprocess=PostprocessSpec(conf=0.1),
        files=describe_files(root, names),
        calibration=CalibrationEntry(cache="calib.cache", sidecar="calib.json", method="entropy2", n_images=8),
        golden=GoldenEntry(n=2, tolerances={"atol": 1e-3, "min_iou": 0.9}),
        provenance=Provenance(run_id="r1", git_sha="abc123", versions={"edgekit": "0.1.0"}, source_checkpoint="best.pt"),
    )
    write_manifest(manifest, root)
    return root, manifest


def edit_manifest(root: Path, change) -> None:
    data = json.loads((root / MANIFEST_NAME).read_text())
    change(data)
    (root / MANIFEST_NAME).write_text(json.dumps(data))


def test_round_trip(bundle):
    root, manifest = bundle
    assert load_manifest(root) == manifest
    assert load_manifest(root / MANIFEST_NAME) == manifest
    verify_bundle_files(root, manifest)
    assert not [p for p in root.iterdir() if p.name.startswith(".")]  # no temp files left behind
    assert load_manifest(root).preprocess.imgsz == (64, 64)


def test_defaults_and_created_time():
    m = BundleManifest(task="detect", classes=["a"], models={})
    assert m.schema_version == 2 and m.postprocess.iou == 0.7
    assert m.provenance.created_utc.endswith("Z")


def test_file_sha256_streams(tmp_path):
    data = bytes(range(256)) * 5000  # > one chunk with a small chunk size
    (tmp_path / "f").write_bytes(data)
    assert file_sha256(tmp_path / "f", chunk_size=1000) == hashlib.sha256(data).hexdigest()


def test_newer_schema_is_refused(bundle):
    root, _ = bundle
    edit_manifest(root, lambda d: d.update(schema_version=3, new_section={"x": 1}))
    with pytest.raises(ModelError, match=r"bundle schema v3 is newer than this edgekit \(v2\); upgrade edgekit"):
        load_manifest(root)
    with pytest.raises(ModelError, match="newer"):
        BundleManifest(schema_version=3, task="obb", classes=[], models={})


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d.update(colour="red"), "unknown key 'colour' in .*manifest.json"),
    (lambda d: d["models"]["fp32"].update(fiel="x"), r"unknown key 'models.fp32.fiel'.*did you mean 'models.fp32.file'"),
    (lambda d: d["postprocess"].update(confs=0.3), "did you mean 'postprocess.conf'"),
    (lambda d: d.update(task="segment"), "invalid value for 'task'"),
    (lambda d: d.update(schema_version="one"), "schema_version must be an integer"),
    (lambda d: d.update(schema_version=0), "unknown bundle schema v0"),
    (lambda d: d["models"]["fp32"].update(file="../../etc/passwd"), "models.fp32.file"),
    (lambda d: d["files"].update({"/abs": d["files"]["calib.json"]}), "files"),
])
def test_bad_manifest_names_the_key(bundle, change, message):
    root, _ = bundle
    edit_manifest(root, change)
    with pytest.raises(ModelError, match=message):
        load_manifest(root)


@pytest.mark.parametrize(("text", "message"), [("{not json", "cannot parse"), ("[1, 2]", "JSON object")])
def test_unparsable_manifest(bundle, text, message):
    root, _ = bundle
    (root / MANIFEST_NAME).write_text(text)
    with pytest.raises(ModelError, match=f"{message}.*re-export the bundle|manifest.json.*{message}"):
        load_manifest(root)


def test_missing_manifest(tmp_path):
    with pytest.raises(ModelError, match="manifest.json does not exist"):
        load_manifest(tmp_path)


def test_manifest_that_is_a_directory_is_named_as_such(tmp_path):
    (tmp_path / MANIFEST_NAME).mkdir()
    with pytest.raises(ModelError, match="manifest.json is a directory"):
        load_manifest(tmp_path)


@pytest.mark.parametrize(("damage", "message"), [
    (lambda r: (r / "model.int8.qdq.onnx").unlink(), "model.int8.qdq.onnx listed in manifest.json is missing"),
    (lambda r: (r / "calib.cache").write_bytes(b"other"), "calib.cache is 5 bytes"),
    (lambda r: (r / "model.onnx").write_bytes(b"x" * 1500), "model.onnx does not match its sha256"),
])
def test_verify_bundle_files_names_the_file(bundle, damage, message):
    root, manifest = bundle
    damage(root)
    with pytest.raises(ModelError, match=f"{message}.*re-export the bundle"):
        verify_bundle_files(root, manifest)


def test_verify_requires_hashes_for_referenced_files(bundle):
    root, manifest = bundle
    files = {k: v for k, v in manifest.files.items() if k != "calib.json"}
    with pytest.raises(ModelError, match="references calib.json but lists no sha256"):
        verify_bundle_files(root, manifest.model_copy(update={"files": files}))


def test_describe_files_missing(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        describe_files(tmp_path, ["nope.onnx"])


def test_models_reject_paths_outside_bundle():
    with pytest.raises(ValidationError, match="relative path"):
        ModelEntry(file="/tmp/model.onnx", inputs=[], outputs=[])
