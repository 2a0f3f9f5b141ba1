"""RefDet augmentation: every geometric transform moves the boxes exactly as it moves the pixels."""

from __future__ import annotations

import numpy as np
import pytest

from edgekit.train.fewshot.augment import affine, augment_frame, hflip, letterbox_with_boxes, to_chw_rgb
from edgekit.train.fewshot.config import AugmentConfig

pytest.importorskip("cv2")


def _scene(h: int = 90, w: int = 120, box=(30, 20, 70, 50)) -> np.ndarray:
    img = np.full((h, w, 3), 114, np.uint8)
    x1, y1, x2, y2 = box
    img[y1:y2, x1:x2] = (20, 200, 60)
    return img


def _pixel_box(img: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(np.abs(img.astype(int) - 114).sum(2) > 60)
    return np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)


def test_letterbox_maps_boxes_into_network_pixels():
    img, boxes = letterbox_with_boxes(_scene(), np.array([[30, 20, 70, 50]], np.float32), 64)
    assert img.shape == (64, 64, 3)
    np.testing.assert_allclose(boxes[0], _pixel_box(img), atol=1.0)


@pytest.mark.parametrize("scale, shift", [(1.0, (0, 0)), (1.3, (5, -4)), (0.7, (-8, 6))])
def test_affine_moves_boxes_with_pixels(scale, shift):
    img = _scene()
    out, boxes = affine(img, np.array([[30, 20, 70, 50]], np.float32), scale, shift)
    assert len(boxes) == 1
    np.testing.assert_allclose(boxes[0], _pixel_box(out), atol=1.5)


def test_flip_moves_boxes_with_pixels():
    out, boxes = hflip(_scene(), np.array([[30, 20, 70, 50]], np.float32))
    np.testing.assert_allclose(boxes[0], _pixel_box(out), atol=0.5)


def test_boxes_pushed_out_of_the_frame_are_dropped_and_partial_ones_clipped():
    img = _scene(box=(90, 20, 118, 50))
    _, gone = affine(img, np.array([[90, 20, 118, 50]], np.float32), 1.0, (40, 0))
    assert len(gone) == 0
    out, part = affine(img, np.array([[90, 20, 118, 50]], np.float32), 1.0, (15, 0), min_visible=0.3)
    assert len(part) == 1 and part[0, 2] == 120
    np.testing.assert_allclose(part[0], _pixel_box(out), atol=1.5)


def test_full_random_augmentation_keeps_boxes_right_over_many_draws():
    cfg = AugmentConfig(fliplr=0.5, scale=0.3, translate=0.1, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0, min_visible=0.99)
    base, boxes = letterbox_with_boxes(_scene(), np.array([[30, 20, 70, 50]], np.float32), 96)
    for seed in range(12):
        out, b = augment_frame(base, boxes, np.random.default_rng(seed), cfg)
        if len(b):
            np.testing.assert_allclose(b[0], _pixel_box(out), atol=1.5)


def test_same_seed_same_augmentation_and_hsv_leaves_geometry():
    cfg = AugmentConfig()
    base, boxes = letterbox_with_boxes(_scene(), np.array([[30, 20, 70, 50]], np.float32), 64)
    a = augment_frame(base, boxes, np.random.default_rng(3), cfg)
    b = augment_frame(base, boxes, np.random.default_rng(3), cfg)
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


def test_network_input_equals_the_deploy_preprocess():
    from edgekit.core.letterbox import LetterboxSpec, preprocess

    frame = np.random.default_rng(0).integers(0, 255, (50, 70, 3), dtype=np.uint8)
    img, _ = letterbox_with_boxes(frame, np.zeros((0, 4), np.float32), 64)
    assert np.array_equal(to_chw_rgb(img)[None], preprocess(frame, LetterboxSpec(imgsz=64))[0])
