"""Monitors: W&B mode resolution, optional backends skipped with a recorded note, signal-map rendering."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from edgekit.train.obb.config import LoggingConfig
from edgekit.train.obb.monitoring import MetricSinks, render_signal_map, resolve_wandb_mode, write_signal_map
from edgekit.train.run import RunDir, read_run_meta


@pytest.mark.parametrize("requested, env, expected", [
    ("disabled", {"WANDB_API_KEY": "k"}, "disabled"),
    ("online", {}, "online"),
    ("auto", {}, "offline"),  # no key anywhere
    ("auto", {"WANDB_MODE": "disabled"}, "disabled"),
    ("auto", {"WANDB_API_KEY": "k", "WANDB_BASE_URL": "http://127.0.0.1:9"}, "offline"),  # key, no server
])
def test_wandb_mode(monkeypatch, tmp_path, requested, env, expected):
    for k in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc key
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert resolve_wandb_mode(requested) == expected


def test_missing_backends_are_skipped_with_a_note(monkeypatch, tmp_path):
    for mod in ("wandb", "mlflow", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, mod, None)  # import fails exactly as when not installed
    run = RunDir.create(tmp_path, "r")
    sinks = MetricSinks.open(LoggingConfig(wandb="offline", mlflow=True, tensorboard=True), run, {})
    assert sinks.active == []
    assert [n.split()[0] for n in sinks.notes] == ["wandb", "mlflow", "tensorboard"]
    assert read_run_meta(run)["logging_notes"] == sinks.notes
    sinks.log({"a": 1.0}, step=0)  # a no-op, not an error
    sinks.close()


def test_disabled_wandb_opens_nothing(tmp_path):
    sinks = MetricSinks.open(LoggingConfig(wandb="disabled"), RunDir.create(tmp_path, "r"), {})
    assert sinks.active == [] and sinks.notes == []


def test_signal_map_draws_distance_and_boxes(tmp_path):
    img = np.zeros((64, 64, 3), np.float32)
    dist = np.stack([np.zeros((4, 4)), np.full((4, 4), 2.0)]).astype(np.float32)
    corners = [np.array([[10, 10], [50, 10], [50, 30], [10, 30]], np.float64)]
    panel = render_signal_map(img, dist, corners)
    assert panel.shape == (256, 512, 3)  # enlarged 4x to be readable, one panel per layer
    assert not np.array_equal(panel[:, :256], panel[:, 256:])  # distance 0 vs 2 colour differently
    assert (panel[40, 40:200] == 255).all()  # the box's top edge (y=10 -> 40) in white
    signal = {"img": torch.rand(1, 3, 64, 64), "dist": torch.rand(1, 2, 4, 4),
              "bboxes": torch.tensor([[0.5, 0.5, 0.4, 0.2, 0.5]]), "batch_idx": torch.tensor([0.0])}
    path = write_signal_map(tmp_path / "s.png", signal, [15, 18])
    assert path.is_file() and path.read_bytes()[:4] == b"\x89PNG"
    assert write_signal_map(tmp_path / "none.png", None, [15]) is None
