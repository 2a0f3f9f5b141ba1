"""Every endpoint of a real daemon on 127.0.0.1, with real HTTP and WebSocket clients."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from edgekit.core.detections import Detections
from tests.daemon.helpers import FOLDER_SHAPES, TOKEN, copy_bundle, make_daemon, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ws_url(daemon, path="/ws/detections"):
    return daemon.url.replace("http://", "ws://") + path


def ws_messages(url, n, timeout=10.0, **kw):
    from websockets.sync.client import connect

    out = []
    # close_timeout: uvicorn 0.33's legacy websockets protocol (Python 3.8) leaves the TCP close to the
    # client, which would wait its default 10 s for it.
    kw.setdefault("close_timeout", 1)
    with connect(url, open_timeout=timeout, **kw) as ws:
        while len(out) < n:
            out.append(json.loads(ws.recv(timeout=timeout)))
    return out


def test_health_live_and_ready(daemon):
    live = httpx.get(daemon.url + "/health/live")
    assert live.status_code == 200 and live.json()["status"] == "alive"
    ready = httpx.get(daemon.url + "/health/ready")
    assert ready.status_code == 200, ready.text
    assert ready.json()["state"] == "ready" and ready.json()["model"] == "b1"


def test_ready_is_503_until_warmed_up(media):
    d = make_daemon(media, warmup_frames=3000).start()  # a long warm-up keeps it not-ready for a while
    try:
        r = httpx.get(d.url + "/health/ready")
        assert r.status_code == 503 and r.json()["state"] in ("loading_model", "warming_up")
        assert httpx.get(d.url + "/health/live").status_code == 200  # alive while not ready
        d.wait_ready()
        assert httpx.get(d.url + "/health/ready").status_code == 200
    finally:
        d.stop()


def test_metrics_parse_with_the_prometheus_parser(daemon):
    from prometheus_client.parser import text_string_to_metric_families

    wait_for(lambda: daemon.service.published > 10)
    text = httpx.get(daemon.url + "/metrics").text
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    frames = {s.labels["stage"]: s.value for s in fams["edgekit_frames"].samples if s.name.endswith("_total")}
    assert set(frames) == {"capture", "infer", "publish"} and min(frames.values()) > 10
    dropped = {s.labels["stage"] for s in fams["edgekit_frames_dropped"].samples if s.name.endswith("_total")}
    assert dropped == {"capture", "infer", "publish"}
    counts = {s.labels["stage"]: s.value for s in fams["edgekit_stage_latency_seconds"].samples
              if s.name.endswith("_count")}
    assert set(counts) == {"read", "preprocess", "infer", "decode", "end_to_end"} and counts["infer"] > 10
    assert fams["edgekit_fps"].samples[0].value > 0
    assert fams["edgekit_ready"].samples[0].value == 1
    assert {s.labels["queue"] for s in fams["edgekit_queue_depth"].samples} == {"capture", "publish"}
    info = fams["edgekit_model_info"].samples[0].labels if "edgekit_model_info" in fams else fams["edgekit_model"].samples[0].labels
    assert info["name"] == "b1" and info["backend"] == "onnxruntime" and info["imgsz"] == "64x64"


def test_latest_and_websocket_follow_the_detections_schema(daemon):
    latest = httpx.get(daemon.url + "/detections/latest").json()
    assert latest["frame_shape"] == [120, 160] and latest["model"] == "b1"
    assert len(Detections.from_dict(latest["detections"])) > 0
    msgs = ws_messages(ws_url(daemon), 20)
    seqs = [m["frame"] for m in msgs]
    assert seqs == sorted(seqs) and len(set(seqs)) == 20
    for m in msgs:
        Detections.from_dict(m["detections"])
        assert m["timings"]["latency_ms"] > 0


def test_detections_equal_the_offline_detector(media):
    """Frames of different sizes (an image folder, looped): each message equals Bundle.detector() on its image."""
    import cv2

    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.daemon.config import SourceConfig
    from edgekit.deploy.sources import list_image_files

    images = [cv2.imread(str(p)) for p in list_image_files(media["folder"])]
    with Bundle.open(media["b1"]).detector() as det:
        offline = [det.detect(im) for im in images]
    d = make_daemon(media, source=SourceConfig(uri=str(media["folder"]), loop=True), subscriber_queue=64)
    d.start().wait_ready()
    try:
        msgs = ws_messages(ws_url(d), 3 * len(images))
    finally:
        d.stop()
    for m in msgs:
        i = m["frame"] % len(images)
        assert tuple(m["frame_shape"]) == FOLDER_SHAPES[i]
        assert Detections.from_dict(m["detections"]) == offline[i], f"frame {m['frame']}"


def stalled_ws_client(daemon):
    """A WebSocket client that completes the handshake and then never reads (tiny receive buffer)."""
    import base64
    import os
    import socket

    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
    sock.connect((daemon.cfg.host, daemon.cfg.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /ws/detections HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    assert b" 101 " in sock.recv(200)
    return sock


def test_slow_subscriber_never_stalls_inference(daemon):
    slow = stalled_ws_client(daemon)
    try:
        wait_for(lambda: len(daemon.service.fanout) >= 1)
        before = daemon.service.published
        fast = ws_messages(ws_url(daemon), 1500)  # meanwhile the slow client reads nothing
        assert len(fast) == 1500 and daemon.service.published - before >= 1500
        text = httpx.get(daemon.url + "/metrics").text
        drops = [ln for ln in text.splitlines() if ln.startswith('edgekit_frames_dropped_total{stage="publish"}')]
        assert float(drops[0].split()[-1]) > 0  # the slow client's own queue lost its oldest frames
    finally:
        slow.close()


def test_reload_swaps_the_model(daemon, media):
    copy_bundle(media["b2_src"], media["models"] / "b2")
    r = httpx.post(daemon.url + "/model/reload", json={"bundle": "b2"}, headers=AUTH)
    assert r.status_code == 202, r.text
    wait_for(lambda: httpx.get(daemon.url + "/model").json()["reload"]["state"] in ("ok", "failed"))
    body = httpx.get(daemon.url + "/model").json()
    assert body["reload"]["state"] == "ok" and body["model"]["name"] == "b2" and body["model"]["imgsz"] == "32x32"
    wait_for(lambda: httpx.get(daemon.url + "/detections/latest").json()["model"] == "b2")
    r = httpx.post(daemon.url + "/model/reload", json={"bundle": "b1"}, headers=AUTH)
    assert r.status_code == 202
    wait_for(lambda: httpx.get(daemon.url + "/model").json()["model"]["name"] == "b1")


def test_failed_reload_keeps_serving_the_old_model(daemon):
    wait_for(lambda: daemon.service.reload_status["state"] in ("none", "ok"))
    current = daemon.service.model_info()["name"]
    r = httpx.post(daemon.url + "/model/reload", json={"bundle": "broken"}, headers=AUTH)
    assert r.status_code == 202
    wait_for(lambda: httpx.get(daemon.url + "/model").json()["reload"]["state"] != "loading")
    body = httpx.get(daemon.url + "/model").json()
    assert body["reload"]["state"] == "failed" and "model.onnx" in body["reload"]["error"]
    assert body["model"]["name"] == current
    before = daemon.service.published
    wait_for(lambda: daemon.service.published > before + 10)  # frames still flow on the old model
    assert httpx.get(daemon.url + "/detections/latest").json()["model"] == current
    assert httpx.get(daemon.url + "/health/ready").status_code == 200


@pytest.mark.parametrize("name,status", [("../b1", 400), ("..", 400), ("/etc", 400), ("b1/../b1", 400),
                                         (".hidden", 400), ("missing", 404), ("outside", 400)])
def test_reload_only_from_the_models_directory(daemon, media, name, status):
    link = media["models"] / "outside"
    if not link.exists():
        link.symlink_to(media["b2_src"], target_is_directory=True)  # a symlink out of the models dir
    r = httpx.post(daemon.url + "/model/reload", json={"bundle": name}, headers=AUTH)
    assert r.status_code == status, r.text


def test_mutating_endpoints_need_the_token(daemon):
    assert httpx.post(daemon.url + "/model/reload", json={"bundle": "b1"}).status_code == 401
    bad = {"Authorization": "Bearer wrong-token-wrong-token"}
    assert httpx.post(daemon.url + "/model/reload", json={"bundle": "b1"}, headers=bad).status_code == 401
    assert httpx.post(daemon.url + "/model/reload", json={"bundle": "b1", "x": 1}, headers=AUTH).status_code == 422


def test_upload_size_limit(daemon):
    big = b"{" + b" " * 2_000_000 + b"}"
    r = httpx.post(daemon.url + "/model/reload", content=big, headers=dict(AUTH, **{"content-type": "application/json"}))
    assert r.status_code == 413

    def chunks():  # no content-length: the limit is counted while streaming
        for _ in range(30):
            yield b" " * 100_000

    r = httpx.post(daemon.url + "/model/reload", content=chunks(), headers=AUTH)
    assert r.status_code == 413


def test_openapi_docs(daemon):
    spec = httpx.get(daemon.url + "/openapi.json").json()
    for path in ("/health/live", "/health/ready", "/metrics", "/detections/latest", "/model/reload", "/"):
        assert path in spec["paths"], path
    assert httpx.get(daemon.url + "/docs").status_code == 200


def test_live_snapshot_has_frame_and_counters(daemon):
    s = httpx.get(daemon.url + "/live/snapshot").json()
    assert s["state"] == "ready" and s["frame"]["jpeg"] and set(s["dropped"]) == {"capture", "infer", "publish"}
    assert time.time() - s["frame"]["payload"]["time"] < 5


def test_serve_briefly_reports_what_metrics_said(media):
    """What `edgekit demo` prints at its end."""
    from edgekit.deploy.daemon import serve_briefly

    m = serve_briefly(media["b1"], media["folder"], 0.5)
    assert m["edgekit_frames_total{stage=publish}"] > 0 and m["edgekit_ready"] == 1.0
    assert "edgekit_stage_latency_seconds_sum{stage=end_to_end}" in m and "edgekit_fps" in m


def test_building_engine_state_is_visible_while_ready_is_503(media, monkeypatch):
    """TensorRT is faked here (none installable): the build is a wait the test releases."""
    import threading

    from edgekit.deploy.bundle import Bundle

    real, gate = Bundle.detector, threading.Event()

    def building(self, backend="onnxruntime", precision="fp32", **kw):
        gate.wait(20)  # stands in for a TensorRT engine build (minutes on a Xavier NX)
        return real(self, "onnxruntime", "fp32")

    monkeypatch.setattr(Bundle, "detector", building)
    d = make_daemon(media, backend="tensorrt").start()
    try:
        live = httpx.get(d.url + "/health/live").json()
        assert live["status"] == "alive" and live["state"] == "building_engine"
        ready = httpx.get(d.url + "/health/ready")
        assert ready.status_code == 503 and ready.json()["state"] == "building_engine"
        gate.set()
        d.wait_ready()
        assert httpx.get(d.url + "/health/ready").status_code == 200
    finally:
        gate.set()
        d.stop()


def test_sliced_serving_equals_the_offline_tiled_detector(media):
    """`tile` in the daemon config serves what Bundle.detector(tile=...) detects offline."""
    import cv2

    from edgekit.deploy.bundle import Bundle
    from edgekit.deploy.daemon.config import SourceConfig
    from edgekit.deploy.sources import list_image_files

    images = [cv2.imread(str(p)) for p in list_image_files(media["folder"])]
    with Bundle.open(media["b1"]).detector(tile=48, tile_overlap=8) as det:
        offline = [det(im) for im in images]
    d = make_daemon(media, source=SourceConfig(uri=str(media["folder"]), loop=True), subscriber_queue=64, tile=48,
                    tile_overlap=8)
    d.start().wait_ready()
    try:
        msgs = ws_messages(ws_url(d), 2 * len(images))
    finally:
        d.stop()
    for m in msgs:
        assert Detections.from_dict(m["detections"]) == offline[m["frame"] % len(images)], f"frame {m['frame']}"
