"""Local weight files of timm backbones (DINOv3 teacher, DINOv2 reference encoder): one resolver for both.

Weights come from local files only (no downloads). ``weights: auto`` searches a directory for the usual
names (timm, Hugging Face and Meta's original release names), ``weights: PATH`` takes that file and
``weights: random`` is the explicit opt-in for random initialisation (tests, benchmarks). timm converts
Meta's key layout through its ``checkpoint_filter_fn`` when loading via
``pretrained_cfg_overlay=dict(file=...)``, so either layout works.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from edgekit.core.errors import ModelError

# timm architecture -> glob patterns of Meta's original checkpoint names ({tag}: the timm pretrained tag).
# DINOv3: dinov3_vits16_pretrain_lvd1689m-08c60483.pth; DINOv2: dinov2_vits14_pretrain.pth.
_META_PATTERNS = {
    "vit_small_patch16_dinov3": "dinov3_vits16_pretrain_{tag}*.pth",
    "vit_small_plus_patch16_dinov3": "dinov3_vits16plus_pretrain_{tag}*.pth",
    "vit_base_patch16_dinov3": "dinov3_vitb16_pretrain_{tag}*.pth",
    "vit_large_patch16_dinov3": "dinov3_vitl16_pretrain_{tag}*.pth",
    "vit_huge_plus_patch16_dinov3": "dinov3_vith16plus_pretrain_{tag}*.pth",
    "vit_7b_patch16_dinov3": "dinov3_vit7b16_pretrain_{tag}*.pth",
    "vit_small_patch14_dinov2": "dinov2_vits14_pretrain*.pth",
    "vit_base_patch14_dinov2": "dinov2_vitb14_pretrain*.pth",
    "vit_large_patch14_dinov2": "dinov2_vitl14_pretrain*.pth",
    "vit_small_patch14_reg4_dinov2": "dinov2_vits14_reg4_pretrain*.pth",
    "vit_base_patch14_reg4_dinov2": "dinov2_vitb14_reg4_pretrain*.pth",
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
    pattern = _META_PATTERNS.get(arch.replace("_qkvb", ""))
    if pattern:
        out.append(d / pattern.format(tag=tag))
    return out


def resolve_timm_weights(name: str, weights: str, weights_dir: str, key: str, what: str) -> Optional[Path]:
    """The weights file of timm model ``name``: None for ``random``, the file for a path, the first hit of
    :func:`weight_candidates` for ``auto``. ``key`` (e.g. ``teacher.weights``) and ``what`` (e.g.
    ``the DINOv3 weights``) word the one-line ModelError, which lists every path searched."""
    if weights == "random":
        return None
    if weights != "auto":
        path = Path(weights).expanduser()
        if not path.is_file():
            raise ModelError(f"{key} file {path} does not exist" + (" (it is a directory)" if path.is_dir() else ""),
                             f"put the {name} weights there or set {key}: auto")
        return path
    searched = weight_candidates(name, Path(weights_dir))
    for cand in searched:
        if "*" in cand.name:
            hits = sorted(cand.parent.glob(cand.name)) if cand.parent.is_dir() else []
            if hits:
                return hits[0]
        elif cand.is_file():
            return cand
    prefix = key.rsplit(".", 1)[0] if "." in key else key
    raise ModelError(
        f"no weights for {prefix} {name}; searched: {', '.join(str(p) for p in searched)}",
        f"copy {what} (timm or Meta layout) into {weights_dir}/, or set {key}: PATH ({key}: random only for tests)")


__all__ = ["weight_candidates", "resolve_timm_weights"]
