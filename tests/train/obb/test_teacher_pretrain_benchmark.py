"""benchmarks/teacher_pretrain.py: patch targets from the generator's boxes, both weight layouts through the
resolver (tiny files the test writes), and the CPU smoke run end to end."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from edgekit.data.synth.shapes import ObjectSpec
from edgekit.train.obb.config import TeacherConfig
from edgekit.train.obb.teacher import create_teacher_model, resolve_teacher_weights

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "teacher_pretrain.py"
TINY = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("teacher_pretrain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["teacher_pretrain"] = module  # the render pool's workers look its functions up by module name
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("teacher_pretrain", None)


def test_patch_targets_mark_the_boxes_cells_centre_and_orientation(bench) -> None:
    # A 40 x 12 px box at (40, 40), rotated 90 degrees: covers x 34..46, y 20..60 of a 64 px canvas.
    big = ObjectSpec(2, 40.0, 40.0, 40.0, 12.0, math.pi / 2, (0, 0, 0), (0, 0, 0))
    small = ObjectSpec(5, 8.0, 8.0, 6.0, 3.0, 0.0, (0, 0, 0), (0, 0, 0))  # smaller than a patch
    t = bench.patch_targets([big, small], 64, n_classes=7).astype(np.float32)
    assert t.shape == (7 + 4, 4, 4)
    assert t[2, 1:4, 2].min() >= 0.99 and t[2, 0].max() == 0 and t[2][:, [0, 1, 3]].max() == 0
    assert t[5, 0, 0] == 1.0 and t[5].sum() == 1.0  # the tiny object still marks its patch
    assert t[7, 2, 2] == 1.0 and t[7, 0, 0] == 1.0 and t[7].sum() == 2.0  # centres
    covered = t[10] > 0
    assert covered[2, 2] and np.allclose(t[8][2, 2], math.cos(math.pi), atol=1e-3)  # cos 2θ of a 90 degree box
    assert np.allclose(t[9][covered], 0.0, atol=1e-3)


@pytest.fixture(scope="module")
def tiny_model():
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch16_dinov3", pretrained=False, **TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model


def test_both_layouts_resolve_and_load_bit_exactly(bench, tiny_model, tmp_path) -> None:
    timm_path, meta_path = bench.save_both(tiny_model, tmp_path)
    meta = torch.load(meta_path, weights_only=True)
    assert "storage_tokens" in meta and "reg_token" not in meta and "blocks.0.ls1.gamma" in meta
    assert {"mask_token", "rope_embed.periods", "blocks.0.attn.qkv.bias"} <= set(meta)
    reference = tiny_model.state_dict()
    # weights: auto finds Meta's release name in the weights dir; an explicit path takes either file.
    auto = TeacherConfig(weights_dir=str(meta_path.parent), model_kwargs=TINY)
    assert resolve_teacher_weights(auto) == meta_path
    for path in (timm_path, meta_path):
        cfg = TeacherConfig(weights=str(path), model_kwargs=TINY)
        loaded = create_teacher_model(cfg, resolve_teacher_weights(cfg)).state_dict()
        assert set(loaded) == set(reference)
        for k, v in reference.items():
            assert torch.equal(loaded[k], v), (path.name, k)


def test_augment_turns_and_mirrors_the_orientation_target_with_the_image(bench) -> None:
    import random

    # one 40 x 8 px object at 30 degrees on a 128 px scene: targets after each augmentation must equal the
    # targets of the transformed object (rendered by patch_targets itself)
    spec = ObjectSpec(1, 56.0, 72.0, 40.0, 8.0, math.radians(30), (0, 0, 0), (0, 0, 0))
    t = torch.from_numpy(bench.patch_targets([spec], 128, n_classes=7))[None]
    img = torch.zeros(1, 128, 128, 3, dtype=torch.uint8)
    zero, one = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)
    seen = set()
    for seed in range(40):
        rng = random.Random(seed)
        state = rng.getstate()
        _, y = bench.augment(img, t, 128, 7, rng, zero, one, jitter=False)
        rng.setstate(state)
        k, mirror = rng.randrange(4), rng.random() < 0.5
        seen.add((k, mirror))
        angle = spec.angle - k * math.pi / 2  # torch.rot90 turns the image counter-clockwise on screen
        cx, cy = spec.cx, spec.cy
        for _ in range(k):
            cx, cy = cy, 128 - cx
        if mirror:
            cx, angle = 128 - cx, math.pi - angle
        want = bench.patch_targets([ObjectSpec(1, cx, cy, 40.0, 8.0, angle, (0, 0, 0), (0, 0, 0))], 128, 7)
        covered = want[10] > 0
        assert np.allclose(y[0, 8:10].numpy()[:, covered], want[8:10][:, covered], atol=2e-2), (k, mirror)
    assert len(seen) == 8


def test_presence_loss_up_weights_the_rare_positive_patches(bench) -> None:
    target = torch.zeros(1, 7 + 4, 4, 4)
    target[0, 3, 1, 1] = 1.0  # one positive patch of 112
    logits = torch.full((1, 7 + 3, 4, 4), -3.0)
    _, low = bench.dense_loss(logits, target, 7, pos_weight=1.0)
    _, high = bench.dense_loss(logits, target, 7, pos_weight=10.0)
    assert float(high["presence"]) > 3 * float(low["presence"])  # predicting "nothing" is no longer cheap


def test_scene_stream_renders_in_the_background_and_fills_the_buffer(bench) -> None:
    import argparse

    args = argparse.Namespace(scene_side=64, difficulty="hard")
    stream = bench.SceneStream(20, 5, args, workers=1, chunk=8)
    try:
        assert stream.drain(torch.device("cpu"), wait_for=1) >= 8
        while stream.pending:
            stream.drain(torch.device("cpu"), wait_for=20)
        assert stream.filled == 20 and stream.imgs.shape == (20, 64, 64, 3) and stream.targets.shape == (20, 11, 4, 4)
        ref = bench.render_chunk((5, 0, 20, 64, "hard"))
        order = sorted(range(20), key=lambda i: stream.imgs[i].numpy().tobytes())
        assert sorted(r.tobytes() for r in ref[0]) == [stream.imgs[i].numpy().tobytes() for i in order]
    finally:
        stream.close()


def test_smoke_run_trains_saves_and_checks_both_files(bench, tmp_path) -> None:
    assert bench.main(["--smoke-cpu", "--out", str(tmp_path), "--seconds", "2"]) == 0
    result = json.loads((tmp_path / "teacher_pretrain.json").read_text())
    assert result["train"]["steps"] > 0 and result["arch"] == "vit_small_patch16_dinov3"
    assert result["train"]["unique_scenes"] >= 16
    m = result["val_patch_metrics"]
    assert 0.0 <= m["presence_f1"] <= m["presence_f1_best"] <= 1.0 and m["best_threshold"] in bench.THRESHOLDS
    assert result["loading"]["max_abs_diff_vs_trained"] == {"timm": 0.0, "meta": 0.0}
    assert (tmp_path / "timm" / "vit_small_patch16_dinov3.safetensors").is_file()
    assert (tmp_path / "meta" / "dinov3_vits16_pretrain_synth.pth").is_file()
