"""Distillation engine on real tensors: the loss, the schedule, hooks on a real yolov8n-obb, no teacher grads."""

from __future__ import annotations

import copy

import pytest
import torch

from edgekit.train.obb.config import DistillConfig, TeacherConfig
from edgekit.train.obb.distill import (
    DistilledCriterion,
    Distiller,
    FeatureTaps,
    Projectors,
    distill_weight,
    masked_cosine_distance,
    probe_channels,
    stacked_masked_cosine,
)
from edgekit.train.obb.teacher import build_teacher

TINY = dict(embed_dim=32, depth=2, num_heads=2)


@pytest.fixture(scope="module")
def student():
    from ultralytics.nn.tasks import OBBModel

    torch.manual_seed(0)
    return OBBModel("yolov8n-obb.yaml", nc=3, verbose=False)


def _batch(b=2, size=64):
    torch.manual_seed(1)
    return {"img": torch.rand(b, 3, size, size), "cls": torch.tensor([[0.0], [1.0], [2.0]]),
            "bboxes": torch.tensor([[0.5, 0.5, 0.5, 0.2, 0.3], [0.3, 0.3, 0.2, 0.1, 1.0], [0.6, 0.6, 0.4, 0.4, 0.0]]),
            "batch_idx": torch.tensor([0.0, 0.0, 1.0])}


@pytest.mark.parametrize("scale", [1.0, 0.01, 7.5])
def test_cosine_distance_is_zero_for_identical_directions(scale):
    s = torch.randn(2, 8, 4, 4)
    mask = (torch.rand(2, 4, 4) > 0.5).float()
    total, obj, bg, dist = masked_cosine_distance(s, s * scale, mask, 1.0, 1.0)
    assert total.abs() < 1e-5 and obj.abs() < 1e-5 and bg.abs() < 1e-5 and dist.abs().max() < 1e-5


@pytest.mark.parametrize("obj_w, bg_w", [(1.0, 0.0), (0.0, 1.0), (2.0, 0.25), (1.0, 1.0)])
def test_obj_and_bg_are_each_normalised_by_their_cell_count_and_weighted(obj_w, bg_w):
    t = torch.randn(1, 4, 4, 4)
    mask = torch.zeros(1, 4, 4)
    mask[0, :1, :] = 1.0  # 4 object cells, 12 background cells
    s = t.clone()
    s[0, :, :1, :] *= -1  # object cells point the opposite way: 1 - cos = 2
    s[0, :, 3, :] = torch.roll(t[0, :, 3, :], 1, dims=0)  # 4 background cells differ, the rest agree
    total, obj, bg, dist = masked_cosine_distance(s, t, mask, obj_w, bg_w)
    expected_bg = dist[0, 3, :].sum() / 12
    assert obj.item() == pytest.approx(2.0, abs=1e-5)
    assert bg.item() == pytest.approx(expected_bg.item(), abs=1e-5)
    assert total.item() == pytest.approx(obj_w * 2.0 + bg_w * expected_bg.item(), abs=1e-5)


@pytest.mark.parametrize("progress, base, scale, warmup, expected", [
    (0.0, 1.0, 1.0, 2.0, 0.0), (1.0, 1.0, 1.0, 2.0, 0.5), (2.0, 1.0, 1.0, 2.0, 1.0), (9.0, 2.0, 0.5, 2.0, 1.0),
    (0.0, 1.0, 0.5, 0.0, 0.5), (0.5, 3.0, 1.0, 1.0, 1.5),
])
def test_distill_weight_warms_up_linearly_and_scales_per_stage(progress, base, scale, warmup, expected):
    assert distill_weight(progress, base, scale, warmup) == pytest.approx(expected)


def test_hooks_capture_the_configured_layers_with_the_expected_shapes(student):
    taps = FeatureTaps([15, 18, 21])
    taps.attach(student)
    student.eval()
    with torch.no_grad():
        student(torch.zeros(2, 3, 64, 64))
    assert {i: tuple(t.shape) for i, t in taps.outputs.items()} == {
        15: (2, 64, 8, 8), 18: (2, 128, 4, 4), 21: (2, 256, 2, 2)}
    taps.detach()
    assert not taps.attached and not student.model[15]._forward_hooks
    assert probe_channels(student, [4, 6, 9]) == [64, 128, 256]


def test_unknown_layer_fails_naming_the_key(student):
    from edgekit.core.errors import ConfigError

    with pytest.raises(ConfigError, match="distillation.layers"):
        FeatureTaps([99]).attach(student)


def _distiller(student_model):
    teacher = build_teacher(TeacherConfig(weights="random", model_kwargs=TINY), "cpu")
    cfg = DistillConfig()
    projectors = Projectors(cfg.layers, probe_channels(student_model, cfg.layers), teacher.width)
    return Distiller(teacher, projectors, cfg)


def test_no_gradient_reaches_the_teacher_and_projectors_learn():
    from ultralytics.nn.tasks import OBBModel

    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False)
    model.args = __import__("ultralytics").utils.DEFAULT_CFG
    d = _distiller(model)
    d.weight = 1.0
    d.attach(model)
    model.train()
    loss, items = model.loss(_batch())
    loss.sum().backward()
    assert {"dino_loss", "obj_distill_loss", "bg_distill_loss", "box_loss", "angle_loss"} <= set(items)
    assert loss.numel() == 5  # box, cls, dfl, angle + the weighted distillation term
    assert all(not p.requires_grad and p.grad is None for p in d.teacher.model.parameters())
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in d.projectors.parameters())
    assert model.model[15].cv2.conv.weight.grad is not None
    assert not isinstance(d.teacher, torch.nn.Module)  # can never be registered under the student
    assert not any("teacher" in n or "projector" in n for n, _ in model.named_modules())


def test_deep_copies_of_the_student_carry_no_edgekit_objects():
    from ultralytics.nn.tasks import OBBModel
    from ultralytics.utils.torch_utils import ModelEMA

    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False)
    model.args = __import__("ultralytics").utils.DEFAULT_CFG
    d = _distiller(model)
    d.attach(model)
    with d.detached(model):
        ema = ModelEMA(model).ema
        clone = copy.deepcopy(model)
    assert isinstance(model.criterion, DistilledCriterion) and d.taps.attached  # restored afterwards
    for m in (ema, clone):
        assert not isinstance(getattr(m, "criterion", None), DistilledCriterion)
        assert not any(mod._forward_hooks for mod in m.modules())


@pytest.mark.parametrize("mask_kind", ["random", "empty", "full"])
@pytest.mark.parametrize("obj_w, bg_w", [(1.0, 0.25), (0.0, 1.0), (2.0, 0.0)])
def test_stacked_cosine_equals_the_per_layer_reference(mask_kind, obj_w, bg_w):
    torch.manual_seed(2)
    t = torch.randn(3, 16, 5, 6)
    students = [torch.randn(3, 16, 5, 6) for _ in range(3)]
    mask = {"random": (torch.rand(3, 5, 6) > 0.6).float(), "empty": torch.zeros(3, 5, 6),
            "full": torch.ones(3, 5, 6)}[mask_kind]
    total, obj, bg, dist = stacked_masked_cosine(students, t, mask, obj_w, bg_w)
    refs = [masked_cosine_distance(s, t, mask, obj_w, bg_w) for s in students]
    assert total.item() == pytest.approx(sum(r[0].item() for r in refs) / 3, abs=1e-5)
    assert torch.allclose(obj, torch.stack([r[1] for r in refs]), atol=1e-5)
    assert torch.allclose(bg, torch.stack([r[2] for r in refs]), atol=1e-5)
    assert torch.allclose(dist, torch.stack([r[3] for r in refs]), atol=1e-5)


def _train_student():
    from ultralytics.nn.tasks import OBBModel

    torch.manual_seed(0)
    model = OBBModel("yolov8n-obb.yaml", nc=3, verbose=False)
    model.args = __import__("ultralytics").utils.DEFAULT_CFG
    model.train()
    return model


def test_distiller_loss_equals_the_per_layer_formula():
    """The stacked, mask-first loss path gives what the plain recipe (resample, project, cosine per layer) gives."""
    import torch.nn.functional as F

    from edgekit.train.obb.masks import obb_mask

    model = _train_student()
    d = _distiller(model)
    d.weight = 0.5
    d.attach(model)
    batch = _batch()
    model.predict(batch["img"])
    outs = dict(d.taps.outputs)
    loss, items = d.loss(batch)
    t_feat = d.teacher.features(batch["img"])
    mask = obb_mask(batch["bboxes"], batch["batch_idx"], 2, tuple(t_feat.shape[-2:]), (64, 64))
    refs = [masked_cosine_distance(d.projectors(i, F.interpolate(outs[i].float(), size=tuple(t_feat.shape[-2:]),
                                                                 mode="bilinear", align_corners=False)),
                                   t_feat, mask, d.cfg.obj_weight, d.cfg.bg_weight) for i in d.taps.layers]
    dino = sum(r[0] for r in refs) / 3
    assert loss.item() == pytest.approx(0.5 * dino.item(), abs=1e-5)
    assert items["dino_loss"].item() == pytest.approx(dino.item(), abs=1e-5)
    assert items["obj_distill_loss"].item() == pytest.approx(sum(r[1].item() for r in refs) / 3, abs=1e-5)
    assert items["bg_distill_loss"].item() == pytest.approx(sum(r[2].item() for r in refs) / 3, abs=1e-5)
    assert d.last_signal["dist"].shape == (1, 3, *t_feat.shape[-2:])


def test_async_and_sync_teacher_paths_give_identical_losses_and_grads_on_cpu():
    losses, grads = [], []
    for async_teacher in (True, False):
        model = _train_student()
        base = _distiller(model)
        d = Distiller(base.teacher, base.projectors, base.cfg, async_teacher=async_teacher)
        d.weight = 1.0
        d.attach(model)
        loss, _ = model.loss(_batch())
        loss.sum().backward()
        losses.append(loss.detach())
        grads.append(torch.cat([p.grad.flatten() for p in d.projectors.parameters()]))
    assert torch.equal(losses[0], losses[1]) and torch.equal(grads[0], grads[1])


def test_the_pre_hook_starts_the_teacher_only_in_training_and_only_for_that_image():
    model = _train_student()
    d = _distiller(model)
    d.attach(model)
    img = _batch()["img"]
    model.eval()
    with torch.no_grad():
        model.predict(img)
    assert d._pending is None  # eval forwards (e.g. probes) never start the teacher
    model.train()
    model.predict(img)
    assert d._pending is not None and d._pending.img is img
    other = img.flip(-1)  # a loss for another image must not get the started image's features
    assert torch.equal(d.teacher_features(other), d.teacher.features(other))
    assert d._pending is None
    with d.detached(model):
        assert not model.model[0]._forward_pre_hooks
    assert model.model[0]._forward_pre_hooks
    d.taps.detach()
    Distiller(d.teacher, d.projectors, d.cfg, async_teacher=False).attach(model)
    assert not model.model[0]._forward_pre_hooks  # the synchronous distiller adds no pre-hook
