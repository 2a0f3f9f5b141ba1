"""The torch runner's Triton kernels: the one-kernel OBB decode (edgekit/deploy/runners/triton_obb_decode.py)
gives exactly the numpy decode's detections, the input conversion (triton_normalise.py) exactly the torch
ops' input. On the CPU the kernels run in Triton's interpreter, which must be switched on before triton is
first imported, so those checks run in a subprocess (this file run as a script); the CUDA cases (compiled
kernels, inside the runner's CUDA graphs) run under -m gpu."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("triton")

from edgekit.core.errors import ConfigError  # noqa: E402
from edgekit.core.letterbox import LetterboxSpec, letterbox, unletterbox_xywhr  # noqa: E402
from edgekit.core.postprocess import PostprocessSpec, decode_obb, detections_from_rows  # noqa: E402
from edgekit.deploy.detector import Detector  # noqa: E402
from edgekit.deploy.runners.torch import TorchRunner  # noqa: E402
from tests.deploy.obb_tables import raw_table as _raw  # noqa: E402
from tests.deploy.obb_tables import same_detections as _same  # noqa: E402

HERE = Path(__file__).resolve()
POSTS = [PostprocessSpec(conf=0.25), PostprocessSpec(conf=0.1, iou=0.5, max_det=20),
         PostprocessSpec(conf=0.3, agnostic=True), PostprocessSpec(conf=0.2, max_nms=40),
         PostprocessSpec(conf=0.3, iou=0.45, max_det=3)]


def check_cases(device: str, limit: int = 512) -> list:
    """Every (postprocess, table) case: kernel rows vs the numpy decode. One dict per case."""
    from edgekit.deploy.runners import triton_obb_decode

    rng = np.random.default_rng(0)
    wild = _raw(rng, 300)  # angles no OBB head gives: regularised on the host (the class comes back negative)
    wild[-1] = rng.uniform(-10, 10, 300).astype(np.float16)
    tables = [_raw(rng, a) for a in (7, 300, 2100)] + [_raw(rng, 300, nc=1), np.zeros((8, 50), np.float32), wild]
    results = []
    for p, post in enumerate(POSTS):
        for t, raw in enumerate(tables):
            params = triton_obb_decode.decode_params(post, device)
            rows = triton_obb_decode.decode_rows(torch.from_numpy(raw).half().to(device), post, limit, params)
            rows = rows.cpu().numpy()
            count = int((raw[4:-1].max(0) > np.float32(post.conf)).sum())
            case = {"post": p, "table": t, "count": count, "header": rows[0, :4].tolist(),
                    "raw_rows": int((rows[1:1 + int(rows[0, 0]), 6] < 0).sum())}
            if rows[0, 1]:
                case["overflow"] = True
            else:
                case["equal"] = _same(detections_from_rows(rows[: int(rows[0, 0]) + 1]), decode_obb(raw, post)[0])
                case["kept"] = int(rows[0, 0])
            results.append(case)
    return results


NORM_SPECS = [LetterboxSpec(imgsz=32), LetterboxSpec(imgsz=(16, 24), mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
              LetterboxSpec(imgsz=(40, 8), color_order="BGR", scale=1 / 127.5, mean=(1.0, 1.0, 1.0))]


def check_normalise(device: str) -> list:
    """The kernel's input vs the torch ops' (TorchRunner's torch path), bitwise, for each spec, dtype and layout."""
    from edgekit.deploy.runners.triton_normalise import normalise, normalise_params

    rng = np.random.default_rng(0)
    results = []
    for spec in NORM_SPECS:
        h, w = spec.imgsz
        frame = torch.from_numpy(rng.integers(0, 256, (1, h, w, 3), dtype=np.uint8)).to(device)
        order = torch.tensor([2, 1, 0] if spec.color_order == "RGB" else [0, 1, 2], device=device)
        x = frame.permute(0, 3, 1, 2).index_select(1, order).float() * torch.tensor(spec.scale, device=device)
        affine = spec.mean != (0.0, 0.0, 0.0) or spec.std != (1.0, 1.0, 1.0)
        if affine:
            x = (x - torch.tensor(spec.mean, device=device).view(1, 3, 1, 1)) / torch.tensor(spec.std, device=device).view(1, 3, 1, 1)
        for dtype in (torch.float16, torch.float32):
            for fmt in (torch.contiguous_format, torch.channels_last):
                out = torch.empty((1, 3, h, w), dtype=dtype, device=device, memory_format=fmt)
                normalise(frame, out, normalise_params(spec, device), rgb=spec.color_order == "RGB", affine=affine)
                results.append(bool(torch.equal(out, x.to(dtype))))
    return results


def _checked(cases: list) -> None:
    for case in cases:
        limit = min(512, POSTS[case["post"]].max_nms)
        assert case["header"][2] == case["count"], case
        assert case.get("overflow", False) == (case["count"] > limit), case  # overflow exactly when too many
        if "equal" in case:
            assert case["equal"], case
        assert case["header"][3] == 1  # boxes regularised on the device
    assert any(c["raw_rows"] for c in cases if c["table"] == 5) and not any(c["raw_rows"] for c in cases if c["table"] < 5)
    decoded = [c for c in cases if "equal" in c]
    assert len(decoded) >= 18 and any(c["kept"] == 0 for c in decoded) and sum(c["kept"] for c in decoded) > 400


def test_kernels_in_the_interpreter_equal_numpy_decode_and_torch_input():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONPATH=str(HERE.parents[2]))  # tests.deploy importable
    proc = subprocess.run([sys.executable, str(HERE)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    _checked(got["decode"])
    assert got["normalise"] == [True] * 12


def test_kernel_refuses_cpu_tensors_outside_the_interpreter():
    from edgekit.deploy.runners import triton_obb_decode

    if os.environ.get("TRITON_INTERPRET") == "1":
        pytest.skip("interpreter on in this process")
    post = PostprocessSpec()
    with pytest.raises(ValueError, match="runs on CUDA tensors"):
        triton_obb_decode.decode_rows(torch.zeros(8, 50), post, 16, triton_obb_decode.decode_params(post, "cpu"))


def test_kernels_option_is_checked_and_auto_uses_torch_ops_on_the_cpu():
    post = PostprocessSpec(conf=0.5)
    net = torch.nn.Sequential()
    with pytest.raises(ValueError, match="kernels must be"):
        TorchRunner(net, decode=post, kernels="cuda")
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        TorchRunner(net, decode=post, kernels="triton")

    class Head(torch.nn.Module):  # a fixed raw table as the "model" output
        def __init__(self, raw):
            super().__init__()
            self.raw = torch.from_numpy(raw)[None]

        def forward(self, x):
            return self.raw

    raw = _raw(np.random.default_rng(3), 300)
    spec = LetterboxSpec(imgsz=64)
    runner = TorchRunner(Head(raw), uint8_input=spec, decode=post)
    with Detector(runner, letterbox=spec, postprocess=post) as det:
        dets = det(np.zeros((64, 64, 3), np.uint8))
    assert runner.kernels_used == "torch" and _same(dets, decode_obb(raw, post)[0])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_compiled_kernels_equal_numpy_decode_and_torch_input_on_cuda():
    _checked(check_cases("cuda"))
    assert check_normalise("cuda") == [True] * 12


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("channels_last", [False, True])
def test_cuda_graph_runner_with_the_kernels_equals_host_decode_of_its_own_output(channels_last):
    pytest.importorskip("ultralytics")
    from ultralytics.nn.tasks import OBBModel

    torch.manual_seed(0)
    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False).eval()
    for seq in model.model[-1].cv3:
        for p in seq.parameters():
            p.data.normal_(0, 0.3)
    spec, post = LetterboxSpec(imgsz=96), PostprocessSpec(conf=0.6)
    runner = TorchRunner(copy.deepcopy(model), device="cuda", uint8_input=spec, half=True, fuse=True, cuda_graph=True,
                         decode=post, kernels="triton", slots=2, channels_last=channels_last)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (70, 120, 3), dtype=np.uint8) for _ in range(6)]
    with Detector(runner, letterbox=spec, postprocess=post) as det:
        for f in frames:
            got = det(f)
            raw = runner._slots[0].raw.float().cpu().numpy()  # one frame at a time: always the first slot
            want = decode_obb(raw, post)[0]
            info = letterbox(f, spec)[1]
            assert len(got) == len(want) and np.array_equal(got.boxes, unletterbox_xywhr(want.boxes, info))
    assert runner.kernels_used == "triton" and runner.decode_fallbacks == 0
    # the float-input path (no uint8_input, no graph) decodes with the same kernel
    float_runner = TorchRunner(copy.deepcopy(model), device="cuda", decode=post, kernels="triton")
    with Detector(float_runner, letterbox=spec, postprocess=post) as det:
        for f in frames[:2]:
            assert det(f) is not None
    assert float_runner.kernels_used == "triton" and float_runner._normalise is None


if __name__ == "__main__":  # the interpreter run of test_kernels_in_the_interpreter_equal_numpy_decode_and_torch_input
    print(json.dumps({"decode": check_cases("cpu"), "normalise": check_normalise("cpu")}))


def test_auto_falls_back_to_torch_ops_when_the_kernels_cannot_start(caplog):
    """A CUDA runner whose Triton kernels cannot build (here: no GPU at all) keeps the torch ops with a
    warning under kernels='auto', and names the failure under kernels='triton'."""
    if torch.cuda.is_available():
        pytest.skip("needs a host where the CUDA kernels cannot start")
    from edgekit.core.errors import DeviceError

    def started(kernels: str) -> TorchRunner:
        runner = TorchRunner(torch.nn.Sequential(), device="cuda", uint8_input=LetterboxSpec(imgsz=32),
                             decode=PostprocessSpec(), kernels=kernels)
        runner._torch, runner._dtype = torch, torch.float16
        runner._start_triton()
        return runner

    with caplog.at_level("WARNING"):
        runner = started("auto")
    assert runner.kernels_used == "torch" and runner._normalise is None and runner._triton_decode is None
    assert "Triton kernels unavailable" in caplog.text
    with pytest.raises(DeviceError, match="Triton kernels cannot run here"):
        started("triton")


def test_host_copy_takes_any_frame_view():
    """The threaded copy into the pinned input: frames with negative strides (an RGB->BGR view), read-only
    frames and strided destinations (the letterbox interior) give np.copyto's result, without warnings."""
    import warnings

    runner = TorchRunner(torch.nn.Sequential())
    runner._torch = torch
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (400, 700, 3), dtype=np.uint8)
    readonly = frame.copy()
    readonly.flags.writeable = False
    for src in (frame, frame[:, :, ::-1], frame[::-1], readonly):
        dst = np.zeros((640, 720, 3), np.uint8)[100:500, 10:710]  # a strided interior, as letterbox's
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            runner.host_copy(dst, src)
        assert np.array_equal(dst, src)
