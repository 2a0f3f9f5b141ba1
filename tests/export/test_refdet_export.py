"""``edgekit export`` of a RefDet checkpoint: two graphs, parity per graph, INT8 of the per-frame graph
only, golden data for both, the default target in the bundle, and the device detector on the result.

The model is the contract-exact toy of tests/export/refdet_toy.py (real torch modules, real ONNX,
real ONNX Runtime); only loading its checkpoint is patched. The data is a real synthetic RefDet set.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from edgekit.cli.main import cli  # noqa: E402
from edgekit.core.errors import DataError  # noqa: E402
from tests.export import refdet_toy  # noqa: E402


@pytest.fixture(scope="module")
def refdet_data(tmp_path_factory) -> Path:
    from edgekit.data.synth.refdet import generate_refdet_dataset

    return generate_refdet_dataset(tmp_path_factory.mktemp("refdet_data") / "synth", n_train=2, n_test=2, frames=10,
                                   imgsz=64, progress=False)


@pytest.fixture(scope="module")
def exported(tmp_path_factory, refdet_data):
    """One INT8 export of the toy through the CLI (module scope: the pieces below read it)."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("refdet_export")
    ckpt = root / "toy_refdet.pt"
    refdet_toy.install(mp, ckpt)
    out = root / "bundle"
    try:
        res = CliRunner().invoke(cli, ["export", str(ckpt), "--data", str(refdet_data), "--int8", "--target", "x86",
                                       "--calib-size", "8", "--val-size", "8", "--out", str(out), "--quiet"])
    finally:
        mp.undo()
    assert res.exit_code == 0, (res.output, res.exception)
    return out


def test_bundle_has_both_graphs_parity_golden_and_the_default_target(exported, refdet_data):
    from edgekit.core.manifest import load_manifest
    from edgekit.core.parity import read_golden

    m = load_manifest(exported)
    assert m.task == "refdet" and m.classes == ["target"] and m.postprocess.task == "detect"
    assert m.postprocess.iou == 0.5  # the torch predictor's NMS IoU by default
    assert set(m.models) == {"reference_encoder", "fp32", "int8_qdq"}
    assert [t.name for t in m.models["fp32"].inputs] == ["images", "embedding"]
    assert m.models["reference_encoder"].inputs[0].shape == [1, 3, refdet_toy.REF_SIZE, refdet_toy.REF_SIZE]
    assert m.calibration.model == "fp32"
    assert m.models["reference_encoder"].engine_precision == "fp16" and m.models["fp32"].engine_precision is None
    test_video = sorted((refdet_data / "test" / "samples").iterdir())[0]
    assert m.references == [f"references/{p.name}" for p in sorted((test_video / "object_images").iterdir())]
    for ref in m.references:
        assert (exported / ref).read_bytes() == (test_video / "object_images" / Path(ref).name).read_bytes()

    parity = json.loads((exported / "onnx_parity.json").read_text())
    assert set(parity["graphs"]) == {"reference_encoder", "fp32"} and all(g["passed"] for g in parity["graphs"].values())
    assert parity["graphs"]["fp32"]["detections"]["n_ref"] > 0  # detections compared, not vacuous
    golden = read_golden(exported / "golden")
    assert golden.roles == ["reference_encoder", "fp32"]
    assert golden.tolerance("fp16", "reference_encoder").atol == 1e-2  # the encoder's own, not the detectors' 0.5
    assert set(golden.cases_for("fp32")[0].inputs) == {"images", "embedding"}
    assert set(golden.cases_for("fp32")[0].outputs) == {"fp32", "int8"}
    assert set(golden.cases_for("reference_encoder")[0].outputs) == {"fp32"}  # never INT8
    report = json.loads((exported / "export_report.json").read_text())
    acc = report["int8"]["accuracy"]
    assert acc["fp32"]["n_images"] == 8 and 0.0 <= acc["fp32"]["map50"] <= 1.0  # scored against RefDet boxes


def test_int8_quantizes_the_frame_graph_only_and_keeps_what_reads_the_embedding_float(exported):
    import onnx

    def ops(name):
        return [n.op_type for n in onnx.load(str(exported / name)).graph.node]

    assert "QuantizeLinear" not in ops("reference_encoder.onnx")
    qdq = onnx.load(str(exported / "model.int8.qdq.onnx")).graph
    assert "QuantizeLinear" in [n.op_type for n in qdq.node]
    report = json.loads((exported / "export_report.json").read_text())
    excluded = set(report["int8"]["excluded_nodes"])
    fp32 = onnx.load(str(exported / "model.onnx")).graph
    readers = {n.name for n in fp32.node if "embedding" in n.input}
    assert readers and readers <= excluded  # the fusion with the target stays float
    convs = [n.name for n in fp32.node if n.op_type == "Conv"]
    assert convs[0] not in excluded and convs[-1] in excluded  # the image-only backbone is quantized, the head not


def test_device_detector_runs_the_bundle_and_matches_the_host_embedding(exported):
    from edgekit.core.parity import read_golden
    from edgekit.deploy.bundle import Bundle

    bundle = Bundle.open(exported)
    for precision in ("fp32", "int8"):
        report = bundle.check_parity("onnxruntime", precision)
        assert report["passed"], (precision, report["graphs"])
        assert set(report["graphs"]) == {"fp32", "reference_encoder"}
    golden = read_golden(exported / "golden")
    first = golden.cases_for("fp32")[0]
    with bundle.detector() as det:
        assert det.target["source"] == "bundle default"
        # the default target's embedding on the device is the one export fed the first (same video) frame
        np.testing.assert_allclose(det.embedding, first.inputs["embedding"], atol=1e-5)
        dets = det(np.full((48, 80, 3), 120, np.uint8))
        assert dets.is_obb and (len(dets) == 0 or (dets.boxes[:, 4] == 0).all())


def test_data_errors_are_one_line(monkeypatch, tmp_path, refdet_data):
    ckpt = tmp_path / "toy.pt"
    refdet_toy.install(monkeypatch, ckpt)
    yolo = tmp_path / "yolo"
    yolo.mkdir()
    (yolo / "data.yaml").write_text("names: [a]\nval: images/val\n")
    images = tmp_path / "imgs"
    images.mkdir()
    for args, text in (([], "a RefDet export needs its dataset"),
                       (["--calib-data", str(images)], "--calib-data is an image folder"),
                       (["--data", str(yolo)], "is a YOLO dataset, not RefDet videos"),
                       (["--data", str(tmp_path / "nope")], "does not exist"),
                       (["--data", str(images)], "is not a RefDet root")):
        res = CliRunner().invoke(cli, ["export", str(ckpt), *args, "--out", str(tmp_path / "b")])
        assert res.exit_code == 1 and isinstance(res.exception, DataError), (args, res.output, res.exception)
        assert text in str(res.exception) and "\n" not in str(res.exception), str(res.exception)
        assert not (tmp_path / "b").exists()


def test_dynamic_and_tile_are_refused_in_one_line(monkeypatch, tmp_path, refdet_data):
    from edgekit.core.errors import ConfigError

    ckpt = tmp_path / "toy.pt"
    refdet_toy.install(monkeypatch, ckpt)
    for args in (["--dynamic"], ["--tile", "32"]):
        res = CliRunner().invoke(cli, ["export", str(ckpt), "--data", str(refdet_data), *args,
                                       "--out", str(tmp_path / "b")])
        assert res.exit_code == 1 and isinstance(res.exception, ConfigError), (args, res.output)
        assert f"{args[0]} is not available for RefDet" in str(res.exception)


def test_refdet_checkpoint_is_recognised_without_unpickling(tmp_path):
    from edgekit.export.refdet import is_refdet_checkpoint

    torch.save({"edgekit_task": "refdet", "model": {}}, str(tmp_path / "r.pt"))
    torch.save({"model": {}, "train_args": {"task": "obb"}}, str(tmp_path / "o.pt"))
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    assert is_refdet_checkpoint(tmp_path / "r.pt")
    assert not is_refdet_checkpoint(tmp_path / "o.pt") and not is_refdet_checkpoint(tmp_path / "junk.pt")


def test_a_real_refdet_checkpoint_exports_and_runs_on_the_device_detector(tmp_path, refdet_data):
    """The model of edgekit.train.fewshot (tiny: a 1-block random ViT, yolov8n at 64 px) through the real loader."""
    pytest.importorskip("timm")
    pytest.importorskip("ultralytics")
    from edgekit.deploy.bundle import Bundle
    from edgekit.train.fewshot.checkpoint import save_refdet_checkpoint
    from edgekit.train.fewshot.model import RefDetModel, RefDetModelConfig

    torch.manual_seed(0)
    cfg = RefDetModelConfig(encoder_weights="random", encoder_kwargs={"depth": 1}, ref_size=28)
    ckpt = save_refdet_checkpoint(tmp_path / "best.pt", RefDetModel(cfg, load_weights=False), imgsz=64)
    out = tmp_path / "bundle"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--data", str(refdet_data), "--out", str(out), "--quiet"])
    assert res.exit_code == 0, (res.output, res.exception)
    parity = json.loads((out / "onnx_parity.json").read_text())
    assert all(g["passed"] for g in parity["graphs"].values())
    bundle = Bundle.open(out)
    assert bundle.model("reference_encoder").inputs[0].shape == [1, 3, 28, 28]
    assert bundle.check_parity("onnxruntime", "fp32")["passed"]
    # the device detector computes what the torch predictor computes: the same target embedding and raw outputs
    from edgekit.deploy.refdet import read_reference_images
    from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint
    from edgekit.train.fewshot.predict import RefDetPredictor

    refs = read_reference_images([out / r for r in bundle.manifest.references])
    frame = np.random.default_rng(0).integers(0, 255, (48, 96, 3), dtype=np.uint8)
    predictor = RefDetPredictor(load_refdet_checkpoint(ckpt)[0], 64)
    with bundle.detector() as det:
        assert det.embedding.shape == (1, cfg.embed_dim)
        np.testing.assert_allclose(det.set_target(refs), predictor.set_target(refs).numpy(), atol=1e-5)
        feed, _ = det.prepare(frame)
        np.testing.assert_allclose(det.infer(feed)["output0"], predictor.raw(frame)[0], atol=1e-3, rtol=1e-4)


def test_a_run_directory_exports_from_the_dataset_its_config_names(monkeypatch, tmp_path, refdet_data):
    import yaml

    run = refdet_data.parent / "runs" / "refdet-run"  # data: as training was given it, relative to where it ran
    (run / "checkpoints").mkdir(parents=True)
    (run / "reports").mkdir()
    refdet_toy.install(monkeypatch, run / "checkpoints" / "best.pt")
    (run / "reports" / "config_resolved.yaml").write_text(yaml.safe_dump({"data": "nowhere", "imgsz": 64}))
    res = CliRunner().invoke(cli, ["export", str(run), "--target", "x86", "--quiet"])
    assert res.exit_code == 1 and isinstance(res.exception, DataError)
    assert "the dataset (data: in" in str(res.exception) and "nowhere does not exist" in str(res.exception)
    (run / "reports" / "config_resolved.yaml").write_text(yaml.safe_dump({"data": refdet_data.name, "imgsz": 64}))
    res = CliRunner().invoke(cli, ["export", str(run), "--target", "x86", "--quiet"])
    assert res.exit_code == 0, (res.output, res.exception)
    from edgekit.core.manifest import load_manifest

    m = load_manifest(run / "bundle")
    assert m.task == "refdet" and m.provenance.run_id == "refdet-run" and len(m.references) >= 1


def test_out_inside_the_dataset_is_refused_before_any_work(monkeypatch, tmp_path, refdet_data):
    """A bundle written into --data would sit among the videos it was calibrated on (eval refuses it too)."""
    ckpt = tmp_path / "toy.pt"
    refdet_toy.install(monkeypatch, ckpt)
    out = refdet_data / "bundle"
    res = CliRunner().invoke(cli, ["export", str(ckpt), "--data", str(refdet_data), "--out", str(out), "--quiet"])
    assert res.exit_code == 1 and isinstance(res.exception, DataError), (res.output, res.exception)
    assert "is inside the source" in str(res.exception) and "\n" not in str(res.exception)
    assert not out.exists() and not any(p.name.startswith(".") for p in refdet_data.iterdir()
                                        if p.name != ".edgekit-output.json")
