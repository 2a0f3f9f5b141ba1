"""POST/GET/DELETE /references on a real daemon serving a RefDet bundle (real HTTP on 127.0.0.1)."""

from __future__ import annotations

import cv2
import httpx
import numpy as np
import pytest

from edgekit.core.detections import Detections
from tests.daemon.helpers import TOKEN, make_daemon, wait_for
from tests.deploy.refdet_bundles import BLUE, CELL, RED, frame_with, photo, write_refdet_bundle

pytest.importorskip("python_multipart")
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(img: np.ndarray) -> bytes:
    return cv2.imencode(".png", img)[1].tobytes()


def _huge_bmp(side: int = 100_000) -> bytes:
    """A 64-byte 24-bit BMP whose header claims side x side pixels."""
    import struct

    info = struct.pack("<IiiHHIIiiII", 40, side, side, 1, 24, 0, 10, 0, 0, 0, 0)
    return b"BM" + struct.pack("<IHHI", 64, 0, 0, 54) + info + b"\0" * 10


@pytest.fixture(scope="module")
def refdet_daemon(tmp_path_factory, media):
    root = tmp_path_factory.mktemp("refdet_daemon")
    bundle = write_refdet_bundle(root / "models" / "refdet")
    frames = root / "frames"
    frames.mkdir()
    frame = frame_with(RED, (1, 2))
    frame[3 * CELL:, :CELL] = BLUE  # a red and a blue cell: the target decides which one is found
    for i in range(4):
        cv2.imwrite(str(frames / f"{i:03d}.png"), frame)
    from edgekit.deploy.daemon.config import SourceConfig

    d = make_daemon(dict(media, b1=bundle), source=SourceConfig(uri=str(frames), loop=True)).start()
    d.wait_ready()
    yield d
    d.stop()


def _found_centre(daemon, after: int):
    """The box centre (frame pixels) of the first frame published after ``after``."""
    wait_for(lambda: daemon.service.published > after + 3)
    dets = Detections.from_dict(httpx.get(daemon.url + "/detections/latest").json()["detections"])
    assert len(dets) == 1, dets
    return tuple(int(round(v)) for v in dets.boxes[0, :2])


def test_references_set_get_and_reset_change_what_is_detected(refdet_daemon):
    d = refdet_daemon
    got = httpx.get(d.url + "/references").json()
    assert got["target"]["source"] == "bundle default" and got["target"]["n_references"] == 2
    red_centre = (2 * CELL + CELL // 2, CELL + CELL // 2)
    assert _found_centre(d, d.service.published) == red_centre

    files = [("images", ("blue1.png", _png(photo(BLUE)), "image/png")),
             ("images", ("blue2.jpg", cv2.imencode(".jpg", photo(BLUE, (50, 40)))[1].tobytes(), "image/jpeg"))]
    r = httpx.post(d.url + "/references", files=files, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["target"]["source"] == "custom" and r.json()["target"]["n_references"] == 2
    assert httpx.get(d.url + "/references").json()["target"]["source"] == "custom"
    assert _found_centre(d, d.service.published) == (CELL // 2, 3 * CELL + CELL // 2)

    r = httpx.delete(d.url + "/references", headers=AUTH)
    assert r.status_code == 200 and r.json()["target"]["source"] == "bundle default"
    assert _found_centre(d, d.service.published) == red_centre


@pytest.mark.parametrize("files, needle", [
    ([("images", ("x.jpg", b"not an image at all", "image/jpeg"))], "images[1] (x.jpg, 19 bytes) is not a decodable"),
    ([("images", (f"{i}.png", b"", "image/png")) for i in range(4)], "got 4 files under 'images'"),
    ([("photos", ("a.png", b"\x89PNG", "image/png"))], "got 0 files under 'images'"),
    # decompression bombs: a few hundred KB under the body limit, 192 MB each once decoded (BGR)
    ([("images", ("bomb.png", lambda: _png(np.zeros((8000, 8000), np.uint8)), "image/png"))], "8000 x 8000 pixels"),
    ([("images", ("bomb.jpg", lambda: cv2.imencode(".jpg", np.zeros((8000, 8000), np.uint8))[1].tobytes(),
                  "image/jpeg"))], "8000 x 8000 pixels"),
    # a BMP header claiming 100000 x 100000: OpenCV 5's imdecode raises instead of returning None
    ([("images", ("huge.bmp", lambda: _huge_bmp(), "image/bmp"))], "images[1] (huge.bmp, 64 bytes) is not a decodable"),
])
def test_bad_uploads_are_400_in_one_line_and_keep_the_target(refdet_daemon, files, needle):
    d = refdet_daemon
    before = httpx.get(d.url + "/references").json()["target"]
    files = [(k, (n, body() if callable(body) else body, t)) for k, (n, body, t) in files]
    r = httpx.post(d.url + "/references", files=files, headers=AUTH)
    assert r.status_code == 400, r.text
    detail = r.json()["detail"]
    assert needle in detail and "\n" not in detail
    assert httpx.get(d.url + "/references").json()["target"] == before


def test_references_need_the_token_and_multipart(refdet_daemon):
    d = refdet_daemon
    files = [("images", ("a.png", _png(photo(RED)), "image/png"))]
    assert httpx.post(d.url + "/references", files=files).status_code == 401
    assert httpx.delete(d.url + "/references").status_code == 401
    r = httpx.post(d.url + "/references", json={"images": []}, headers=AUTH)
    assert r.status_code == 400 and "multipart/form-data" in r.json()["detail"]


def test_an_obb_bundle_has_no_references(daemon):
    r = httpx.get(daemon.url + "/references")
    assert r.status_code == 409 and "takes no references" in r.json()["detail"]
    r = httpx.post(daemon.url + "/references", files=[("images", ("a.png", _png(photo(RED)), "image/png"))],
                   headers=AUTH)
    assert r.status_code == 409
