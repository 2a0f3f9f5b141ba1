"""Teacher weights: the search list, the ModelError, and bit-exact loading of timm- and Meta-layout files."""

from __future__ import annotations

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from edgekit.core.errors import ModelError
from edgekit.train.obb.config import TeacherConfig
from edgekit.train.obb.teacher import build_teacher, create_teacher_model, resolve_teacher_weights

NAME = "vit_small_patch16_dinov3"
TINY = dict(embed_dim=32, depth=2, num_heads=2)


def to_meta_layout(sd):
    """timm -> Meta's original DINOv3 keys: the inverse of timm's eva.checkpoint_filter_fn for dinov3.

    Meta's file also carries what timm drops: mask_token, rope periods, the (zero) qkv bias + its mask.
    """
    out = {}
    for k, v in sd.items():
        k = k.replace("reg_token", "storage_tokens").replace("gamma_1", "ls1.gamma").replace("gamma_2", "ls2.gamma")
        out[k] = v.clone()
        if k.endswith("attn.qkv.weight"):
            out[k.replace("weight", "bias")] = torch.zeros(v.shape[0])
            out[k.replace("weight", "bias_mask")] = torch.ones(v.shape[0])
    dim = sd["cls_token"].shape[-1]
    out["mask_token"] = torch.zeros(1, dim)
    out["rope_embed.periods"] = torch.arange(1, dim // TINY["num_heads"] // 4 + 1, dtype=torch.float32)
    return out


@pytest.fixture(scope="module")
def reference_sd():
    import timm

    torch.manual_seed(0)
    model = timm.create_model(NAME, pretrained=False, **TINY)
    with torch.no_grad():  # layer-scale starts at a constant 1e-5: randomise it so a lost key would show
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return {k: v.clone() for k, v in model.state_dict().items()}


def _save(sd, path):
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".safetensors":
        from safetensors.torch import save_file

        save_file({k: v.contiguous() for k, v in sd.items()}, str(path))
    else:
        torch.save(sd, path)
    return path


@pytest.mark.parametrize("layout, rel", [
    ("timm", f"{NAME}.safetensors"),
    ("timm", f"{NAME}.pth"),
    ("timm", f"{NAME}/model.safetensors"),
    ("timm", f"{NAME}/pytorch_model.bin"),
    ("meta", "dinov3_vits16_pretrain_lvd1689m-08c60483.pth"),
    ("meta", f"{NAME}.safetensors"),
])
def test_weights_load_bit_exactly_in_timm_and_meta_layouts(tmp_path, reference_sd, layout, rel):
    sd = reference_sd if layout == "timm" else to_meta_layout(reference_sd)
    if layout == "meta":
        assert "storage_tokens" in sd and "reg_token" not in sd
    _save(sd, tmp_path / "dino" / rel)
    cfg = TeacherConfig(weights_dir=str(tmp_path / "dino"), model_kwargs=TINY)
    found = resolve_teacher_weights(cfg)
    assert found == tmp_path / "dino" / rel
    loaded = create_teacher_model(cfg, found).state_dict()
    assert set(loaded) == set(reference_sd)
    for k, v in reference_sd.items():
        assert torch.equal(loaded[k], v), k


def test_missing_weights_name_every_path_searched(tmp_path):
    cfg = TeacherConfig(weights_dir=str(tmp_path / "nowhere"))
    with pytest.raises(ModelError) as err:
        resolve_teacher_weights(cfg)
    msg = str(err.value)
    for part in (f"{NAME}.safetensors", f"{NAME}.pth", f"{NAME}/model.safetensors", f"{NAME}/pytorch_model.bin",
                 "dinov3_vits16_pretrain_*", "teacher.weights"):
        assert part in msg


def test_explicit_missing_file_and_random_opt_in(tmp_path):
    with pytest.raises(ModelError, match="does not exist"):
        resolve_teacher_weights(TeacherConfig(weights=str(tmp_path / "x.pth")))
    assert resolve_teacher_weights(TeacherConfig(weights="random")) is None


def test_real_dinov3_small_builds_frozen_and_gives_patch_maps_at_64px():
    teacher = build_teacher(TeacherConfig(weights="random"), "cpu")
    assert teacher.width == 384 and not teacher.model.training
    assert all(not p.requires_grad for p in teacher.model.parameters())
    img = torch.rand(2, 3, 64, 64, requires_grad=True)
    feats = teacher.features(img)
    assert feats.shape == (2, 384, 4, 4) and feats.dtype == torch.float32 and feats.grad_fn is None
    # a configured teacher resolution resamples the input: 32 px -> a 2x2 patch grid
    small = build_teacher(TeacherConfig(weights="random", imgsz=32, model_kwargs=TINY), "cpu")
    assert small.features(img).shape == (2, 32, 2, 2)


def test_submit_on_cpu_defers_to_result_and_matches_features():
    teacher = build_teacher(TeacherConfig(weights="random", model_kwargs=TINY), "cpu")
    assert not teacher.use_cuda_graph and teacher.graph_shapes == []  # cuda_graph: true is a no-op on CPU
    img = torch.rand(2, 3, 64, 64)
    pending = teacher.submit(img)
    assert pending.img is img
    first = pending.result()
    assert torch.equal(first, teacher.features(img)) and pending.result() is first


class _HostTraffic(TorchDispatchMode):
    """Notes every op that takes a host tensor or reads a scalar back to the host.

    On a ``meta``-device teacher either would be a host<->device transfer on a real GPU, which a
    CUDA graph capture refuses (and a replay would not repeat).
    """

    def __init__(self) -> None:
        super().__init__()
        self.hits = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        flat, _ = tree_flatten((args, kwargs))
        if "_local_scalar_dense" in str(func) or any(isinstance(a, torch.Tensor) and a.device.type == "cpu"
                                                      for a in flat):
            self.hits.append(str(func))
        return func(*args, **kwargs)


@pytest.mark.parametrize("kwargs", [TINY, {}])
def test_after_one_forward_the_teacher_is_free_of_host_traffic_so_it_can_be_graph_captured(monkeypatch, kwargs):
    import contextlib

    from edgekit.train.obb.teacher import Teacher

    monkeypatch.setattr(torch, "autocast", lambda *a, **k: contextlib.nullcontext())  # no autocast on meta
    cfg = TeacherConfig(weights="random", model_kwargs=kwargs)
    x = torch.empty(2, 3, 64, 64, device="meta")
    raw = create_teacher_model(cfg, None).to("meta")
    for _ in range(2):  # the probe itself works: timm rebuilds its RoPE table on the host every forward
        with _HostTraffic() as plain:
            raw.forward_intermediates(x, indices=[-1], norm=True, output_fmt="NCHW", intermediates_only=True)
        assert "aten._to_copy.default" in plain.hits
    teacher = Teacher(create_teacher_model(cfg, None), cfg, "meta", "random")
    teacher._forward(x)  # the warm-up run fills the RoPE cache
    with _HostTraffic() as warm:
        out = teacher._forward(x)
    assert warm.hits == [] and out.shape == (2, teacher.width, 4, 4)


def test_cached_rope_tables_equal_fresh_ones_and_are_reused():
    from edgekit.train.obb.teacher import cache_rope_embeds

    model = create_teacher_model(TeacherConfig(weights="random", model_kwargs=TINY), None)
    fresh = model.rope.get_embed(shape=(4, 6))
    cache_rope_embeds(model)
    cache_rope_embeds(model)  # idempotent
    first = model.rope.get_embed(shape=(4, 6))
    assert torch.equal(first, fresh) and model.rope.get_embed(shape=(4, 6)) is first
    assert model.rope.get_embed(shape=(2, 2)).shape[0] == 4
    model.rope.train()  # augmenting RoPE (training mode) is never cached
    assert model.rope.get_embed(shape=(4, 6)) is not first


def test_pickled_code_as_teacher_weights_is_named_without_torch_advice(tmp_path):
    """timm loads the file with weights_only=True, so nothing runs; the one line names what was refused and
    never repeats torch's advice to retry with weights_only=False (the unsafe step; no edgekit flag does it)."""
    import os

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    evil = tmp_path / "dinov3.pth"
    torch.save({"pos_embed": Payload()}, str(evil))
    cfg = TeacherConfig(weights=str(evil), model_kwargs=TINY)
    with pytest.raises(ModelError) as e:
        create_teacher_model(cfg, evil)
    msg = e.value.format()
    assert "posix.system" in msg and "weights_only=False" not in msg and str(evil) in msg and "\n" not in msg
    assert not (tmp_path / "pwned").exists()
