"""RefDet end to end on CPU, through the CLI: synth -> train stage 2 -> train stage 3 -> eval -> export
(INT8) -> eval the bundle -> bench it -> predict from it; the run (PyTorch) and the bundle (ONNX
Runtime) must score alike and find the same boxes on the same video.

Tiny on purpose (a 1-block DINOv2 at 28 px, 64 px frames, two episodes per stage): this proves the
stages fit together, not that the model learns (benchmarks/ does that on the GPU machine).
Torch runs on one thread: on a shared 2-core machine, two threads fighting other processes run
a 64 px frame 100x slower (measured: 0.95 s vs 8 ms).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("timm")

from edgekit.cli.main import cli  # noqa: E402
from edgekit.core.predictions import read_predictions  # noqa: E402

FRAMES = 16
TINY = ["--imgsz", "64", "--epochs", "1", "episode.episodes_per_epoch=2", "episode.n_query=2", "episode.n_negative=1",
        "validation.frames_per_video=2", "optim.warmup_steps=1", "model.encoder_weights=random",
        "model.encoder_kwargs={depth: 1}", "model.ref_size=28"]


@pytest.fixture(scope="module")
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _ok(*args) -> str:
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == 0, (args[:2], res.output[-3000:], res.exception)
    return res.output


def _match(a, b):
    from edgekit.core.detections import Detections
    from edgekit.core.metrics import match_detections

    return match_detections(Detections(np.asarray(a.boxes, np.float32).reshape(-1, 5), np.asarray(a.scores),
                                       np.asarray(a.classes)),
                            Detections(np.asarray(b.boxes, np.float32).reshape(-1, 5), np.asarray(b.scores),
                                       np.asarray(b.classes)), iou_thr=0.9)


def test_synth_train_2_3_eval_export_bench_predict(tmp_path: Path, one_thread):
    data, runs = tmp_path / "data", tmp_path / "runs"
    _ok("data", "synth", "refdet", "--out", data, "--n-train", 3, "--n-test", 2, "--frames", FRAMES, "--imgsz", 64)
    _ok("train", "refdet", "--data", data, "--stage", 2, "--run-id", "s2", f"project={runs}", *TINY)
    _ok("train", "refdet", "--data", data, "--stage", 3, "--weights", runs / "s2" / "checkpoints" / "best.pt",
        "--use-triplet", "--run-id", "s3", f"project={runs}", *TINY)
    ckpt = torch.load(str(runs / "s3" / "checkpoints" / "best.pt"), weights_only=True)
    assert (ckpt["edgekit_task"], ckpt["stage"]) == ("refdet", 3)

    out = _ok("eval", "refdet", runs / "s3", "--data", data, "--out", tmp_path / "eval", "--no-progress")
    doc = json.loads((tmp_path / "eval" / "eval.json").read_text())
    videos = sorted(p.name for p in (data / "test" / "samples").iterdir())
    assert sorted(doc["per_video"]) == videos and doc["frames"] == 2 * FRAMES and doc["model_kind"] == "checkpoint"
    assert doc["overall"]["n_gt"] > 0 and 0.0 <= doc["overall"]["ap50"] <= 1.0
    assert (tmp_path / "eval" / "pr_curve.png").is_file() and "ST-IoU" in out

    bundle = tmp_path / "bundle"
    _ok("export", runs / "s3", "--data", data, "--int8", "--target", "x86", "--calib-size", 8, "--val-size", 8,
        "--out", bundle, "--quiet")
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "refdet" and set(manifest["models"]) == {"reference_encoder", "fp32", "int8_qdq"}

    _ok("eval", "refdet", bundle, "--data", data, "--out", tmp_path / "eval_bundle", "--no-progress")
    on_ort = json.loads((tmp_path / "eval_bundle" / "eval.json").read_text())
    assert on_ort["model_kind"] == "bundle"
    for key in ("ap50", "map50", "st_iou", "n_gt"):  # the deployed graphs score as the checkpoint does
        assert on_ort["overall"][key] == pytest.approx(doc["overall"][key], abs=1e-3), key

    sample = data / "test" / "samples" / videos[0]
    video = sample / "drone_video.mp4"
    _ok("bench", bundle, "--iterations", 10, "--warmup", 2, "--video", video, "--no-plots", "--no-progress",
        "--out", tmp_path / "bench")
    bench = json.loads((tmp_path / "bench" / "bench.json").read_text())
    assert bench["bundle"]["task"] == "refdet" and bench["parity"]["status"] == "passed"

    refs = sorted((sample / "object_images").glob("*.jpg"))
    low = ["--conf", "0.001", "--no-progress"]  # an untrained model's boxes score low: compare them all
    _ok("predict", "refdet", bundle, "--refs", *refs, "--video", video, "--out", tmp_path / "pred_bundle", *low)
    _ok("predict", "refdet", runs / "s3", "--refs", *refs, "--video", video, "--out", tmp_path / "pred_run", "--no-video",
        *low)
    onnx, pt = read_predictions(tmp_path / "pred_bundle" / "predictions.json"), \
        read_predictions(tmp_path / "pred_run" / "predictions.json")
    assert [i.frame for i in onnx.images] == [i.frame for i in pt.images] == list(range(FRAMES))
    assert (tmp_path / "pred_bundle" / "video.mp4").stat().st_size > 0
    n = sum(len(i.boxes) for i in pt.images)
    assert n > 0  # the comparison below is not vacuous
    matched = sum(len(_match(a, b).pairs) for a, b in zip(pt.images, onnx.images))
    assert matched >= 0.9 * n, (matched, n)  # the deploy detector finds what PyTorch finds
