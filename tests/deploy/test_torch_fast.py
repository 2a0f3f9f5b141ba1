"""The torch runner's fast path (uint8 feed normalised on the device, fuse, fp16, CUDA graph, trimmed
copy-back) gives the detections of the plain float path. CPU here; the CUDA cases run under -m gpu."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.core.letterbox import LetterboxSpec, letterbox, preprocess
from edgekit.core.postprocess import PostprocessSpec, decode
from edgekit.deploy.detector import Detector
from edgekit.deploy.runners.torch import TorchRunner

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")

IMGSZ = 96
SPEC = LetterboxSpec(imgsz=IMGSZ)
CONF = 0.6


@pytest.fixture(scope="module")
def obb_model():
    from ultralytics.nn.tasks import OBBModel

    torch.manual_seed(0)
    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False).eval()
    # A fresh head scores ~0.5 everywhere; spread its class branch so some anchors pass CONF and most do not.
    for seq in model.model[-1].cv3:
        for p in seq.parameters():
            p.data.normal_(0, 0.3)
    return model


@pytest.fixture
def frame():
    return np.random.default_rng(0).integers(0, 256, (70, 120, 3), dtype=np.uint8)


def _run(runner, feed):
    with runner:
        return runner.infer(feed)["output0"]


def test_uint8_feed_equals_float_feed(obb_model, frame):
    want = _run(TorchRunner(obb_model), {"images": preprocess(frame, SPEC)[0]})
    got = _run(TorchRunner(obb_model, uint8_input=SPEC), {"images": letterbox(frame, SPEC)[0][None]})
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)


def test_trimmed_output_decodes_to_the_same_detections(obb_model, frame):
    post = PostprocessSpec(conf=CONF)
    full = _run(TorchRunner(obb_model), {"images": preprocess(frame, SPEC)[0]})
    trimmed = _run(TorchRunner(obb_model, trim_conf=CONF, num_classes=3), {"images": preprocess(frame, SPEC)[0]})
    assert trimmed.shape[2] < full.shape[2]
    a, b = decode(full, post)[0], decode(trimmed, post)[0]
    assert len(a) > 0 and np.array_equal(a.boxes, b.boxes) and np.array_equal(a.class_ids, b.class_ids)


def test_detector_with_fast_runner_matches_plain_detector(obb_model, frame):
    import copy

    post = PostprocessSpec(conf=CONF)
    plain = Detector(TorchRunner(obb_model), letterbox=SPEC, postprocess=post)
    fast = Detector(TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, fuse=True, trim_conf=CONF, num_classes=3),
                    letterbox=SPEC, postprocess=post)
    with plain, fast:
        a, b = plain(frame), fast(frame)
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(np.sort(a.scores), np.sort(b.scores), atol=1e-3)


def test_cuda_options_refused_without_cuda(obb_model):
    if torch.cuda.is_available():
        pytest.skip("CUDA present")
    from edgekit.core.errors import DeviceError

    with pytest.raises(DeviceError, match="CUDA is not available"):
        TorchRunner(obb_model, device="cuda").activate()
    with pytest.raises(DeviceError, match="cuda_graph needs a CUDA device"):
        TorchRunner(obb_model, cuda_graph=True).activate()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_graph_fp16_path_matches_eager_fp32(obb_model, frame):
    import copy

    feed_u8 = {"images": letterbox(frame, SPEC)[0][None]}
    ref_raw = _run(TorchRunner(copy.deepcopy(obb_model), device="cuda"), {"images": preprocess(frame, SPEC)[0]})
    eager = _run(TorchRunner(copy.deepcopy(obb_model), device="cuda", uint8_input=SPEC, half=True, fuse=True), feed_u8)
    runner = TorchRunner(copy.deepcopy(obb_model), device="cuda", uint8_input=SPEC, half=True, fuse=True,
                         cuda_graph=True)
    with runner:
        graphed = [runner.infer(feed_u8)["output0"] for _ in range(3)]
        other = runner.infer({"images": letterbox(frame[::-1].copy(), SPEC)[0][None]})["output0"]
    assert all(np.array_equal(g, graphed[0]) for g in graphed)  # replays are deterministic
    # fp16 vs fp16 eager: the same kernels up to algorithm choice; vs fp32: pixel coordinates within 0.5 px.
    np.testing.assert_allclose(graphed[0], eager, rtol=2e-2, atol=0.25)
    np.testing.assert_allclose(eager, ref_raw, rtol=2e-2, atol=0.5)
    assert not np.allclose(other, graphed[0])  # the graph really reads the new frame


def test_channels_last_gives_the_same_raw_output(obb_model, frame):
    import copy

    feed = {"images": letterbox(frame, SPEC)[0][None]}
    want = _run(TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, fuse=True), feed)
    got = _run(TorchRunner(copy.deepcopy(obb_model), uint8_input=SPEC, fuse=True, channels_last=True), feed)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3)
