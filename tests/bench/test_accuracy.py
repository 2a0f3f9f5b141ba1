"""mAP on the device path (bench's own label reader + the Detector) equals the host's evaluation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edgekit.bench.accuracy import evaluate_detector, label_path_for, read_obb_labels, read_val_split
from edgekit.core.errors import DataError


def _host_map(bundle: Path, dataset: Path) -> dict:
    """export's FP32 ONNX evaluation (host only: edgekit.data + edgekit.export)."""
    from edgekit.data.layout import DatasetLayout
    from edgekit.deploy.bundle import Bundle
    from edgekit.export.accuracy import evaluate_onnx
    from edgekit.export.adapters import get_adapter

    b = Bundle.open(bundle)
    layout = DatasetLayout.load(dataset)
    images = layout.image_paths("val")
    return evaluate_onnx(b.model_path("fp32"), images, [layout.label_path(p) for p in images], get_adapter("obb"),
                         b.manifest.preprocess, len(layout.names), iou=b.manifest.postprocess.iou)


def test_device_map_equals_host_evaluation_onnxruntime(exported):
    from edgekit.bench import run_bench

    r = run_bench(exported["bundle"], {"iterations": 2, "warmup": 0, "data": str(exported["pseudo"])}, progress=False)
    host = _host_map(exported["bundle"], exported["pseudo"])
    assert 0.05 < host["map50"] < 0.999  # half the model's own boxes are labels: a real, non-trivial figure
    assert r.accuracy.n_images == host["n_images"] == 4
    assert r.accuracy.map50 == pytest.approx(host["map50"], abs=1e-9)
    assert r.accuracy.map50_95 == pytest.approx(host["map50_95"], abs=1e-9)
    assert r.accuracy.reference is None  # onnxruntime fp32 is itself the reference


def test_device_label_reader_equals_the_host_reader(exported):
    import cv2

    from edgekit.data.layout import DatasetLayout
    from edgekit.export.adapters import get_adapter

    layout = DatasetLayout.load(exported["pseudo"])
    names, images = read_val_split(exported["pseudo"])
    assert names == list(layout.names.values()) if isinstance(layout.names, dict) else list(layout.names)
    assert images == layout.image_paths("val")
    adapter = get_adapter("obb")
    for image in images:
        assert label_path_for(image) == layout.label_path(image)
        h, w = cv2.imread(str(image)).shape[:2]
        info = type("Info", (), {"orig_shape": (h, w)})()
        host = adapter.ground_truth(image, layout.label_path(image), info)
        mine = read_obb_labels(label_path_for(image), h, w)
        assert len(mine) > 0
        np.testing.assert_array_equal(mine.class_ids, host.class_ids)
        np.testing.assert_allclose(mine.boxes, host.boxes, atol=1e-4)


def test_perfect_predictions_score_one(tmp_path):
    """The device path scores labels-as-predictions 1.0 (a detector that returns the ground truth)."""
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "labels" / "val").mkdir(parents=True)
    (tmp_path / "data.yaml").write_text("path: /elsewhere\nval: images/val\nnames: [a, b]\n")
    cv2.imwrite(str(tmp_path / "images" / "val" / "x.png"), np.zeros((100, 200, 3), np.uint8))
    (tmp_path / "labels" / "val" / "x.txt").write_text("1 0.1 0.1 0.5 0.1 0.5 0.3 0.1 0.3\n")

    class Oracle:
        postprocess = type("P", (), {"model_copy": lambda self, update: self})()

        def detect(self, frame):
            return read_obb_labels(tmp_path / "labels" / "val" / "x.txt", *frame.shape[:2])

    assert evaluate_detector(Oracle(), tmp_path)["map50"] == pytest.approx(1.0)


@pytest.mark.parametrize("yaml_text, line, needle", [
    (None, None, "data.yaml does not exist"),
    ("names: [a]\n", None, "needs 'names' and a 'val'"),
    ("val: nowhere\nnames: [a]\n", None, "does not exist"),
    ("val: images/val\nnames: [a]\n", "0 0.1 0.2 0.3\n", "x.txt:1 is not"),
    ("val: images/val\nnames: [a]\n", "a 1 1 1 1 1 1 1 1\n", "x.txt:1 is not"),
])
def test_bad_datasets_are_one_line(tmp_path, yaml_text, line, needle):
    (tmp_path / "images" / "val").mkdir(parents=True)
    (tmp_path / "images" / "val" / "x.jpg").write_bytes(b"")
    if yaml_text is not None:
        (tmp_path / "data.yaml").write_text(yaml_text)
    with pytest.raises(DataError) as e:
        read_val_split(tmp_path)
        if line is not None:
            label = tmp_path / "labels" / "val" / "x.txt"
            label.parent.mkdir(parents=True)
            label.write_text(line)
            read_obb_labels(label, 10, 10)
    assert needle in str(e.value) and "\n" not in str(e.value)
