"""RefDetDetector on a real two-graph bundle through ONNX Runtime (device side: runs on Python 3.8, no torch)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from tests.deploy.refdet_bundles import BLUE, CELL, RED, frame_with, photo, write_refdet_bundle  # noqa: E402


@pytest.fixture(scope="module")
def refdet_bundle(tmp_path_factory):
    return write_refdet_bundle(tmp_path_factory.mktemp("refdet") / "bundle")


def _centre(dets):
    assert len(dets) == 1, dets
    return tuple(np.round(dets.boxes[0, :2]).astype(int))


def test_bundle_detector_is_refdet_with_the_default_target_and_set_target_changes_what_is_found(refdet_bundle):
    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.refdet import RefDetDetector

    frame = frame_with(RED, (1, 2))
    frame[3 * CELL:, :CELL] = BLUE  # a blue cell too: which one is found depends on the target
    with Bundle.open(refdet_bundle).detector("onnxruntime") as det:
        assert isinstance(det, RefDetDetector)
        assert det.target["source"] == "bundle default" and det.target["n_references"] == 2
        red = det(frame)  # the bundle's references are red
        assert _centre(red) == (2 * CELL + CELL // 2, CELL + CELL // 2)
        assert red.boxes[0, 4] == 0.0 and red.class_ids.tolist() == [0] and red.is_obb  # axis-aligned, class 0
        emb = det.set_target([photo(BLUE)])
        assert emb.shape == (1, 8) and abs(float(np.linalg.norm(emb)) - 1.0) < 1e-5
        assert det.target["source"] == "custom" and det.target["n_references"] == 1
        assert _centre(det(frame)) == (CELL // 2, 3 * CELL + CELL // 2)
        det.reset_target()
        assert _centre(det(frame)) == _centre(red)


def test_boxes_map_back_to_frame_pixels(refdet_bundle):
    import cv2

    from edgekit.deploy.bundle import Bundle

    big = cv2.resize(frame_with(RED, (2, 1)), (128, 128), interpolation=cv2.INTER_NEAREST)  # letterbox ratio 0.5
    with Bundle.open(refdet_bundle).detector() as det:
        dets = det(big)
    assert _centre(dets) == (2 * (CELL + CELL // 2), 2 * (2 * CELL + CELL // 2))
    assert dets.boxes[0, 2] == pytest.approx(2 * (CELL - 2.0))


def test_set_target_averages_l2_normalised_embeddings_and_refuses_bad_photos(refdet_bundle):
    from edgekit.core.errors import DataError
    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.refdet import combine_embeddings

    with Bundle.open(refdet_bundle).detector() as det:
        a, b = det.encode(photo(RED)), det.encode(photo(BLUE))
        both = det.set_target([photo(RED), photo(BLUE)])
        mean = (a + b) / 2
        np.testing.assert_allclose(both, mean / np.linalg.norm(mean), atol=1e-6)
        np.testing.assert_allclose(combine_embeddings([3 * a, b]), both, atol=1e-6)  # each one normalised first
        for bad, match in (([], "got 0 reference photos"), ([photo(RED)] * 4, "got 4 reference photos"),
                           ([photo(RED), np.zeros((5, 5), np.float32)], "reference photo 2: frame has dtype float32")):
            with pytest.raises(DataError, match=match):
                det.set_target(bad)
        np.testing.assert_allclose(det.embedding, both)  # a refused target leaves the old one


def test_golden_check_covers_both_graphs_and_can_fail(refdet_bundle, tmp_path):
    import shutil

    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.runners.onnxruntime import OnnxRuntimeRunner

    bundle = Bundle.open(refdet_bundle)
    report = bundle.check_parity("onnxruntime", "fp32")
    assert report["passed"] and set(report["graphs"]) == {"fp32", "reference_encoder"}
    assert report["graphs"]["reference_encoder"]["n_images"] == 2 and report["graphs"]["fp32"]["n_images"] == 2
    assert report["detections"]["n_ref"] >= 1  # the frame graph's detections were compared, not vacuous
    assert report["graphs"]["reference_encoder"]["detections"] is None
    with OnnxRuntimeRunner(bundle.model_path("reference_encoder")) as enc:
        assert bundle.check_golden(enc, "fp32")["role"] == "reference_encoder"  # picked by the runner's inputs

    # a bundle whose encoder computes something else fails the check
    bad = tmp_path / "bad"
    shutil.copytree(refdet_bundle, bad)
    import onnx
    from onnx import numpy_helper

    from tests.deploy.refdet_bundles import encoder_graph

    m = onnx.load(str(encoder_graph(bad / "reference_encoder.onnx")))
    proj = next(i for i in m.graph.initializer if i.name == "proj")
    proj.CopyFrom(numpy_helper.from_array(-numpy_helper.to_array(proj), "proj"))
    onnx.save(m, str(bad / "reference_encoder.onnx"))
    bad_bundle = Bundle.open(bad, verify=False)
    report = bad_bundle.check_parity("onnxruntime", "fp32")
    assert not report["passed"] and not report["graphs"]["reference_encoder"]["passed"]
    assert report["graphs"]["fp32"]["passed"]


def test_bundle_open_verifies_the_reference_photos(refdet_bundle, tmp_path):
    import shutil

    from edgekit.core.errors import ModelError
    from edgekit.deploy.bundle import Bundle

    bad = tmp_path / "swapped"
    shutil.copytree(refdet_bundle, bad)
    (bad / "references" / "img_2.png").write_bytes((bad / "references" / "img_1.png").read_bytes())
    with pytest.raises(ModelError, match="references/img_2.png"):
        Bundle.open(bad)


def test_refdet_refuses_tiling_and_int8_encoder(refdet_bundle):
    from edgekit.core.errors import ConfigError
    from edgekit.deploy.bundle import Bundle

    bundle = Bundle.open(refdet_bundle)
    with pytest.raises(ConfigError, match="not available for RefDet"):
        bundle.detector(tile=32)
    with pytest.raises(ConfigError, match="does not run INT8"):
        bundle.runner("onnxruntime", "int8", role="reference_encoder")


def test_pipeline_runs_a_refdet_detector_unchanged(refdet_bundle):
    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.pipeline import Pipeline

    frames = [frame_with(RED, (i % 4, 1)) for i in range(6)]
    with Bundle.open(refdet_bundle).detector() as det:
        got = [r.detections for r in Pipeline(det).run(frames)]
    assert [_centre(d)[1] for d in got] == [(i % 4) * CELL + CELL // 2 for i in range(6)]


def test_tensorrt_builds_the_encoder_fp16_from_its_own_graph(refdet_bundle):
    """The TensorRT build inputs: the encoder from reference_encoder.onnx at FP16 with its own static profile."""
    from edgekit.core.errors import ConfigError
    from edgekit.deploy.bundle import Bundle, encoder_precision
    from edgekit.deploy.tensorrt import EngineBuildOptions
    from edgekit.deploy.tensorrt.from_bundle import bundle_build_inputs

    bundle = Bundle.open(refdet_bundle)
    assert encoder_precision("tensorrt") == "fp16" and encoder_precision("onnxruntime") == "fp32"
    entry = bundle.model("reference_encoder")
    assert entry.engine_precision == "fp16" and encoder_precision("tensorrt", entry) == "fp16"
    assert encoder_precision("tensorrt", entry.model_copy(update={"engine_precision": "fp32"})) == "fp32"
    onnx_path, resolved, cache = bundle_build_inputs(bundle, EngineBuildOptions(precision="fp16"), 8,
                                                     role="reference_encoder")
    assert onnx_path.name == "reference_encoder.onnx" and cache is None
    assert resolved.profiles["refs"].opt == (1, 3, 32, 32)
    frame_path, frame_opts, _ = bundle_build_inputs(bundle, EngineBuildOptions(precision="fp16"), 8)
    assert frame_path.name == "model.onnx" and set(frame_opts.profiles) == {"images", "embedding"}
    with pytest.raises(ConfigError, match="not built INT8"):
        bundle_build_inputs(bundle, EngineBuildOptions(precision="int8"), 8, role="reference_encoder")


def test_the_encoder_is_judged_on_its_own_tolerance(refdet_bundle, tmp_path):
    """An embedding 0.02 off everywhere passes the detectors' FP32 tolerance (atol 0.05) but not the encoder's."""
    import shutil

    from edgekit.core.parity import read_golden
    from edgekit.deploy.bundle import Bundle

    bad = tmp_path / "off"
    shutil.copytree(refdet_bundle, bad)
    golden = read_golden(bad / "golden")
    assert golden.tolerance("fp32", "reference_encoder").atol == 1e-3 and golden.tolerance("fp32", "fp32").atol == 0.05
    for f in (bad / "golden").glob("fp32_*.embedding.npy"):
        np.save(str(f), np.load(str(f)) + 0.02)
    report = Bundle.open(bad, verify=False).check_parity("onnxruntime", "fp32")
    assert not report["graphs"]["reference_encoder"]["passed"] and report["graphs"]["fp32"]["passed"]
    assert report["graphs"]["reference_encoder"]["tolerance"]["atol"] == 1e-3


def test_to_frame_unletterboxes_and_clips_like_the_torch_predictor():
    from edgekit.core.detections import Detections
    from edgekit.core.letterbox import LetterboxInfo
    from edgekit.deploy.refdet import to_frame

    info = LetterboxInfo(0.5, (0.0, 16.0), (64, 128))  # a 64x128 frame in a 64x64 input
    dets = Detections(np.array([[4.0, 30.0, 12.0, 8.0, 0.0]]), np.array([0.9]), np.array([0]))
    out = to_frame(dets, info)  # x from -2..10 net px -> -4..20 frame px, clipped to 0..20
    np.testing.assert_allclose(out.boxes, [[10.0, 28.0, 20.0, 16.0, 0.0]])
    assert len(to_frame(Detections.empty(), info)) == 0
