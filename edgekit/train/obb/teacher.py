"""The frozen DINOv3 teacher: weight resolution, construction and patch-feature extraction.

Weights come from local files only (no downloads): ``artifacts/models/dino/`` is searched for the
usual names (timm, Hugging Face and Meta's original release names), in timm's or Meta's key layout,
``.pth`` or ``.safetensors``. timm converts Meta's layout through its ``checkpoint_filter_fn`` when
loading via ``pretrained_cfg_overlay=dict(file=...)``. The teacher is a plain object held beside
the trainer, never a submodule of the student, so it stays out of checkpoints, EMA, the optimizer
and the DDP wrapper.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Tuple

from edgekit.core.errors import ConfigError, ModelError

from .config import TeacherConfig

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)

# timm architecture -> the prefix of Meta's original checkpoint names (dinov3_vits16_pretrain_lvd1689m-08c60483.pth).
_META_PREFIX = {
    "vit_small_patch16_dinov3": "dinov3_vits16",
    "vit_small_plus_patch16_dinov3": "dinov3_vits16plus",
    "vit_base_patch16_dinov3": "dinov3_vitb16",
    "vit_large_patch16_dinov3": "dinov3_vitl16",
    "vit_huge_plus_patch16_dinov3": "dinov3_vith16plus",
    "vit_7b_patch16_dinov3": "dinov3_vit7b16",
}
_SUFFIXES = (".safetensors", ".pth", ".pt", ".bin")


def weight_candidates(name: str, weights_dir: Path) -> List[Path]:
    """Every path (or glob pattern) searched for ``name``'s weights, in priority order."""
    arch, _, tag = name.partition(".")
    d = Path(weights_dir)
    out: List[Path] = []
    for stem in dict.fromkeys([name, arch]):  # the tagged name first, then the bare architecture
        out += [d / f"{stem}{s}" for s in _SUFFIXES]
        out += [d / stem / f for f in ("model.safetensors", "pytorch_model.bin", "model.pth", "model.pt")]
    prefix = _META_PREFIX.get(arch.replace("_qkvb", ""))
    if prefix:
        out.append(d / (f"{prefix}_pretrain_{tag}*.pth" if tag else f"{prefix}_pretrain_*.pth"))
    return out


def resolve_teacher_weights(cfg: TeacherConfig) -> Optional[Path]:
    """The weights file for ``cfg``; None for ``weights: random``; ModelError listing every path searched."""
    if cfg.weights == "random":
        return None
    if cfg.weights != "auto":
        path = Path(cfg.weights).expanduser()
        if not path.is_file():
            raise ModelError(f"teacher.weights file {path} does not exist",
                             f"put the {cfg.name} weights there or set teacher.weights: auto")
        return path
    searched = weight_candidates(cfg.name, Path(cfg.weights_dir))
    for cand in searched:
        if "*" in cand.name:
            hits = sorted(cand.parent.glob(cand.name)) if cand.parent.is_dir() else []
            if hits:
                return hits[0]
        elif cand.is_file():
            return cand
    raise ModelError(
        f"no weights for teacher {cfg.name}; searched: {', '.join(str(p) for p in searched)}",
        f"copy the DINOv3 weights (timm or Meta layout) into {cfg.weights_dir}/, or set teacher.weights: PATH "
        "(teacher.weights: random only for tests)")


def create_teacher_model(cfg: TeacherConfig, weights: Optional[Path]):
    """A timm model in eval mode with every parameter frozen; weights from ``weights`` (None = random)."""
    import timm

    kwargs = dict(cfg.model_kwargs)
    try:
        if weights is None:
            model = timm.create_model(cfg.name, pretrained=False, **kwargs)
        else:
            model = timm.create_model(cfg.name, pretrained=True,
                                      pretrained_cfg_overlay=dict(file=str(weights)), **kwargs)
    except RuntimeError as e:  # key or shape mismatch while loading the state dict
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"teacher weights {weights} do not fit {cfg.name}: {first}",
                         "use the weights released for this architecture (timm or Meta layout)") from None
    except Exception as e:
        if "Unknown model" in str(e):
            raise ConfigError(f"teacher.name {cfg.name!r} is not a timm model",
                              "use e.g. vit_small_patch16_dinov3") from None
        raise
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def teacher_dtype(cfg: TeacherConfig, device_type: str):
    import torch

    if device_type != "cuda" or cfg.dtype == "fp32":
        return torch.float32
    return torch.bfloat16 if cfg.dtype == "bf16" else torch.float16


class Teacher:
    """Frozen timm ViT returning normalised patch maps (B, C, H/16, W/16) for RGB [0, 1] images.

    Deliberately not an ``nn.Module``: it can never be registered as a submodule of the student.
    """

    def __init__(self, model, cfg: TeacherConfig, device, source: str) -> None:
        import torch

        self.cfg = cfg
        self.source = source
        self.device = torch.device(device)
        self.dtype = teacher_dtype(cfg, self.device.type)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        data_cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean = data_cfg.get("mean", (0.485, 0.456, 0.406))
        std = data_cfg.get("std", (0.229, 0.224, 0.225))
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self.patch = int(getattr(getattr(model, "patch_embed", None), "patch_size", (16, 16))[0])
        self.width = int(getattr(model, "embed_dim", getattr(model, "num_features", 0)))

    def input_hw(self, img_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Teacher input size: ``cfg.imgsz`` square, else the image size rounded to the patch size."""
        if self.cfg.imgsz:
            return self.cfg.imgsz, self.cfg.imgsz
        return tuple(max(self.patch, round(s / self.patch) * self.patch) for s in img_hw)  # type: ignore[return-value]

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) float32 patch features of RGB [0, 1] images, without autograd."""
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            x = img.detach().to(self.device, dtype=torch.float32)
            hw = self.input_hw(tuple(x.shape[-2:]))
            if tuple(x.shape[-2:]) != hw:
                x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            x = ((x - self.mean) / self.std).to(self.dtype)
            # autocast off: the teacher runs in its own dtype whatever the trainer's AMP context is.
            with torch.autocast(device_type=self.device.type, enabled=False):
                feats = self.model.forward_intermediates(x, indices=[self.cfg.layer], norm=True,
                                                         output_fmt="NCHW", intermediates_only=True)
        return feats[-1].float()


def build_teacher(cfg: TeacherConfig, device) -> Teacher:
    """Resolve weights, build the timm model, and wrap it; logs a warning for random weights."""
    weights = resolve_teacher_weights(cfg)
    if weights is None:
        LOG.warning("teacher %s uses RANDOM weights (teacher.weights: random): distillation targets carry no "
                    "pretrained signal", cfg.name)
    model = create_teacher_model(cfg, weights)
    return Teacher(model, cfg, device, source=str(weights) if weights else "random")


__all__ = ["Teacher", "build_teacher", "resolve_teacher_weights", "weight_candidates", "create_teacher_model"]
