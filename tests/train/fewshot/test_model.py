"""RefDet model: shapes, fusion conditioning, checkpoint round trip, yolov8n weights, ONNX export parity."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")
pytest.importorskip("timm")

from edgekit.core.errors import ModelError  # noqa: E402
from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint, save_refdet_checkpoint  # noqa: E402
from edgekit.train.fewshot.model import (  # noqa: E402
    RefDetModel,
    RefDetModelConfig,
    export_detector,
    export_reference_encoder,
)

TINY = dict(encoder_weights="random", encoder_kwargs={"depth": 1}, ref_size=28)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = RefDetModel(RefDetModelConfig(**TINY))
    calibrate_bn(m)
    return m.eval()


def calibrate_bn(m) -> None:
    """Freshly initialised BatchNorm statistics shrink activations to ~0 in eval mode; give them real ones."""
    bns = [b for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
    for b in bns:
        b.reset_running_stats()
        b.momentum = None  # cumulative average
    m.train()
    with torch.no_grad():
        for _ in range(2):
            m(torch.rand(4, 3, 64, 64), m.encode(torch.rand(3, 3, 28, 28)).expand(4, -1))
    for b in bns:
        b.momentum = 0.03
    m.eval()


def test_shapes_train_and_eval(model):
    refs = torch.rand(3, 3, 28, 28)
    e = model.encode(refs)
    assert e.shape == (1, 256) and torch.allclose(e.norm(dim=1), torch.ones(1))
    one = model.encode_one(refs[:1])
    assert one.shape == (1, 256) and torch.allclose(one.norm(dim=1), torch.ones(1))
    # encode = normalise(mean of the normalised per-reference embeddings)
    manual = torch.nn.functional.normalize(torch.cat([model.encode_one(refs[k:k + 1]) for k in range(3)]).mean(0, keepdim=True), dim=1)
    assert torch.allclose(e, manual, atol=1e-5)
    with torch.no_grad():
        y = model(torch.rand(2, 3, 64, 96), e)
    anchors = 8 * 12 + 4 * 6 + 2 * 3
    assert y.shape == (2, 5, anchors)
    assert float(y[:, 4].min()) >= 0 and float(y[:, 4].max()) <= 1
    model.train()
    try:
        raw = model(torch.rand(2, 3, 64, 64), e.expand(2, -1))
    finally:
        model.eval()
    assert raw["boxes"].shape == (2, 64, 84) and raw["scores"].shape == (2, 1, 84)
    assert raw["keys"].shape == (2, 64, 84) and raw["query"].shape == (2, 64)


def test_fusion_changes_output_when_reference_changes(model):
    img = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        e1, e2 = model.encode(torch.rand(3, 3, 28, 28)), model.encode(torch.rand(3, 3, 28, 28) * 0.3 + 0.5)
        assert float((e1 * e2).sum()) < 0.999  # different references, different embeddings
        a, b = model(img, e1), model(img, e2)
        a2 = model(img, model.encode_one(torch.zeros(1, 3, 28, 28) + 0.5))
        b2 = model(img, model.encode_one(torch.zeros(1, 3, 28, 28) + 0.5))
    assert torch.equal(a2, b2)  # same reference, same output
    assert (torch.logit(a[:, 4]) - torch.logit(b[:, 4])).abs().max() > 1e-3  # score logits move with the target
    assert (a[:, :4] - b[:, :4]).abs().max() > 1e-4  # and so do the boxes (fusion sits before both branches)


def test_checkpoint_round_trip_weights_only(model, tmp_path):
    path = save_refdet_checkpoint(tmp_path / "ck.pt", model, imgsz=64, epoch=3, stage=2, metrics={"ap50": 0.5})
    # loadable by plain torch.load(weights_only=True): tensors and JSON-able values only
    raw = torch.load(str(path), weights_only=True)
    assert raw["edgekit_task"] == "refdet" and raw["format"] == 1 and raw["model_config"]["ref_size"] == 28
    loaded, meta = load_refdet_checkpoint(path)
    assert not loaded.training and meta["epoch"] == 3 and meta["stage"] == 2 and meta["imgsz"] == 64
    assert meta["metrics"] == {"ap50": 0.5} and "model" not in meta
    img, refs = torch.rand(1, 3, 64, 64), torch.rand(2, 3, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(img, model.encode(refs)), loaded(img, loaded.encode(refs)))


def test_checkpoint_of_other_task_refused(tmp_path):
    torch.save({"model": {}, "edgekit_task": "obb"}, str(tmp_path / "x.pt"))
    with pytest.raises(ModelError, match="not a RefDet checkpoint"):
        load_refdet_checkpoint(tmp_path / "x.pt")


def test_local_yolov8n_weights_load_and_missing_file_is_one_line(tmp_path):
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(1)
    src = DetectionModel("yolov8n.yaml", nc=80, verbose=False)  # the 80-class layout of yolov8n.pt
    torch.save({"model": src}, str(tmp_path / "yolov8n.pt"))  # pickled module, as Ultralytics saves it
    m = RefDetModel(RefDetModelConfig(weights=str(tmp_path / "yolov8n.pt"), **TINY))
    assert torch.equal(m.layers[0].conv.weight, src.model[0].conv.weight)
    assert torch.equal(m.head.cv2[0][0].conv.weight, src.model[22].cv2[0][0].conv.weight)
    with pytest.raises(ModelError) as err:
        RefDetModel(RefDetModelConfig(weights=str(tmp_path / "none.pt"), **TINY))
    assert "model.weights" in str(err.value) and "\n" not in str(err.value)


def test_missing_encoder_weights_name_the_key(tmp_path):
    cfg = RefDetModelConfig(encoder_weights="auto", encoder_weights_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError) as err:
        RefDetModel(cfg)
    msg = str(err.value)
    assert "model.encoder_weights" in msg and "dinov2_vits14_pretrain*.pth" in msg and "vit_small_patch14_dinov2.safetensors" in msg


def test_encoder_weights_file_loads_through_shared_resolver(tmp_path):
    import timm

    ref = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=28, num_classes=0, depth=1)
    (tmp_path / "dinov2").mkdir()
    torch.save(ref.state_dict(), str(tmp_path / "dinov2" / "vit_small_patch14_dinov2.pth"))
    m = RefDetModel(RefDetModelConfig(encoder_weights="auto", encoder_weights_dir=str(tmp_path / "dinov2"),
                                      encoder_kwargs={"depth": 1}, ref_size=28))
    assert torch.equal(m.encoder.blocks[0].attn.qkv.weight, ref.blocks[0].attn.qkv.weight)


def test_onnx_export_of_both_graphs_matches_torch(model, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    enc = export_reference_encoder(model, tmp_path / "encoder.onnx")
    det = export_detector(model, tmp_path / "detector.onnx", 64)
    import onnx

    for p in (enc, det):
        assert onnx.load(str(p)).opset_import[0].version == 17
    refs = torch.rand(1, 3, 28, 28)
    se = ort.InferenceSession(str(enc), providers=["CPUExecutionProvider"])
    sd = ort.InferenceSession(str(det), providers=["CPUExecutionProvider"])
    assert [i.name for i in se.get_inputs()] == ["refs"] and [o.name for o in se.get_outputs()] == ["embedding"]
    assert [i.name for i in sd.get_inputs()] == ["images", "embedding"] and [o.name for o in sd.get_outputs()] == ["output0"]
    emb = se.run(None, {"refs": refs.numpy()})[0]
    img = torch.rand(1, 3, 64, 64)
    out = sd.run(None, {"images": img.numpy(), "embedding": emb})[0]
    with torch.no_grad():
        t_emb = model.encode_one(refs)
        t_out = model(img, t_emb)
    np.testing.assert_allclose(emb, t_emb.numpy(), atol=1e-4)
    assert out.shape == (1, 5, 84)
    np.testing.assert_allclose(out, t_out.numpy(), atol=1e-3, rtol=1e-3)


def test_scratch_head_starts_with_boxes_of_a_few_strides():
    """Ultralytics' uniform DFL init (7.5 grid units a side) leaves small targets without positives."""
    m = RefDetModel(RefDetModelConfig(**TINY))
    probs = torch.softmax(m.head.cv2[0][-1].bias.detach().view(4, 16), 1)
    side = float((probs * torch.arange(16.0)).sum(1).mean())
    assert 1.0 < side < 2.0


def test_pickled_code_as_encoder_weights_is_refused_without_torch_advice(tmp_path):
    """timm loads with weights_only=True, so nothing runs; the message must not echo torch's advice to retry
    with weights_only=False (no edgekit flag does that, and it is the unsafe thing to do)."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "dinov2.pth"
    torch.save({"pos_embed": Payload()}, str(evil))
    with pytest.raises(ModelError) as e:
        RefDetModel(RefDetModelConfig(encoder_weights=str(evil), encoder_kwargs={"depth": 1}, ref_size=28))
    msg = e.value.format()
    assert "posix.system" in msg and "weights_only=False" not in msg and str(evil) in msg and "\n" not in msg
    assert not (tmp_path / "pwned").exists()
