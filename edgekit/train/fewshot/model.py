"""The few-shot reference detector (RefDet): a YOLOv8n detector conditioned on a target embedding.

::

    refs [K,3,R,R] --DINOv2 (timm)--> [CLS, mean patch] [K,2C] --ref_proj--> L2 [K,D] --mean, L2--> embedding [1,D]
    images [B,3,H,W] --YOLOv8n backbone+neck--> P3,P4,P5 --fusion(embedding) per scale--> Detect (nc=1, DFL)

Backbone, neck and head are Ultralytics modules built from the model yaml (``yolov8n.yaml``), so a
local ``yolov8n.pt`` loads into them key by key (the 80-class score conv does not fit one class and
stays new). Each :class:`FusionBlock` conditions one neck scale on the embedding with channel attention
(a per-channel gate computed from the embedding) and spatial attention (the cosine similarity of the
projected embedding with the projected feature at every location, turned into a gate); the similarity
map is also fed to the head as an extra channel, so "is this the target" is a direct input of the score
branch. The projected per-location features (``keys``) are the proposal embeddings the CPE loss trains.

Output layouts (``docs/refdet.md``): train mode returns the raw per-anchor dict for the losses; eval
mode returns ``[B, 5, A]`` = cx, cy, w, h (input pixels), sigmoid score: the Ultralytics Detect export
layout with one class. :class:`ReferenceEncoderGraph` and :class:`DetectorGraph` are the two graphs
the export writes (ONNX opset 17).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from edgekit.core.config import StrictModel
from edgekit.core.errors import ConfigError, ModelError
from edgekit.train.weights import resolve_timm_weights

LOG = logging.getLogger(__name__)
DEFAULT_ENCODER = "vit_small_patch14_dinov2"
DEFAULT_DINOV2_DIR = "artifacts/models/dinov2"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OPSET = 17


class RefDetModelConfig(StrictModel):
    """How a :class:`RefDetModel` is built; stored in every checkpoint as ``model_config``."""

    yaml: str = "yolov8n.yaml"  # Ultralytics detection yaml of the backbone, neck and head (built with nc=1)
    weights: Optional[str] = None  # local yolov8n.pt (or a state dict) loaded into backbone/neck/head; None = scratch
    encoder: str = DEFAULT_ENCODER  # timm ViT of the reference encoder
    # "auto": search encoder_weights_dir; a file path: that file; "random": random init (tests/benchmarks only).
    encoder_weights: str = "auto"
    encoder_weights_dir: str = DEFAULT_DINOV2_DIR  # where encoder_weights=auto looks
    encoder_kwargs: Dict[str, Any] = Field(default_factory=dict)  # extra timm.create_model kwargs (e.g. depth=1)
    ref_size: int = Field(default=224, ge=14)  # reference photo side (letterboxed), a multiple of the patch size
    reg_max: int = Field(default=16, ge=1)  # DFL bins per box side
    embed_dim: int = Field(default=256, ge=8)  # D: the target embedding (encoder output) width
    fusion_dim: int = Field(default=64, ge=8)  # E: the similarity space of the fusion blocks (proposal embeddings)

    @field_validator("weights")
    @classmethod
    def _empty_is_none(cls, v: Optional[str]) -> Optional[str]:
        return v or None


# -- reference encoder ------------------------------------------------------------------------------
def build_encoder(cfg: RefDetModelConfig, load_weights: bool = True) -> nn.Module:
    """The timm ViT (no classifier) at ``img_size=ref_size``: pretrained position embeddings are resampled at
    load time, so the exported graph holds no interpolation. ``load_weights=False`` skips the weight file
    (a checkpoint's state dict follows)."""
    import timm

    weights = resolve_encoder_weights(cfg) if load_weights else None
    if not timm.is_model(cfg.encoder):
        raise ConfigError(f"model.encoder {cfg.encoder!r} is not a timm model", f"use e.g. {DEFAULT_ENCODER}")
    kwargs = dict(img_size=cfg.ref_size, num_classes=0, **cfg.encoder_kwargs)
    try:
        if weights is None:
            return timm.create_model(cfg.encoder, pretrained=False, **kwargs)
        return timm.create_model(cfg.encoder, pretrained=True, pretrained_cfg_overlay=dict(file=str(weights)), **kwargs)
    except TypeError as e:
        raise ConfigError(f"model.encoder_kwargs does not fit {cfg.encoder}: {e}",
                          "pass only timm.create_model arguments of this architecture") from None
    except (RuntimeError, ValueError, OSError) as e:
        if weights is None:
            raise
        from edgekit.checkpoints import refused_pickle

        refused = refused_pickle(e)
        first = (f"it names {refused}, which is not a tensor (unpickling it could run code; it was not run)"
                 if refused else (str(e).strip().splitlines() or [type(e).__name__])[0])
        raise ModelError(f"encoder weights {weights} do not fit {cfg.encoder}: {first}",
                         "use the DINOv2 weights released for this architecture (timm or Meta layout)") from None


def resolve_encoder_weights(cfg: RefDetModelConfig) -> Optional[Path]:
    """The encoder's weight file (the resolver shared with the OBB teacher); None for ``random``."""
    return resolve_timm_weights(cfg.encoder, cfg.encoder_weights, cfg.encoder_weights_dir, "model.encoder_weights",
                                "the DINOv2 weights")


# -- detector ---------------------------------------------------------------------------------------
def build_yolo(yaml: str) -> nn.Module:
    """Ultralytics ``DetectionModel`` from ``yaml`` with one class (no download: built from the yaml)."""
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    try:
        spec = yaml_model_load(yaml)
    except FileNotFoundError:
        raise ConfigError(f"model.yaml {yaml!r} is not an Ultralytics model yaml", "use yolov8n.yaml") from None
    spec["nc"] = 1  # set here, not through nc=, which logs an override line
    return DetectionModel(spec, ch=3, nc=1, verbose=False)


def load_yolo_weights(det: nn.Module, path: Union[str, Path], trust: bool = False) -> Tuple[int, int]:
    """Copy every tensor of a local Ultralytics checkpoint (or plain state dict) whose name and shape fit
    into ``det``; returns (loaded, total). A missing file is a one-line ModelError."""
    from edgekit.checkpoints import safe_load

    path = Path(path).expanduser()
    if not path.is_file():
        raise ModelError(f"model.weights file {path} does not exist",
                         "put a yolov8n.pt there (edgekit never downloads it) or leave model.weights unset")
    ckpt = safe_load(path, trust=trust)
    src = ckpt.get("ema") or ckpt.get("model") if isinstance(ckpt, dict) and ("model" in ckpt or "ema" in ckpt) else ckpt
    sd = src.float().state_dict() if hasattr(src, "state_dict") else src
    if not isinstance(sd, dict):
        raise ModelError(f"model.weights {path} holds no model or state dict", "pass an Ultralytics yolov8n.pt")
    own = det.state_dict()
    fit = {k: v for k, v in sd.items() if k in own and hasattr(v, "shape") and v.shape == own[k].shape}
    if not fit:
        raise ModelError(f"model.weights {path} has no tensor that fits {type(det).__name__} of model.yaml",
                         "pass weights of the same architecture (yolov8n.pt for yolov8n.yaml)")
    det.load_state_dict(fit, strict=False)
    return len(fit), len(own)


def small_box_prior(head: nn.Module, decay: float = 0.5) -> None:
    """Start the DFL box branch at boxes about 3 strides wide instead of Ultralytics' 15.

    Ultralytics sets every bin's logit to 2.0 (uniform: 7.5 grid units per side, a 480 px box at stride 32).
    Against small targets that leaves the task-aligned assigner with CIoU <= 0 (clamped to 0) for every
    candidate, so positives flicker and vanish. Logits ``-decay * bin`` put the expected side near
    ``1 / (e^decay - 1)`` = 1.5 grid units: the boxes overlap their objects from the first step.
    """
    if head.reg_max <= 1:
        return
    bins = -decay * torch.arange(head.reg_max, dtype=torch.float)
    for branch in head.cv2:
        branch[-1].bias.data.copy_(bins.repeat(4))


class FusionBlock(nn.Module):
    """Conditions one neck scale ``x [B,C,h,w]`` on the target embedding ``e [B,D]``.

    ``ca = sigmoid(W_c e)`` (channel attention), ``k = normalize(W_k x)`` per location, ``q = normalize(W_q e)``
    (shared over scales), ``sim = <k, q>`` in [-1, 1], ``sa = sigmoid(a * sim + b)`` (spatial attention),
    ``out = x + Conv1x1([x * ca * sa, sim])``. Returns ``out`` and ``k`` (the proposal embeddings).
    """

    def __init__(self, channels: int, embed_dim: int, fusion_dim: int) -> None:
        from ultralytics.nn.modules import Conv

        super().__init__()
        self.channel = nn.Linear(embed_dim, channels)
        self.key = nn.Conv2d(channels, fusion_dim, 1)
        self.sim_scale = nn.Parameter(torch.tensor(5.0))
        self.sim_bias = nn.Parameter(torch.tensor(0.0))
        self.out = Conv(channels + 1, channels, 1)

    def forward(self, x: torch.Tensor, e: torch.Tensor, q: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        ca = torch.sigmoid(self.channel(e))[:, :, None, None]
        k = F.normalize(self.key(x), dim=1)
        sim = (k * q[:, :, None, None]).sum(1, keepdim=True)
        sa = torch.sigmoid(self.sim_scale * sim + self.sim_bias)
        return x + self.out(torch.cat([x * ca * sa, sim], 1)), k


class RefDetModel(nn.Module):
    """Reference encoder + YOLOv8n detector with fusion blocks (see the module docstring)."""

    def __init__(self, cfg: Optional[RefDetModelConfig] = None, load_weights: bool = True, trust: bool = False) -> None:
        super().__init__()
        self.cfg = cfg = cfg or RefDetModelConfig()
        self.encoder = build_encoder(cfg, load_weights=load_weights)
        enc_dim = int(getattr(self.encoder, "num_features", getattr(self.encoder, "embed_dim", 0)))
        self.ref_proj = nn.Linear(2 * enc_dim, cfg.embed_dim)
        det = build_yolo(cfg.yaml)
        if cfg.reg_max != det.model[-1].reg_max:
            raise ConfigError(f"model.reg_max={cfg.reg_max} but {cfg.yaml} builds a head with reg_max="
                              f"{det.model[-1].reg_max}", f"set model.reg_max={det.model[-1].reg_max}")
        if load_weights and cfg.weights:
            loaded, total = load_yolo_weights(det, cfg.weights, trust=trust)
            LOG.info("model.weights %s: %d of %d detector tensors loaded", cfg.weights, loaded, total)
        else:
            small_box_prior(det.model[-1])
        self.layers = det.model[:-1]  # backbone + neck (Ultralytics modules with .f/.i routing)
        self.head = det.model[-1]  # Detect(nc=1), strides set by the build
        self.save = set(det.save)
        self.head_from = list(self.head.f)
        channels = [self.head.cv2[i][0].conv.in_channels for i in range(self.head.nl)]
        self.query = nn.Linear(cfg.embed_dim, cfg.fusion_dim)
        self.fusion = nn.ModuleList(FusionBlock(c, cfg.embed_dim, cfg.fusion_dim) for c in channels)
        self.register_buffer("ref_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("ref_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def stride(self) -> torch.Tensor:
        return self.head.stride

    @property
    def embedding_dim(self) -> int:
        return self.cfg.embed_dim

    # -- reference side ---------------------------------------------------------------------------
    def embed(self, refs: torch.Tensor) -> torch.Tensor:
        """``[K,3,R,R]`` RGB 0..1 -> ``[K,D]`` L2-normalised embeddings, one per reference."""
        x = (refs - self.ref_mean) / self.ref_std
        tokens = self.encoder.forward_features(x)  # [K, prefix + patches, C] after the final norm
        prefix = int(getattr(self.encoder, "num_prefix_tokens", 1))
        # CLS token + mean patch token: the DINOv2 linear-probe feature (global identity + local detail).
        feat = torch.cat([tokens[:, 0], tokens[:, prefix:].mean(1)], 1)
        return F.normalize(self.ref_proj(feat), dim=1)

    def encode_one(self, ref: torch.Tensor) -> torch.Tensor:
        """One reference ``[1,3,R,R]`` -> ``[1,D]`` (L2-normalised)."""
        return self.embed(ref)

    def encode(self, refs: torch.Tensor) -> torch.Tensor:
        """``[K,3,R,R]`` -> ``[1,D]``: the mean of the K normalised embeddings, normalised again."""
        return F.normalize(self.embed(refs).mean(0, keepdim=True), dim=1)

    # -- frame side -------------------------------------------------------------------------------
    def neck(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The neck outputs the head reads (P3, P4, P5), routed as Ultralytics' ``_predict_once`` does."""
        y: List[Optional[torch.Tensor]] = []
        for m in self.layers:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return [y[j] for j in self.head_from]  # type: ignore[misc]

    def fuse_features(self, images: torch.Tensor, embedding: torch.Tensor) -> Tuple[List[torch.Tensor], torch.Tensor, torch.Tensor]:
        """Fused per-scale features, proposal embeddings ``[B,E,A]`` and the projected query ``[B,E]``."""
        q = F.normalize(self.query(embedding), dim=1)
        feats, keys = [], []
        for block, x in zip(self.fusion, self.neck(images)):
            out, k = block(x, embedding, q)
            feats.append(out)
            keys.append(k.flatten(2))
        return feats, torch.cat(keys, 2), q

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> Union[torch.Tensor, Dict[str, Any]]:
        """Train mode: ``{"boxes" [B,4*reg_max,A], "scores" [B,1,A], "feats", "keys" [B,E,A], "query" [B,E]}``;
        eval mode: ``[B,5,A]`` (cx, cy, w, h in input pixels, sigmoid score)."""
        raw = self.forward_raw(images, embedding)
        return raw if self.training else self.head._inference(raw)

    def forward_raw(self, images: torch.Tensor, embedding: torch.Tensor) -> Dict[str, Any]:
        """The train-mode dict in either mode (validation computes its loss and its detections from one pass)."""
        if embedding.shape[0] != images.shape[0]:
            embedding = embedding.expand(images.shape[0], -1)
        feats, keys, q = self.fuse_features(images, embedding)
        return {**self.head.forward_head(feats, **self.head.one2many), "keys": keys, "query": q}

    def decode_raw(self, raw: Dict[str, Any]) -> torch.Tensor:
        """``forward_raw``'s dict -> the eval layout ``[B,5,A]``."""
        return self.head._inference(raw)


# -- export graphs ----------------------------------------------------------------------------------
class ReferenceEncoderGraph(nn.Module):
    """``refs [1,3,R,R]`` (RGB 0..1, letterboxed) -> ``embedding [1,D]`` (L2-normalised)."""

    def __init__(self, model: RefDetModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, refs: torch.Tensor) -> torch.Tensor:
        return self.model.encode_one(refs)


class DetectorGraph(nn.Module):
    """``(images [1,3,H,W], embedding [1,D]) -> output0 [1,5,A]``."""

    def __init__(self, model: RefDetModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor, embedding: torch.Tensor) -> torch.Tensor:
        return self.model(images, embedding)


def _export(graph: nn.Module, args: Tuple[torch.Tensor, ...], path: Path, inputs: Sequence[str], output: str) -> Path:
    graph.eval()
    path = Path(path)
    with warnings.catch_warnings(), torch.no_grad():
        # The TorchScript exporter (dynamo=False): static shapes, every op here has an opset-17 form, and
        # it needs no onnxscript; its deprecation and tracer warnings are expected.
        warnings.simplefilter("ignore")
        torch.onnx.export(graph, args, str(path), opset_version=OPSET, input_names=list(inputs),
                          output_names=[output], dynamo=False, do_constant_folding=True)
    return path


def export_reference_encoder(model: RefDetModel, path: Union[str, Path]) -> Path:
    """Write the encoder graph (``refs`` -> ``embedding``) as ONNX opset 17, fp32."""
    r = model.cfg.ref_size
    device = next(model.parameters()).device
    return _export(ReferenceEncoderGraph(model), (torch.rand(1, 3, r, r, device=device),), Path(path), ["refs"],
                   "embedding")


def export_detector(model: RefDetModel, path: Union[str, Path], imgsz: Union[int, Tuple[int, int]]) -> Path:
    """Write the per-frame graph (``images``, ``embedding`` -> ``output0``) as ONNX opset 17, fp32."""
    h, w = (imgsz, imgsz) if isinstance(imgsz, int) else imgsz
    device = next(model.parameters()).device
    args = (torch.rand(1, 3, h, w, device=device), F.normalize(torch.randn(1, model.embedding_dim, device=device), dim=1))
    return _export(DetectorGraph(model), args, Path(path), ["images", "embedding"], "output0")


__all__ = ["RefDetModelConfig", "RefDetModel", "FusionBlock", "small_box_prior", "ReferenceEncoderGraph", "DetectorGraph",
           "build_encoder", "build_yolo", "load_yolo_weights", "resolve_encoder_weights", "export_reference_encoder",
           "export_detector", "DEFAULT_ENCODER", "DEFAULT_DINOV2_DIR", "OPSET"]
