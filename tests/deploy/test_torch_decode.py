"""The torch runner's device decode (edgekit/deploy/runners/torch_decode.py) gives exactly the numpy
decode's detections: on hand-made raw tables, on a real model's output, through the Detector, and
on overflow (the raw output handed back); so does its trim-only form (candidates on the device,
suppression on the host). CPU tensors here; the CUDA graph cases run under -m gpu."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from edgekit.core.errors import ConfigError
from edgekit.core.letterbox import LetterboxSpec, letterbox
from edgekit.core.postprocess import (
    CANDIDATE_OUTPUT,
    DECODED_OUTPUT,
    PostprocessSpec,
    decode_obb,
    detections_from_candidates,
    detections_from_rows,
)
from edgekit.deploy.detector import Detector
from tests.deploy.obb_tables import raw_table as _raw
from tests.deploy.obb_tables import same_detections as _same

torch = pytest.importorskip("torch")
from edgekit.deploy.runners.torch import TorchRunner  # noqa: E402
from edgekit.deploy.runners.torch_decode import decode_obb_rows, trim_obb_rows  # noqa: E402

IMGSZ = 96
SPEC = LetterboxSpec(imgsz=IMGSZ)


# thresholds, max_det, class-agnostic, and max_nms below the candidate count
POSTS = [PostprocessSpec(conf=0.25), PostprocessSpec(conf=0.1, iou=0.5, max_det=20),
         PostprocessSpec(conf=0.3, agnostic=True), PostprocessSpec(conf=0.2, max_nms=40)]


@pytest.mark.parametrize("post", POSTS)
def test_device_decode_equals_numpy_decode(post):
    rng = np.random.default_rng(0)
    for anchors in (7, 300, 2100):
        raw = _raw(rng, anchors)
        rows = decode_obb_rows(torch.from_numpy(raw).half(), post, 4096).numpy()
        assert rows[0, 1] == 0 and rows.shape == (post.max_det + 2, 7)
        want = decode_obb(raw, post)[0]
        assert len(want) > 0 and _same(detections_from_rows(rows), want)


@pytest.mark.parametrize("post", POSTS)
def test_device_trim_then_host_suppression_equals_numpy_decode(post):
    rng = np.random.default_rng(0)
    for anchors in (7, 300, 2100):
        raw = _raw(rng, anchors)
        rows = trim_obb_rows(torch.from_numpy(raw).half(), post, 4096).numpy()
        k = min(4096, anchors, post.max_nms)
        assert rows.shape == (k + 1, 7) and rows[0, 0] == min(rows[0, 2], k)
        if rows[0, 2] > k:  # more candidates than rows (here: max_nms=40): the raw output must be decoded
            assert rows[0, 1] == 1
            continue
        want = decode_obb(raw, post)[0]
        assert len(want) > 0 and _same(detections_from_candidates(rows[: int(rows[0, 0]) + 1], post), want)
        cols = np.flatnonzero(raw[4:-1].max(0) > post.conf)  # every candidate, in anchor order
        body = rows[1:1 + len(cols)]
        assert np.array_equal(body[:, 0], raw[0, cols]) and np.array_equal(body[:, 6], raw[4:-1, cols].argmax(0))


def test_trim_overflow_is_flagged_and_refused_by_the_host_side():
    raw = _raw(np.random.default_rng(1), 2100)
    rows = trim_obb_rows(torch.from_numpy(raw), PostprocessSpec(conf=0.1), 16).numpy()
    assert rows[0, 1] == 1 and rows[0, 2] > 16 and rows[0, 0] == 16
    with pytest.raises(ValueError, match="not OBB candidate rows"):
        detections_from_candidates(rows, PostprocessSpec(conf=0.1))
    nothing = trim_obb_rows(torch.zeros(8, 50), PostprocessSpec(), 16).numpy()
    assert nothing[0].tolist() == [0] * 7 and len(detections_from_candidates(nothing[:1], PostprocessSpec())) == 0


def test_decode_has_static_shapes_and_never_reads_values_back():
    """What CUDA graph capture needs: on the meta device (shapes only, no data) a nonzero, a boolean
    index or an .item() would raise; the decode runs through and gives the fixed result shape."""
    raw = torch.empty(10, 8400, dtype=torch.float16, device="meta")
    assert decode_obb_rows(raw, PostprocessSpec(max_det=50), 256).shape == (52, 7)
    assert trim_obb_rows(raw, PostprocessSpec(max_det=50), 256).shape == (257, 7)


def test_too_many_candidates_is_flagged_unless_max_det_is_reached():
    raw = _raw(np.random.default_rng(1), 2100)
    few = decode_obb_rows(torch.from_numpy(raw), PostprocessSpec(conf=0.1), 16).numpy()
    assert few[0, 1] == 1 and few[0, 2] > 16  # overflow: more candidates than examined, fewer than max_det kept
    with pytest.raises(ValueError, match="not decoded OBB rows"):
        detections_from_rows(few)
    post = PostprocessSpec(conf=0.1, max_det=3)  # the first 16 candidates already give max_det survivors
    rows = decode_obb_rows(torch.from_numpy(raw), post, 16).numpy()
    assert rows[0, 1] == 0 and _same(detections_from_rows(rows), decode_obb(raw, post)[0])


@pytest.fixture(scope="module")
def obb_model():
    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import OBBModel

    torch.manual_seed(0)
    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False).eval()
    for seq in model.model[-1].cv3:  # spread the fresh class branch: some anchors pass conf, most do not
        for p in seq.parameters():
            p.data.normal_(0, 0.3)
    return model


@pytest.fixture
def frames():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 256, (70, 120, 3), dtype=np.uint8) for _ in range(3)]


def test_detector_with_device_decode_equals_host_decode_of_the_same_output(obb_model, frames):
    post = PostprocessSpec(conf=0.6)
    raw_runner = TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC)
    dec_runner = TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, decode=post)
    host, device = Detector(raw_runner, letterbox=SPEC, postprocess=post), Detector(dec_runner, letterbox=SPEC,
                                                                                   postprocess=post)
    with host, device:
        for f in frames:
            feed = {"images": letterbox(f, SPEC)[0][None]}
            assert DECODED_OUTPUT in dec_runner.infer(feed)
            a, b = host(f), device(f)
            assert len(a) > 0 and _same(a, b)
        # overflow: fewer candidates examined than exist -> the raw output comes back, decoded on the host
        dec_runner.max_candidates = 2
        assert "output0" in dec_runner.infer({"images": letterbox(frames[0], SPEC)[0][None]})
        assert _same(device(frames[0]), host(frames[0]))


def test_detector_with_device_trim_equals_host_decode_of_the_same_output(obb_model, frames):
    post = PostprocessSpec(conf=0.6)
    raw_runner = TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC)
    trim_runner = TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, decode=post, device_nms=False)
    host, device = Detector(raw_runner, letterbox=SPEC, postprocess=post), Detector(trim_runner, letterbox=SPEC,
                                                                                   postprocess=post)
    with host, device:
        for f in frames:
            out = trim_runner.infer({"images": letterbox(f, SPEC)[0][None]})
            assert list(out) == [CANDIDATE_OUTPUT] and out[CANDIDATE_OUTPUT].shape[0] == out[CANDIDATE_OUTPUT][0, 0] + 1
            a, b = host(f), device(f)
            assert len(a) > 0 and _same(a, b)
        trim_runner.max_candidates = 2  # overflow: the raw output comes back, decoded on the host
        assert "output0" in trim_runner.infer({"images": letterbox(frames[0], SPEC)[0][None]})
        assert _same(device(frames[0]), host(frames[0])) and trim_runner.decode_fallbacks == 2  # both infers


def test_detector_refuses_a_runner_decoding_with_other_thresholds(obb_model):
    runner = TorchRunner(obb_model, uint8_input=SPEC, decode=PostprocessSpec(conf=0.5))
    with pytest.raises(ConfigError, match="other thresholds"):
        Detector(runner, letterbox=SPEC, postprocess=PostprocessSpec(conf=0.25))
    with pytest.raises(ConfigError, match="ProbIoU Fast-NMS only"):
        TorchRunner(obb_model, decode=PostprocessSpec(obb_iou="polygon"))
    from edgekit.deploy.tiling import TiledDetector

    post = PostprocessSpec(conf=0.5)
    det = Detector(TorchRunner(obb_model, uint8_input=SPEC, decode=post), letterbox=SPEC, postprocess=post)
    with pytest.raises(ConfigError, match="needs the model's raw outputs"):
        TiledDetector(det, tile=64, overlap=16)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_slots_decode_like_the_eager_runner_and_pipeline_keeps_order(obb_model, frames):
    from edgekit.deploy.pipeline import Pipeline, run_sequential

    post = PostprocessSpec(conf=0.6)
    kw = dict(device="cuda", uint8_input=SPEC, half=True, fuse=True)
    eager = Detector(TorchRunner(copy.deepcopy(obb_model), **kw), letterbox=SPEC, postprocess=post)
    graphed = Detector(TorchRunner(copy.deepcopy(obb_model), cuda_graph=True, decode=post, **kw), letterbox=SPEC,
                       postprocess=post)
    trimmed = Detector(TorchRunner(copy.deepcopy(obb_model), cuda_graph=True, decode=post, device_nms=False, slots=3,
                                   **kw), letterbox=SPEC, postprocess=post)
    many = frames * 4
    with eager, graphed, trimmed:
        want = [eager(f) for f in many]
        seq = [r.detections for r in run_sequential(graphed, many)]
        got = list(Pipeline(graphed).run(many))
        seq_trim = [r.detections for r in run_sequential(trimmed, many)]
        got_trim = list(Pipeline(trimmed).run(many))
    assert [r.index for r in got] == list(range(len(many))) == [r.index for r in got_trim]
    assert all(_same(a, b) for a, b in zip(seq, (r.detections for r in got)))
    # Each runner against itself: two runners' fp16 graphs may pick other conv algorithms, and this
    # untrained model's many near-threshold overlaps then flip (an H200 run saw it across runners; the
    # trim form equals the host decode of its own output, tested on the CPU above and in the bench).
    assert all(_same(a, b) for a, b in zip(seq_trim, (r.detections for r in got_trim)))
    # fp16 eager vs graph: same kernels up to algorithm choice, so the same detections in practice
    assert [len(d) for d in want] == [len(d) for d in seq]


@pytest.mark.slow
def test_compiled_decode_gives_the_same_detections(obb_model, frames):
    """compile="decode": the decode fused by torch.compile (inductor; ~30 s to compile on CPU)."""
    post = PostprocessSpec(conf=0.6)
    plain = Detector(TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, decode=post), letterbox=SPEC,
                     postprocess=post)
    compiled = Detector(TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, decode=post, compile="decode"),
                        letterbox=SPEC, postprocess=post)
    with plain, compiled:
        for f in frames:
            a, b = plain(f), compiled(f)
            assert len(a) > 0 and _same(a, b)
    with pytest.raises(ValueError, match="compile must be"):
        TorchRunner(obb_model, compile="yes")
