"""A tiny real bundle, a generated video and image folder, and a real daemon on 127.0.0.1."""

from __future__ import annotations

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
pytest.importorskip("prometheus_client")

from tests.daemon.helpers import TOKEN, make_daemon, write_folder, write_video  # noqa: E402
from tests.deploy.bundles import write_test_bundle  # noqa: E402


@pytest.fixture(scope="session")
def media(tmp_path_factory):
    root = tmp_path_factory.mktemp("daemon")
    models = root / "models"
    b1 = write_test_bundle(models / "b1")
    write_test_bundle(root / "staging" / "b2", imgsz=32)
    broken = write_test_bundle(models / "broken")
    (broken / "model.onnx").write_bytes(b"not the file the manifest hashed")
    token_file = root / "token"
    token_file.write_text(TOKEN)
    return {"root": root, "models": models, "b1": b1, "b2_src": root / "staging" / "b2", "broken": broken,
            "video": write_video(root / "v.mp4"), "folder": write_folder(root / "frames"), "token_file": token_file}


@pytest.fixture(scope="module")
def daemon(media):
    d = make_daemon(media).start()
    d.wait_ready()
    yield d
    d.stop()
