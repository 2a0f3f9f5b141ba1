"""Letterbox/preprocess: pixel parity with Ultralytics' LetterBox, and exact inverse box mapping."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from edgekit.core.errors import DataError
from edgekit.core.letterbox import (
    LetterboxInfo,
    LetterboxSpec,
    letterbox,
    preprocess,
    unletterbox_xywhr,
    unletterbox_xyxy,
)


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


SHAPES = [(64, 64), (48, 80), (100, 37), (37, 100), (160, 120), (300, 2), (2, 300), (64, 65)]


@pytest.mark.parametrize(("h", "w"), SHAPES)
@pytest.mark.parametrize(("imgsz", "scaleup"), [((64, 64), True), ((64, 96), True), ((96, 64), False)])
def test_matches_ultralytics_letterbox(h, w, imgsz, scaleup):
    augment = pytest.importorskip("ultralytics.data.augment")
    img = image(h, w)
    ours, info = letterbox(img, LetterboxSpec(imgsz=imgsz, scaleup=scaleup))
    theirs = augment.LetterBox(new_shape=imgsz, auto=False, scaleup=scaleup, center=True)(image=img)
    assert ours.shape == (*imgsz, 3)
    np.testing.assert_array_equal(ours, theirs)
    assert info.orig_shape == (h, w)


def test_preprocess_layout_order_and_scale():
    img = np.zeros((32, 64, 3), np.uint8)
    img[..., 0], img[..., 2] = 10, 200  # B=10, R=200
    x, info = preprocess(img, LetterboxSpec(imgsz=64))
    assert x.shape == (1, 3, 64, 64) and x.dtype == np.float32 and x.flags["C_CONTIGUOUS"]
    assert info == LetterboxInfo(1.0, (0.0, 16.0), (32, 64))
    assert x[0, 0, 32, 32] == pytest.approx(200 / 255)  # RGB: channel 0 is red
    assert x[0, 2, 32, 32] == pytest.approx(10 / 255)
    assert x[0, 1, 0, 0] == pytest.approx(114 / 255)  # padding
    bgr, _ = preprocess(img, LetterboxSpec(imgsz=64, color_order="BGR"))
    assert bgr[0, 0, 32, 32] == pytest.approx(10 / 255)


def test_preprocess_mean_std_and_dtype():
    img = np.full((64, 64, 3), 255, np.uint8)
    spec = LetterboxSpec(imgsz=64, mean=(0.5, 0.5, 0.5), std=(0.25, 0.5, 1.0), dtype="float16")
    x, _ = preprocess(img, spec)
    assert x.dtype == np.float16
    np.testing.assert_allclose(x[0, :, 0, 0], [2.0, 1.0, 0.5], rtol=1e-3)


@pytest.mark.parametrize(("h", "w"), SHAPES[:6])
def test_unletterbox_inverts_the_forward_mapping(h, w):
    _, info = letterbox(image(h, w), LetterboxSpec(imgsz=(64, 96)))
    rng = np.random.default_rng(1)
    frame_xywhr = np.concatenate([rng.uniform(0, min(h, w), (10, 4)), rng.uniform(-1, 2, (10, 1))], 1)
    net = frame_xywhr.copy()
    net[:, :2] = net[:, :2] * info.ratio + info.pad
    net[:, 2:4] *= info.ratio
    np.testing.assert_allclose(unletterbox_xywhr(net, info), frame_xywhr, rtol=1e-4, atol=1e-3)

    x1y1 = rng.uniform(0, 0.5, (10, 2)) * (w, h)
    frame_xyxy = np.concatenate([x1y1, x1y1 + rng.uniform(0, 0.5, (10, 2)) * (w, h)], 1)
    net_xyxy = frame_xyxy * info.ratio + np.tile(info.pad, 2)
    np.testing.assert_allclose(unletterbox_xyxy(net_xyxy, info), frame_xyxy, rtol=1e-4, atol=1e-3)


def test_unletterbox_xyxy_clips_to_frame():
    info = LetterboxInfo(0.5, (0.0, 8.0), (100, 128))
    out = unletterbox_xyxy(np.array([[-4, 0, 70, 70]]), info)
    assert out.tolist() == [[0, 0, 128, 100]]


@pytest.mark.parametrize(("bad", "message"), [
    (None, "frame is a NoneType, not a numpy array"),
    ([[0, 0, 0]], "frame is a list, not a numpy array"),
    (np.zeros((8, 8, 3), np.float32), r"dtype float32, expected uint8 \(float: scale to 0-255"),
    (np.full((8, 8, 3), np.nan, np.float64), "dtype float64"),
    (np.zeros((8, 8, 3), np.uint16), r"dtype uint16, expected uint8 \(16-bit: convert"),
    (np.zeros((8, 8, 3), bool), "dtype bool"),
    (np.zeros((0, 0, 3), np.uint8), "frame is empty"),
    (np.zeros((8, 8, 2), np.uint8), "expected HxWx3"),
    (np.zeros((2, 8, 8, 3), np.uint8), "expected HxWx3"),
])
def test_rejects_bad_frames_in_one_line(bad, message):
    with pytest.raises(DataError, match=message) as e:
        letterbox(bad, LetterboxSpec(imgsz=32))
    assert "\n" not in str(e.value)


def test_grayscale_and_bgra_frames_letterbox_like_their_bgr_version():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 255, (20, 30), dtype=np.uint8)
    bgr = np.repeat(gray[:, :, None], 3, axis=2)
    spec = LetterboxSpec(imgsz=32)
    want = letterbox(bgr, spec)[0]
    assert np.array_equal(letterbox(gray, spec)[0], want)
    assert np.array_equal(letterbox(gray[:, :, None], spec)[0], want)
    bgra = np.concatenate([bgr, np.full((20, 30, 1), 7, np.uint8)], axis=2)
    assert np.array_equal(letterbox(bgra, spec)[0], want)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"color_order": "RGBA"}, "color_order"), ({"imgsz": 0}, "imgsz"), ({"pad": 1}, "pad"),
])
def test_spec_validation(kwargs, field):
    with pytest.raises(ValidationError, match=field):
        LetterboxSpec(**kwargs)


def test_spec_int_imgsz_means_square():
    assert LetterboxSpec(imgsz=320).imgsz == (320, 320)


@pytest.mark.parametrize("spec_kwargs", [
    {}, {"color_order": "BGR"}, {"imgsz": (320, 192)}, {"scale": 1 / 127.5}, {"dtype": "float16"},
    {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)},
])
@pytest.mark.parametrize("hw", [(480, 640), (333, 111), (640, 640), (7, 900)])
def test_one_pass_preprocess_equals_the_numpy_reference_bit_for_bit(spec_kwargs, hw):
    from edgekit.core.letterbox import preprocess, preprocess_reference

    img = np.random.default_rng(hw[0]).integers(0, 256, (*hw, 3), dtype=np.uint8)
    spec = LetterboxSpec(**{"imgsz": 256, **spec_kwargs})
    got, _ = preprocess(img, spec)
    want = preprocess_reference(img, spec)
    assert got.dtype == want.dtype and got.shape == want.shape and got.flags.c_contiguous
    assert np.array_equal(got, want)


@pytest.mark.parametrize("spec", [LetterboxSpec(imgsz=64), LetterboxSpec(imgsz=(48, 80), color_order="BGR"),
                                  LetterboxSpec(imgsz=64, mean=(0.1, 0.2, 0.3), std=(0.5, 0.25, 0.2)),
                                  LetterboxSpec(imgsz=64, dtype="float16")])
def test_preprocess_equals_the_four_pass_reference_and_reuses_out(spec):
    from edgekit.core.letterbox import preprocess_reference

    img = image(50, 70)
    want = preprocess_reference(img, spec)
    got, _ = preprocess(img, spec)
    assert got.dtype == want.dtype and np.array_equal(got, want)
    out = np.full((1, 3, *spec.imgsz), np.nan, np.float32)
    again, _ = preprocess(img, spec, out=out)
    assert np.array_equal(again, want)
    assert (again is out) == (spec.dtype == "float32")


@pytest.mark.parametrize(("h", "w"), SHAPES)
def test_letterbox_into_a_given_buffer_equals_a_new_one(h, w):
    spec = LetterboxSpec(imgsz=(64, 96))
    img = image(h, w)
    want, info = letterbox(img, spec)
    out = np.full((64, 96, 3), 7, np.uint8)
    got, info2 = letterbox(img, spec, out=out)
    assert got is out and info2 == info
    np.testing.assert_array_equal(got, want)
