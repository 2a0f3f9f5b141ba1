"""The teacher's CUDA paths against its eager, synchronous path: graph replay, side-stream launch, fallbacks.

Every test needs a CUDA GPU (``-m gpu``); the CPU fallbacks are covered in test_obb_teacher.py.
"""

from __future__ import annotations

import copy
import logging

import pytest
import torch

from edgekit.train.obb.config import DistillConfig, TeacherConfig
from edgekit.train.obb.teacher import Teacher, create_teacher_model

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

TOL = dict(rtol=2e-2, atol=2e-2)  # fp16 teacher


def _teachers(imgsz=None, dtype="auto"):
    """(graphed, eager) teachers sharing one random-weight ViT-S/16 DINOv3 on cuda:0."""
    cfg = TeacherConfig(weights="random", imgsz=imgsz, dtype=dtype)
    model = create_teacher_model(cfg, None)
    graphed = Teacher(model, cfg, "cuda:0", "random")
    eager = Teacher(model, cfg.model_copy(update={"cuda_graph": False}), "cuda:0", "random")
    return graphed, eager


def _img(b, size=128, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, size, size, generator=g).cuda()


@pytest.mark.parametrize("imgsz, dtype", [(None, "auto"), (64, "auto"), (None, "bf16"), (None, "fp32")])
def test_graph_replay_equals_the_eager_forward(imgsz, dtype):
    graphed, eager = _teachers(imgsz, dtype)
    tol = dict(rtol=5e-2, atol=5e-2) if dtype == "bf16" else TOL
    for seed in range(3):  # new data each call: the static input really is refilled
        img = _img(4, seed=seed)
        got, want = graphed.features(img), eager.features(img)
        assert got.dtype == torch.float32 and got.shape == want.shape
        assert torch.allclose(got, want, **tol), (got - want).abs().max()
    assert graphed.graph_shapes == [(4, 3, 128, 128)] and eager.graph_shapes == []


def test_a_new_batch_shape_is_captured_and_old_ones_are_evicted():
    graphed, eager = _teachers()
    for b in (4, 3, 2, 1, 5, 3):
        img = _img(b, seed=b)
        assert torch.allclose(graphed.features(img), eager.features(img), **TOL)
    shapes = graphed.graph_shapes
    assert len(shapes) == Teacher.MAX_GRAPHS and shapes[-1] == (3, 3, 128, 128) and (4, 3, 128, 128) not in shapes


def test_a_failed_capture_logs_once_and_stays_eager(monkeypatch, caplog):
    graphed, eager = _teachers()

    def broken(*args, **kwargs):
        raise RuntimeError("operation not permitted when stream is capturing")

    monkeypatch.setattr(torch.cuda, "graph", broken)
    with caplog.at_level(logging.WARNING, logger="edgekit.train.obb.teacher"):
        for b in (2, 3):
            img = _img(b)
            assert torch.allclose(graphed.features(img), eager.features(img), **TOL)
    assert sum("CUDA graph" in r.getMessage() for r in caplog.records) == 1
    assert not graphed.use_cuda_graph and graphed.graph_shapes == []


@pytest.mark.parametrize("cuda_graph", [True, False])
def test_side_stream_submit_equals_the_synchronous_features(cuda_graph):
    graphed, eager = _teachers()
    teacher = graphed if cuda_graph else eager
    img, other = _img(4, seed=1), _img(4, seed=2)
    pending = teacher.submit(img)
    busy = other @ other.transpose(-1, -2)  # main-stream work meanwhile
    mid = teacher.features(other)  # a synchronous call while the side stream may still run
    got = pending.result()
    torch.cuda.synchronize()
    assert torch.allclose(got, eager.features(img), **TOL)
    assert torch.allclose(mid, eager.features(other), **TOL)
    assert busy.shape == (4, 3, 128, 128)


def _student():
    from ultralytics.nn.tasks import OBBModel
    from ultralytics.utils import DEFAULT_CFG

    torch.manual_seed(0)
    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False).cuda()
    model.args = DEFAULT_CFG
    return model.train()


def _batch(b=4, size=128):
    g = torch.Generator().manual_seed(3)
    n = 3 * b
    return {"img": torch.rand(b, 3, size, size, generator=g).cuda(),
            "cls": torch.randint(0, 3, (n, 1), generator=g).float().cuda(),
            "bboxes": torch.cat([torch.rand(n, 2, generator=g) * 0.6 + 0.2, torch.full((n, 1), 0.2),
                                 torch.full((n, 1), 0.1), torch.rand(n, 1, generator=g)], 1).cuda(),
            "batch_idx": torch.arange(b).repeat_interleave(3).float().cuda()}


def test_stream_and_graph_distillation_equals_the_synchronous_eager_step():
    """Same student, projectors and batch under AMP: the fast path's losses and projector grads match eager."""
    from edgekit.train.obb.distill import Distiller, Projectors, probe_channels

    graphed, eager = _teachers()
    base = _student()
    cfg = DistillConfig()
    projectors = Projectors(cfg.layers, probe_channels(base, cfg.layers), graphed.width).cuda()
    results = []
    for teacher, async_teacher in ((eager, False), (eager, True), (graphed, True), (graphed, False)):
        model, proj = copy.deepcopy(base), copy.deepcopy(projectors)
        d = Distiller(teacher, proj, cfg, async_teacher=async_teacher)
        d.weight = 1.0
        d.attach(model)
        steps = []
        for _ in range(2):  # the second step replays the graph captured in the first
            batch = _batch()
            with torch.autocast("cuda", dtype=torch.float16):
                loss, items = model.loss(batch)
            loss.sum().backward()
            steps.append((loss.detach().float(), items["dino_loss"].float()))
        grads = torch.cat([p.grad.flatten() for p in proj.parameters()])
        results.append((steps, grads))
    (ref_steps, ref_grads), *others = results
    for steps, grads in others:
        for (loss, dino), (ref_loss, ref_dino) in zip(steps, ref_steps):
            assert torch.allclose(loss, ref_loss, rtol=1e-3, atol=1e-3), (loss, ref_loss)
            assert torch.allclose(dino, ref_dino, rtol=1e-3, atol=1e-3)
        assert torch.allclose(grads, ref_grads, rtol=1e-2, atol=1e-4)
    assert graphed.graph_shapes == [(4, 3, 128, 128)]
