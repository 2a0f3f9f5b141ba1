"""predict obb -> predictions JSON (image, folder, video; annotated outputs) -> eval obb (mAP, PR curve).

The slow test compares eval's numbers with Ultralytics' own ``val`` on a briefly trained checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from edgekit.core.errors import ConfigError, DataError
from edgekit.core.predictions import PredictionsFile, read_predictions

ENV = {**os.environ, "YOLO_OFFLINE": "1", "MPLBACKEND": "Agg"}


def _edgekit(*args, ok=True):
    res = subprocess.run([sys.executable, "-m", "edgekit", *map(str, args)], env=ENV, capture_output=True, text=True,
                         timeout=300)
    if ok:
        assert res.returncode == 0, res.stderr[-3000:]
    return res


@pytest.fixture(scope="module")
def untrained_ckpt(tmp_path_factory, obb_dataset):
    from ultralytics import YOLO

    path = tmp_path_factory.mktemp("ckpt") / "untrained.pt"
    model = YOLO("yolov8n-obb.yaml")  # untrained: scores ~1e-4, hence --conf 0.00001 below
    model.model.names = {i: n for i, n in enumerate(["plane", "ship", "vehicle", "storage-tank", "container"])}
    model.save(str(path))
    return path


def test_predict_folder_image_and_video_then_eval(tmp_path, untrained_ckpt, obb_dataset):
    import cv2

    val = obb_dataset / "images" / "val"
    out = tmp_path / "pred"
    res = _edgekit("predict", "obb", untrained_ckpt, val, "--out", out, "--conf", "0.00001", "--imgsz", "64",
                   "--save-images")
    preds = read_predictions(out / "predictions.json")
    assert preds.version == 1 and preds.imgsz == 64 and preds.conf == 0.00001 and len(preds.images) == 2
    first = preds.images[0]
    assert (first.width, first.height) == (64, 64) and len(first.boxes) == len(first.corners) == len(first.scores)
    assert len(first.scores) > 0 and all(n in preds.names for n in first.class_names)
    assert np.allclose(np.asarray(first.corners).mean(1), np.asarray(first.boxes)[:, :2], atol=1e-3)
    assert sorted(p.name for p in (out / "images").iterdir()) == sorted(p.stem + ".jpg" for p in val.iterdir())
    assert "2 images" in res.stdout

    one = sorted(val.iterdir())[0]
    _edgekit("predict", "obb", untrained_ckpt, one, "--out", tmp_path / "one", "--imgsz", "64")
    assert len(read_predictions(tmp_path / "one" / "predictions.json").images) == 1

    video = tmp_path / "clip.mp4"
    w = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (64, 64))
    for p in sorted(val.iterdir()) * 2:
        w.write(cv2.imread(str(p)))
    w.release()
    _edgekit("predict", "obb", untrained_ckpt, video, "--out", tmp_path / "vid", "--imgsz", "64", "--save-video")
    vp = read_predictions(tmp_path / "vid" / "predictions.json")
    assert [i.frame for i in vp.images] == [0, 1, 2, 3] and (tmp_path / "vid" / "video.mp4").stat().st_size > 0

    ev = _edgekit("eval", "obb", "--data", obb_dataset, "--predictions", out / "predictions.json")
    report = json.loads((out / "eval" / "eval.json").read_text())
    assert set(report) >= {"ultralytics", "polygon", "names", "plots"}
    assert len(report["ultralytics"]["per_class_ap50"]) == 5
    assert (out / "eval" / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    assert "mAP50" in ev.stdout and "all" in ev.stdout


@pytest.mark.parametrize("mutate, match", [
    (lambda d: d.pop("model"), "missing required key 'model'"),
    (lambda d: d.update(version=2), "version 2 is not known"),
    (lambda d: d["images"][0].update(scores=[0.5, 0.4]), "images.0"),
    (lambda d: d["images"][0].update(boxes=[[1, 2, 3, 4]]), "images.0"),
    (lambda d: d["images"][0].update(widht=3), "unknown key 'images.0.widht'"),
])
def test_wrong_schema_is_one_line_naming_the_key(tmp_path, mutate, match):
    data = {"version": 1, "model": "m.pt", "names": ["a"], "images": [
        {"path": "x.jpg", "width": 8, "height": 8, "boxes": [[4, 4, 2, 2, 0.1]], "scores": [0.5], "classes": [0]}]}
    PredictionsFile.model_validate(data)  # the unmutated document is valid
    mutate(data)
    p = tmp_path / "p.json"
    p.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=match) as e:
        read_predictions(p)
    assert "\n" not in e.value.format()
    # neither the user's document echoed back (a real file is megabytes) nor the config reference
    assert "x.jpg" not in e.value.format() and "docs/config.md" not in e.value.format()
    assert "invalid value for ''" not in e.value.format()


def test_eval_refuses_partial_or_foreign_predictions(tmp_path, obb_dataset):
    from edgekit.train.obb.evaluate import evaluate_predictions

    val = sorted((obb_dataset / "images" / "val").iterdir())
    img = {"width": 64, "height": 64}
    partial = PredictionsFile(model="m", images=[{"path": str(val[0]), **img}])
    with pytest.raises(DataError, match="no predictions for val image"):
        evaluate_predictions(partial, obb_dataset)
    extra = PredictionsFile(model="m", images=[{"path": str(p), **img} for p in val] + [{"path": "other.jpg", **img}])
    with pytest.raises(DataError, match="other.jpg, which is not in the val split"):
        evaluate_predictions(extra, obb_dataset)
    res = _edgekit("eval", "obb", "--data", obb_dataset, "--predictions", tmp_path / "missing.json", ok=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "missing.json" in res.stderr


@pytest.mark.slow
def test_predict_eval_equals_ultralytics_val(tmp_path, trained_obb):
    """Same checkpoint, same images: eval's ProbIoU score equals Ultralytics' val within 0.5 mAP50 point."""
    from ultralytics import YOLO

    from edgekit.checkpoints import guarded_loading

    best, data = trained_obb
    out = tmp_path / "pred"
    _edgekit("predict", "obb", best, data / "images" / "train", "--out", out, "--conf", "0.001", "--iou", "0.7",
             "--multi-label")  # Ultralytics' validator keeps every class above conf per box
    _edgekit("eval", "obb", "--data", data, "--predictions", out / "predictions.json")
    report = json.loads((out / "eval" / "eval.json").read_text())
    with guarded_loading():
        val = YOLO(str(best)).val(data=str(data / "data.yaml"), imgsz=128, batch=1, conf=0.001, iou=0.7,
                                  device="cpu", plots=False, verbose=False, project=str(tmp_path / "uval"),
                                  rect=False)  # val's default rect batches pad 128-px images to 160: another input
    ours, theirs = report["ultralytics"], val.box
    print(f"edgekit (ProbIoU) mAP50 {ours['map50']:.4f} mAP50-95 {ours['map50_95']:.4f} | Ultralytics val mAP50 "
          f"{theirs.map50:.4f} mAP50-95 {theirs.map:.4f} | polygon IoU mAP50 {report['polygon']['map50']:.4f}")
    assert theirs.map50 > 0.2  # a real model, not a zero-vs-zero comparison
    assert abs(ours["map50"] - theirs.map50) <= 0.005
    assert abs(ours["map50_95"] - theirs.map) <= 0.01


def test_predict_a_bundle_through_its_detector(tmp_path, obb_dataset):
    pytest.importorskip("onnxruntime")
    from tests.deploy.bundles import write_test_bundle

    bundle = write_test_bundle(tmp_path / "bundle")  # constant output: one box at (32, 32), class 0 score 0.9
    _edgekit("predict", "obb", bundle, obb_dataset / "images" / "val", "--out", tmp_path / "pb", "--conf", "0.7")
    preds = read_predictions(tmp_path / "pb" / "predictions.json")
    assert preds.model == str(bundle) and preds.imgsz == 64 and len(preds.names) == 2
    for image in preds.images:
        assert image.classes == [0] and image.scores == pytest.approx([0.9], abs=1e-6)
        assert image.boxes[0][:4] == pytest.approx([32, 32, 20, 10], abs=1e-3)


def test_multi_label_decode_keeps_every_class_above_conf():
    from edgekit.core.postprocess import PostprocessSpec
    from edgekit.train.obb.predict import decode_multi_label

    raw = np.zeros((1, 4 + 3 + 1, 2), np.float32)
    raw[0, :, 0] = [32, 32, 20, 10, 0.6, 0.3, 0.01, 0.2]  # two classes above conf on one anchor
    raw[0, :, 1] = [10, 10, 4, 4, 0.0, 0.0, 0.5, 0.0]
    dets = decode_multi_label(raw, PostprocessSpec(conf=0.1))
    assert sorted((c, round(float(s), 3)) for c, s in zip(dets.class_ids.tolist(), dets.scores)) == [
        (0, 0.6), (1, 0.3), (2, 0.5)]
    from edgekit.core.postprocess import decode_obb

    assert len(decode_obb(raw, PostprocessSpec(conf=0.1))[0]) == 2  # the deploy decode: best class per anchor


def test_predict_a_run_directory_uses_its_best_pt(tmp_path, untrained_ckpt, obb_dataset):
    run = tmp_path / "runs" / "r1"
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "best.pt").write_bytes(untrained_ckpt.read_bytes())
    _edgekit("predict", "obb", run, obb_dataset / "images" / "val", "--out", tmp_path / "pr", "--imgsz", "64")
    preds = read_predictions(tmp_path / "pr" / "predictions.json")
    assert preds.model == str(run / "checkpoints" / "best.pt") and preds.names[0] == "plane"


def test_predict_refuses_an_unsafe_checkpoint_in_one_line(tmp_path, obb_dataset):
    import argparse

    import torch

    bad = tmp_path / "bad.pt"
    torch.save({"model": argparse.Namespace(x=1)}, str(bad))  # a class outside the checkpoint allow-list
    res = _edgekit("predict", "obb", bad, obb_dataset / "images" / "val", "--out", tmp_path / "o", ok=False)
    assert res.returncode == 1 and res.stderr.count("\n") == 1
    assert "argparse.Namespace" in res.stderr and "--trust-checkpoint" in res.stderr
    assert not (tmp_path / "o").exists()


def test_predict_a_bundle_sliced_maps_each_tiles_box_back(tmp_path, obb_dataset):
    """--tile 64 on a 64-px constant bundle: every tile reports its box at (32, 32); mapped back to frame
    pixels there is one box per tile (no two tiles see the same object, so none merge)."""
    pytest.importorskip("onnxruntime")
    import cv2

    from tests.deploy.bundles import write_test_bundle

    bundle = write_test_bundle(tmp_path / "bundle")
    images = tmp_path / "imgs"
    images.mkdir()
    cv2.imwrite(str(images / "wide.png"), np.zeros((64, 128, 3), np.uint8))  # two 64-px tiles side by side
    _edgekit("predict", "obb", bundle, images, "--out", tmp_path / "pt", "--conf", "0.7", "--tile", "64",
             "--tile-overlap", "0")
    preds = read_predictions(tmp_path / "pt" / "predictions.json")
    centres = sorted(round(b[0]) for b in preds.images[0].boxes)
    assert centres == [32, 96]
    res = _edgekit("predict", "obb", bundle, images, "--out", tmp_path / "px", "--tile", "64", "--multi-label",
                   ok=False)
    assert res.returncode == 2 and "cannot be combined with --tile" in res.stderr
