"""Daemon sources: every frame for files, newest frame for live, bad frames counted, RTSP loss and reconnect."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from edgekit.core.errors import DataError
from edgekit.deploy.daemon.config import SourceConfig
from edgekit.deploy.daemon.server import free_port
from edgekit.deploy.daemon.sources import FrameSource, csi_pipeline, source_kind
from tests.daemon.helpers import N_VIDEO

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("uri,kind", [("rtsp://cam/s", "rtsp"), ("/dev/video0", "v4l2"), ("v4l2:///dev/video1", "v4l2"),
                                      ("csi://0", "gstreamer"), ("videotestsrc ! appsink", "gstreamer"),
                                      ("clip.mp4", "file")])
def test_source_kind(uri, kind):
    assert source_kind(uri) == kind


def test_csi_pipeline_is_an_argus_appsink_pipeline():
    p = csi_pipeline(1, 1920, 1080, 30)
    assert p.startswith("nvarguscamerasrc sensor-id=1 ") and p.endswith("appsink drop=true max-buffers=1 sync=false")
    assert "width=1920, height=1080, framerate=30/1" in p


def test_file_gives_every_frame_and_loops(media):
    src = FrameSource(SourceConfig(uri=str(media["video"])))
    assert not src.live and len(list(src.frames())) == N_VIDEO and src.counters.state == "ended"
    looped = FrameSource(SourceConfig(uri=str(media["video"]), loop=True))
    it = looped.frames()
    assert len([next(it) for _ in range(2 * N_VIDEO + 3)]) == 2 * N_VIDEO + 3
    looped.stop()


def test_missing_source_is_a_one_line_error(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        FrameSource(SourceConfig(uri=str(tmp_path / "none.mp4")))


def test_corrupt_images_are_skipped_and_counted(media, tmp_path):
    folder = tmp_path / "frames"
    shutil.copytree(media["folder"], folder)
    (folder / "img_02.png").write_bytes(b"\x89PNG but not really")
    src = FrameSource(SourceConfig(uri=str(folder)))
    frames = list(src.frames())
    assert len(frames) == len(list(media["folder"].iterdir())) - 1 and src.counters.bad == 1


def test_realtime_file_keeps_only_the_newest_frame(media):
    """Paced to 30 fps like a camera; a consumer at 5 fps sees fresh frames and the rest count as drops."""
    src = FrameSource(SourceConfig(uri=str(media["video"]), realtime=True))
    assert src.live
    got = []
    for frame in src.frames():
        got.append(frame)
        time.sleep(0.2)
    assert src.counters.frames == N_VIDEO and src.counters.dropped > N_VIDEO // 2
    assert len(got) + src.counters.dropped == N_VIDEO


def test_bad_frames_reach_metrics(media, tmp_path):
    import httpx

    from tests.daemon.helpers import make_daemon, wait_for

    folder = tmp_path / "frames"
    shutil.copytree(media["folder"], folder)
    (folder / "img_01.png").write_bytes(b"garbage")
    d = make_daemon(media, source=SourceConfig(uri=str(folder), loop=True)).start()
    try:
        d.wait_ready()
        wait_for(lambda: d.service.published > 20)
        text = httpx.get(d.url + "/metrics").text
        bad = [ln for ln in text.splitlines() if ln.startswith("edgekit_bad_frames_total ")]
        assert float(bad[0].split()[1]) >= 5
    finally:
        d.stop()


# ---- a real RTSP server (Debian's gst-rtsp-server through python3-gi) ------------------------------
def _rtsp_ready() -> bool:
    if not Path("/usr/bin/python3").exists():
        return False
    probe = "import gi; gi.require_version('GstRtspServer', '1.0'); from gi.repository import GstRtspServer"
    return subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True).returncode == 0


def start_rtsp(port: int, video: Path) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    p = subprocess.Popen(["/usr/bin/python3", str(HERE / "rtsp_server.py"), str(port), str(video)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    return p


@pytest.mark.skipif(not _rtsp_ready(), reason="no gst-rtsp-server (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi "
                                              "gstreamer1.0-plugins-{good,bad,ugly} gstreamer1.0-libav)")
def test_rtsp_loss_and_reconnect(media):
    port = free_port()
    server = start_rtsp(port, media["video"])
    cfg = SourceConfig(uri=f"rtsp://127.0.0.1:{port}/s", stall_timeout_s=1.0, reconnect_min_s=0.2, reconnect_max_s=1.0)
    src = FrameSource(cfg)
    assert src.live and src.kind == "rtsp"
    it = src.frames()
    try:
        first = next(it)
        assert isinstance(first, np.ndarray) and first.shape == (120, 160, 3)
        server.kill()  # the source goes away
        server.wait()
        t = time.monotonic()
        while src.counters.losses == 0 and time.monotonic() - t < 15:
            time.sleep(0.05)
        assert src.counters.losses >= 1
        server = start_rtsp(port, media["video"])  # and comes back on the same address
        n_before = src.counters.frames
        t = time.monotonic()
        while src.counters.frames <= n_before and time.monotonic() - t < 15:
            frame = next(it)  # the first may be the newest frame from before the loss
        assert frame.shape == (120, 160, 3) and src.counters.frames > n_before
        assert src.counters.reconnects >= 1 and src.counters.state == "reading"
    finally:
        src.stop()
        server.kill()
        server.wait()


@pytest.mark.skipif(not _rtsp_ready(), reason="no gst-rtsp-server (see test_rtsp_loss_and_reconnect)")
def test_daemon_reports_rtsp_loss_and_serves_again(media):
    import httpx

    from tests.daemon.helpers import make_daemon, wait_for

    port = free_port()
    server = start_rtsp(port, media["video"])
    cfg = SourceConfig(uri=f"rtsp://127.0.0.1:{port}/s", stall_timeout_s=1.0, reconnect_min_s=0.2, reconnect_max_s=1.0)
    d = make_daemon(media, source=cfg).start()
    try:
        d.wait_ready()
        wait_for(lambda: d.service.published > 5)
        server.kill()
        server.wait()
        wait_for(lambda: httpx.get(d.url + "/health/ready").json()["source"] == "reconnecting", timeout=15)
        server = start_rtsp(port, media["video"])
        before = d.service.published
        wait_for(lambda: d.service.published > before + 5, timeout=20)
        text = httpx.get(d.url + "/metrics").text
        value = {ln.split()[0]: float(ln.split()[1]) for ln in text.splitlines() if ln.startswith("edgekit_source_")}
        assert value["edgekit_source_losses"] >= 1 and value["edgekit_source_reconnects"] >= 1
        assert httpx.get(d.url + "/health/ready").json()["source"] == "reading"
    finally:
        d.stop()
        server.kill()
        server.wait()
