"""Each few-shot loss against a value worked out by hand on a tiny case, plus NaN guards and gradients."""

from __future__ import annotations

import math

import pytest
import torch

from edgekit.train.fewshot.losses import (
    BoxLoss,
    WIoUv3Loss,
    ciou_loss,
    cls_bce_loss,
    cpe_loss,
    dfl_loss,
    supcon_loss,
    triplet_loss,
)

# Two 2x2 boxes shifted by 1 px: intersection 1x2 = 2, union 4 + 4 - 2 = 6 -> IoU = 1/3, L_IoU = 2/3;
# centres (1, 1) and (2, 1) -> rho^2 = 1; enclosing box 3x2 -> W_g^2 + H_g^2 = 13.
PRED = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
TARGET = torch.tensor([[1.0, 0.0, 3.0, 2.0]])


def test_wiou_v3_hand_value_with_mean_equal_to_the_batch():
    # momentum 1: the running mean becomes this batch's L_IoU (2/3), so beta = 1 and
    # r = 1 / (3 * 1.9^(1 - 3)) = 1.9^2 / 3 = 3.61 / 3; L = r * exp(1/13) * 2/3 = 0.866367
    loss = WIoUv3Loss(momentum=1.0).train()(PRED, TARGET)
    assert loss.item() == pytest.approx(3.61 / 3 * math.exp(1 / 13) * 2 / 3, rel=1e-5)
    assert loss.item() == pytest.approx(0.866367, rel=1e-5)


def test_wiou_v3_eval_mode_uses_the_stored_mean_and_does_not_update_it():
    module = WIoUv3Loss().eval()  # mean stays 1.0: beta = 2/3, r = (2/3) / (3 * 1.9^(2/3 - 3))
    loss = module(PRED, TARGET)
    r = (2 / 3) / (3 * 1.9 ** (2 / 3 - 3))
    assert loss.item() == pytest.approx(r * math.exp(1 / 13) * 2 / 3, rel=1e-5)
    assert module.iou_mean.item() == 1.0


def test_wiou_running_mean_updates_and_is_checkpointed():
    module = WIoUv3Loss(momentum=0.01).train()
    module(PRED, TARGET)  # 1 * 0.99 + 0.01 * 2/3
    assert module.iou_mean.item() == pytest.approx(0.99 + 0.01 * 2 / 3, rel=1e-6)
    module(PRED, PRED)  # L_IoU = 0: mean * 0.99
    assert module.iou_mean.item() == pytest.approx((0.99 + 0.01 * 2 / 3) * 0.99, rel=1e-6)
    restored = WIoUv3Loss()
    restored.load_state_dict(module.state_dict())
    assert restored.iou_mean.item() == pytest.approx(module.iou_mean.item())


def test_ciou_hand_value_and_box_loss_selects_it():
    # same aspect ratio -> v = 0: CIoU = 1/3 - 1/13, loss = 1 - 1/3 + 1/13 = 0.743590
    assert ciou_loss(PRED, TARGET).item() == pytest.approx(1 - 1 / 3 + 1 / 13, rel=1e-5)
    assert BoxLoss("ciou")(PRED, TARGET).item() == pytest.approx(1 - 1 / 3 + 1 / 13, rel=1e-5)
    with pytest.raises(ValueError, match="wiou"):
        BoxLoss("giou")


def test_cls_bce_hand_value():
    # y=1, x=0: -ln(1/2) = ln 2; y=1, x=ln 3: sigmoid = 3/4 -> ln(4/3); y=0, x=-ln 3: sigmoid = 1/4 -> ln(4/3).
    # normaliser = sum(y) = 2.
    logits = torch.tensor([0.0, math.log(3), -math.log(3)])
    loss = cls_bce_loss(logits, torch.tensor([1.0, 1.0, 0.0]))
    assert loss.item() == pytest.approx((math.log(2) + 2 * math.log(4 / 3)) / 2, rel=1e-6)


def test_cls_bce_all_negative_uses_normaliser_one():
    # y=0 everywhere: x=0 -> ln 2; x=ln 3 -> -ln(1/4) = ln 4; x=-ln 3 -> ln(4/3); divided by max(0, 1) = 1
    logits = torch.tensor([0.0, math.log(3), -math.log(3)])
    assert cls_bce_loss(logits, torch.zeros(3)).item() == pytest.approx(
        math.log(2) + math.log(4) + math.log(4 / 3), rel=1e-6)


def test_dfl_hand_value():
    # reg_max 3, every side's logits ln[1, 2, 1] -> p = [1/4, 1/2, 1/4].
    # t=0.5: -(0.5 ln 1/4 + 0.5 ln 1/2) = 1.5 ln 2; t=1: -ln 1/2 = ln 2; t=0: -ln 1/4 = 2 ln 2;
    # t=1.5: -(0.5 ln 1/2 + 0.5 ln 1/4) = 1.5 ln 2. Mean over the 4 sides = 6 ln 2 / 4 = 1.5 ln 2.
    logits = torch.log(torch.tensor([1.0, 2.0, 1.0])).repeat(4, 1)
    target = torch.tensor([[0.5, 1.0, 0.0, 1.5]])
    loss = dfl_loss(logits, target, reg_max=3)
    assert loss.shape == (1, 1)
    assert loss.item() == pytest.approx(1.5 * math.log(2), rel=1e-6)
    assert target.tolist() == [[0.5, 1.0, 0.0, 1.5]]  # the caller's target is not clamped in place


# Three 2-D embeddings: z1 = z2 = (1, 0) share label 0, z3 = (0, 1) is alone in label 1.
Z3 = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
L3 = torch.tensor([0, 0, 1])


def test_supcon_hand_value_three_embeddings():
    # t = 0.5. Anchor 1: z1.z2/t = 2, z1.z3/t = 0 -> -log(e^2 / (e^2 + e^0)) = log(1 + e^-2); anchor 2 the same;
    # anchor 3 has no positive and is left out. Mean = log(1 + e^-2) = 0.126928.
    assert supcon_loss(Z3, L3, temperature=0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), rel=1e-6)
    # embeddings are L2-normalised first: scaling one changes nothing
    assert supcon_loss(Z3 * torch.tensor([[2.0], [1.0], [3.0]]), L3, temperature=0.5).item() == pytest.approx(
        math.log(1 + math.exp(-2)), rel=1e-6)


def test_supcon_hand_value_two_positives():
    # z = (1,0), (1,0), (0,1), (-1,0); labels 0,0,0,1; t = 1.
    # Anchors 1, 2: sims to the others 1, 0, -1 -> D = e + 1 + 1/e; positives {sim 1, sim 0}:
    #   L = -1/2 [(1 - log D) + (0 - log D)] = log D - 1/2.
    # Anchor 3: sims 0, 0, 0 -> D = 3; both positives at 0: L = log 3. Anchor 4: no positive.
    z = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    log_d = math.log(math.e + 1 + 1 / math.e)
    expected = (2 * (log_d - 0.5) + math.log(3)) / 3  # 0.97118
    assert supcon_loss(z, torch.tensor([0, 0, 0, 1]), temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_without_any_positive_is_zero_not_nan_and_backprops():
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], requires_grad=True)
    loss = supcon_loss(z, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0
    loss.backward()
    assert torch.isfinite(z.grad).all()
    one = torch.tensor([[1.0, 0.0]], requires_grad=True)
    assert supcon_loss(one, torch.tensor([0])).item() == 0.0


def test_supcon_anchor_without_positive_does_not_poison_the_batch():
    z = Z3.clone().requires_grad_(True)
    loss = supcon_loss(z, L3, temperature=0.07)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(z.grad).all()


def test_cpe_hand_value_iou_gate_and_reweight():
    # Same 3 embeddings, t = 0.5, IoUs 0.9, 0.5, 0.8, phi = 0.7: anchor 1 kept (L = log(1 + e^-2)),
    # anchor 2 gated out (0.5 < 0.7), anchor 3 kept by IoU but has no positive. Mean over {1}:
    ious = torch.tensor([0.9, 0.5, 0.8])
    base = math.log(1 + math.exp(-2))
    assert cpe_loss(Z3, L3, ious, 0.7, temperature=0.5).item() == pytest.approx(base, rel=1e-6)
    assert cpe_loss(Z3, L3, ious, 0.7, 0.5, reweight="linear").item() == pytest.approx(0.9 * base, rel=1e-6)
    assert cpe_loss(Z3, L3, ious, 0.7, 0.5, reweight="exp").item() == pytest.approx((math.exp(0.9) - 1) * base,
                                                                                  rel=1e-6)
    assert cpe_loss(Z3, L3, ious, 0.95, 0.5).item() == 0.0  # nothing passes the gate: 0, not NaN
    with pytest.raises(ValueError, match="reweight"):
        cpe_loss(Z3, L3, ious, reweight="square")


@pytest.mark.parametrize("strategy, background, cross, expected", [
    # anchor (0,0), positive (1,0): d+ = 1, margin 0.3
    ("background", [[0.0, 0.8]], [[3.0, 0.0]], 0.5),    # max(0, 1 - 0.8 + 0.3)
    ("cross_class", [[0.0, 0.8]], [[3.0, 0.0]], 0.0),   # max(0, 1 - 3 + 0.3)
    ("mixed", [[0.0, 0.8]], [[3.0, 0.0]], 0.5),         # hardest of both pools: 0.8
    ("background", [[0.0, 2.0]], [[0.5, 0.0]], 0.0),    # max(0, 1 - 2 + 0.3)
    ("cross_class", [[0.0, 2.0]], [[0.5, 0.0]], 0.8),   # max(0, 1 - 0.5 + 0.3)
    ("mixed", [[0.0, 2.0]], [[0.5, 0.0]], 0.8),
])
def test_triplet_hand_values_per_negative_strategy(strategy, background, cross, expected):
    loss = triplet_loss(torch.tensor([[0.0, 0.0]]), torch.tensor([[1.0, 0.0]]), torch.tensor(background),
                        torch.tensor(cross), strategy=strategy, margin=0.3, normalize=False)
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_triplet_empty_pool_and_bad_strategy():
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    assert triplet_loss(a, a, background=None, cross_class=torch.zeros(0, 2), strategy="mixed").item() == 0.0
    with pytest.raises(ValueError, match="negative strategy"):
        triplet_loss(a, a, torch.ones(1, 2), strategy="hard")


def test_gradients_flow_through_every_loss():
    torch.manual_seed(0)
    boxes = torch.tensor([[0.0, 0.0, 2.0, 2.0], [1.0, 1.0, 4.0, 3.0]], requires_grad=True)
    gt = torch.tensor([[1.0, 0.0, 3.0, 2.0], [1.0, 1.0, 3.0, 3.0]])
    emb = torch.randn(6, 4, requires_grad=True)
    labels = torch.tensor([0, 0, 1, 1, 2, 2])
    logits = torch.randn(4, 3, requires_grad=True)
    terms = {
        "wiou": WIoUv3Loss().train()(boxes, gt).sum(),
        "ciou": ciou_loss(boxes, gt).sum(),
        "bce": cls_bce_loss(logits[:, 0], torch.tensor([1.0, 0.0, 0.5, 0.0])),
        "dfl": dfl_loss(logits, torch.tensor([[0.5, 1.2, 0.1, 1.7]]), reg_max=3).sum(),
        "supcon": supcon_loss(emb, labels),
        "cpe": cpe_loss(emb, labels, torch.tensor([0.9, 0.8, 0.75, 0.2, 0.95, 0.7])),
        "triplet": triplet_loss(emb[:2], emb[2:4], emb[4:5], emb[5:], margin=5.0),
    }
    for name, value in terms.items():
        for leaf in (boxes, emb, logits):
            leaf.grad = None
        value.backward()
        grads = [t.grad for t in (boxes, emb, logits) if t.grad is not None]
        assert grads, name
        assert all(torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_triplet_identical_anchor_and_positive_has_finite_gradient():
    a = torch.tensor([[1.0, 0.0]], requires_grad=True)
    loss = triplet_loss(a, a.detach().clone(), background=torch.tensor([[0.9, 0.1]]), margin=1.0)
    loss.backward()
    assert torch.isfinite(a.grad).all()
