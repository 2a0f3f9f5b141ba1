"""Hostile option values (see HOSTILE_CASES.md for the whole corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.conftest import assert_one_line_error, debris, run_cli


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_absurd_size_is_one_line_out_of_memory_and_leaves_nothing(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "synth"
    res = run_cli(["data", "synth", "obb", "--out", out, "--n-train", "1", "--n-val", "1", "--imgsz", "99999999",
                   "--workers", workers], cwd=tmp_path, timeout=120)
    line = assert_one_line_error(res, names=["out of memory", "edgekit data synth obb", "--imgsz"])
    assert "PiB" in line  # what numpy could not allocate, so the size at fault shows
    assert not out.exists() and not debris(tmp_path)


@pytest.mark.parametrize("args, flag", [
    (["predict", "obb", "{bundle}", "{image}", "--conf", "nan", "--out", "{out}"], "--conf"),  # kept no box, exit 0
    (["predict", "obb", "{bundle}", "{image}", "--iou", "NaN", "--out", "{out}"], "--iou"),  # no NMS, exit 0
    (["bench", "run", "{bundle}", "--duration", "inf", "--no-plots", "--out", "{out}"], "--duration"),  # ran forever
    (["bench", "run", "{bundle}", "--warmup-s", "nan", "--no-plots", "--out", "{out}"], "--warmup-s"),
])
def test_nan_and_inf_options_are_usage_errors(tmp_path: Path, args, flag: str) -> None:
    import cv2

    from tests.deploy.bundles import write_test_bundle
    from tests.deploy.refdet_bundles import photo

    bundle = write_test_bundle(tmp_path / "bundle")
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), photo((0, 0, 255)))
    values = {"bundle": bundle, "image": image, "out": tmp_path / "out"}
    res = run_cli([a.format(**values) for a in args], cwd=tmp_path, timeout=60)
    assert res.rc == 2 and "Traceback" not in res.stderr, res.stderr
    assert flag in res.stderr and "not a finite number" in res.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("override, key", [("stages.0.lr0=nan", "stages.0.lr0"), ("distillation.weight=.inf",
                                                                                  "distillation.weight")])
def test_nan_in_a_train_override_is_refused_naming_the_key(tmp_path: Path, override: str, key: str) -> None:
    res = run_cli(["train", "obb", "data=/d", override, "--print-config"], cwd=tmp_path)
    assert_one_line_error(res, names=[f"'{key}'", "not a finite number"])


def test_predict_obb_refuses_a_refdet_bundle(tmp_path: Path) -> None:
    """It used to run: the RefDet graph's output decoded as OBB boxes, exit 0."""
    pytest.importorskip("onnxruntime")
    import cv2

    from tests.deploy.refdet_bundles import frame_with, write_refdet_bundle

    bundle = write_refdet_bundle(tmp_path / "refdet")
    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), frame_with((0, 0, 255)))
    res = run_cli(["predict", "obb", bundle, image, "--out", tmp_path / "out"], cwd=tmp_path, timeout=120)
    assert "predict refdet" in assert_one_line_error(res, names=[bundle, "'refdet' bundle"])
    assert not (tmp_path / "out").exists()


def test_a_directory_as_reference_photo_is_called_a_directory(tmp_path: Path) -> None:
    from edgekit.core.errors import DataError
    from edgekit.train.fewshot.inference import read_references

    with pytest.raises(DataError, match="is a directory"):
        read_references([tmp_path])


def test_convert_classes_matching_nothing_is_refused(tmp_path: Path, dota_dir: Path) -> None:
    """--classes with a typo used to write a dataset of background images only, exit 0."""
    out = tmp_path / "out"
    res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo-obb", dota_dir, out, "--classes", "plnae"],
                  cwd=tmp_path)
    assert "plane" in assert_one_line_error(res, names=["--classes plnae", "none of the source's classes"])
    assert not out.exists()


@pytest.mark.parametrize("classes", [[], ["a", "b", "c", "d", "e"]])
def test_bundle_whose_classes_disagree_with_its_graph_is_refused(tmp_path: Path, classes) -> None:
    """A hand-edited manifest ``classes`` used to pass every check: boxes came out unnamed or misnamed."""
    import json

    from tests.deploy.bundles import write_test_bundle

    bundle = write_test_bundle(tmp_path / "bundle")  # its graph scores 2 classes
    manifest = bundle / "manifest.json"
    data = json.loads(manifest.read_text())
    data["classes"] = classes
    manifest.write_text(json.dumps(data))
    for args in (["bundle", "info", bundle], ["bundle", "check", bundle]):
        assert_one_line_error(run_cli(args, cwd=tmp_path), names=["model.onnx scores 2 classes",
                                                                  f"lists {len(classes)}"])
