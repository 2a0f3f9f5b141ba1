"""Hostile image files given to the commands that read images (see HOSTILE_CASES.md for the whole corpus).

A PNG whose header claims 100000 x 100000 pixels makes OpenCV 5's imread raise ``cv2.error`` (OpenCV 4
returns None): every reader must turn it into its one-line "cannot be decoded", never a traceback.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest

from tests.deploy.bundles import write_test_bundle
from tests.robustness.conftest import assert_one_line_error, run_cli


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def huge_header_png(path: Path, side: int = 100_000) -> Path:
    """A 74-byte PNG whose IHDR claims side x side RGB pixels (a decompression-bomb header)."""
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", zlib.compress(b"\0" * 1000))
                     + _chunk(b"IEND", b""))
    return path


def test_imread_and_imdecode_return_none_for_a_huge_header(tmp_path: Path) -> None:
    from edgekit.core.image_files import imdecode, imread

    png = huge_header_png(tmp_path / "huge.png")
    assert imread(png) is None
    assert imdecode(png.read_bytes()) is None
    assert imdecode(b"") is None


def test_predict_obb_on_a_huge_header_image_is_one_line(tmp_path: Path) -> None:
    bundle = write_test_bundle(tmp_path / "bundle")
    png = huge_header_png(tmp_path / "huge.png")
    res = run_cli(["predict", "obb", bundle, png, "--out", tmp_path / "out"], cwd=tmp_path, timeout=120)
    assert_one_line_error(res, names=[png])


def test_predict_refdet_with_a_huge_header_reference_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    from tests.deploy.refdet_bundles import write_refdet_bundle

    bundle = write_refdet_bundle(tmp_path / "refdet")
    png = huge_header_png(tmp_path / "huge.png")
    video = tmp_path / "v.mp4"
    video.write_bytes(b"")  # never reached: the references are read first
    res = run_cli(["predict", "refdet", bundle, "--refs", png, "--video", video, "--out", tmp_path / "out",
                   "--no-video", "--no-progress"], cwd=tmp_path, timeout=120)
    assert_one_line_error(res, names=[png])
