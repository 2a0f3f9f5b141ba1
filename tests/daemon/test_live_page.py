"""The live page in a real headless Chromium: it loads, draws the frame and the boxes (green), shows counters."""

from __future__ import annotations

import shutil
import subprocess

import pytest


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no chromium here (Debian: apt-get install -y chromium)")


def screenshot(url: str, out, dom: bool = False) -> str:
    args = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            "--virtual-time-budget=4000", "--window-size=1280,800"]
    args += ["--dump-dom"] if dom else [f"--screenshot={out}"]
    r = subprocess.run(args + [url], capture_output=True, text=True, timeout=60)
    return r.stdout


def test_live_page_draws_frames_and_boxes(daemon, tmp_path):
    import cv2

    png = tmp_path / "live.png"
    screenshot(daemon.url + "/", png)
    assert png.is_file(), "chromium wrote no screenshot"
    img = cv2.imread(str(png))
    assert img is not None and img.std() > 5, "blank screenshot"
    b, g, r = (img[..., i].astype(int) for i in range(3))
    green = (g > 200) & (r < 90) & (b < 90)  # the boxes; the generated video holds no such colour
    assert green.sum() > 50, f"no boxes drawn (green pixels: {int(green.sum())}); screenshot {png}"
    dom = screenshot(daemon.url + "/", None, dom=True)
    assert 'id="state">ready<' in dom and 'id="model">b1 (onnxruntime fp32)<' in dom
    n = dom.split('id="n">')[1].split("<")[0]
    assert int(n) >= 1


def test_live_page_needs_the_token_off_loopback(media):
    """Bound on all interfaces with a token; a client on this host's non-loopback address is off loopback."""
    import socket

    import httpx

    from tests.daemon.helpers import TOKEN, make_daemon

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.200", 9))  # no packet is sent: this only picks the outgoing interface
            ip = s.getsockname()[0]
    except OSError:
        pytest.skip("no non-loopback IPv4 address here")
    if ip.startswith("127."):
        pytest.skip("no non-loopback IPv4 address here")
    d = make_daemon(media, host="0.0.0.0").start()
    try:
        d.wait_ready()
        base = f"http://{ip}:{d.cfg.port}"
        assert httpx.get(base + "/").status_code == 401
        assert httpx.get(base + "/live/snapshot").status_code == 401
        assert httpx.get(base + "/", headers={"Authorization": f"Bearer {TOKEN}"}).status_code == 200
        assert httpx.get(base + f"/live/snapshot?token={TOKEN}").status_code == 200
        assert httpx.get(base + "/health/ready").status_code == 200  # probes stay open
        assert httpx.get(f"http://127.0.0.1:{d.cfg.port}/").status_code == 200  # loopback needs none
        from websockets.sync.client import connect

        url = f"ws://{ip}:{d.cfg.port}/ws/detections"
        with pytest.raises(Exception), connect(url, open_timeout=5, close_timeout=1) as ws:  # noqa: B017 - refused (1008)
            ws.recv(timeout=5)
        with connect(url + f"?token={TOKEN}", open_timeout=5, close_timeout=1) as ws:
            assert ws.recv(timeout=5)
    finally:
        d.stop()


def test_fatal_runtime_error_makes_ready_503(media):
    from fastapi.testclient import TestClient

    from tests.daemon.helpers import make_daemon, wait_for

    d = make_daemon(media).start()
    d.wait_ready()

    def broken(feed):
        raise RuntimeError("device lost")

    # a runtime failure in the middle of serving (the pipelined loop submits to the device, the
    # sequential one infers: break both)
    d.service._detector.infer = broken
    d.service._detector.submit = broken
    try:
        wait_for(lambda: d.service.done.is_set())
        assert d.service.state == "failed" and d.service.exit_code == 3 and "device lost" in d.service.error
        r = TestClient(d.app).get("/health/ready")
        assert r.status_code == 503 and r.json()["state"] == "failed"
    finally:
        d.stop()
