"""The frozen DINOv3 teacher: weight resolution, construction and patch-feature extraction.

Weights come from local files only (no downloads): ``artifacts/models/dino/`` is searched by the resolver
shared with the RefDet reference encoder (``edgekit/train/weights.py``). The teacher is a plain object held beside
the trainer, never a submodule of the student, so it stays out of checkpoints, EMA, the optimizer
and the DDP wrapper.

Speed: a small student's step is bound by kernel launches, and the eager ViT forward is ~150 of
them. On CUDA the forward is captured once per input shape as a CUDA graph (``teacher.cuda_graph``,
one replay per step; the weights are frozen, so the graph's baked-in addresses stay valid) and
``Teacher.submit`` runs it on a side stream that overlaps the student. Both fall back to the plain
eager forward (CPU, or a capture that fails: logged once).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

from edgekit.core.errors import ConfigError, ModelError
from edgekit.train.weights import resolve_timm_weights, weight_candidates

from .config import TeacherConfig

if TYPE_CHECKING:
    import torch

LOG = logging.getLogger(__name__)


def resolve_teacher_weights(cfg: TeacherConfig) -> Optional[Path]:
    """The weights file for ``cfg``; None for ``weights: random``; ModelError listing every path searched."""
    return resolve_timm_weights(cfg.name, cfg.weights, cfg.weights_dir, "teacher.weights", "the DINOv3 weights")


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
    except Exception as e:  # name, kwargs, then the weights file (unreadable, or keys/shapes that do not fit)
        raise _teacher_build_error(cfg, weights, e) from None
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def _teacher_build_error(cfg: TeacherConfig, weights: Optional[Path], e: Exception) -> Exception:
    """The user error behind a failed ``timm.create_model`` (the exception itself when it is a bug)."""
    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if "Unknown model" in text:  # checked first: timm raises it as a RuntimeError, like a bad state dict
        return ConfigError(f"teacher.name {cfg.name!r} is not a timm model", "use e.g. vit_small_patch16_dinov3")
    if isinstance(e, TypeError) and "keyword argument" in text:
        return ConfigError(f"teacher.model_kwargs does not fit {cfg.name}: {first}",
                           "pass only timm.create_model arguments of this architecture")
    if weights is None:
        return e
    from edgekit.checkpoints import refused_pickle

    refused = refused_pickle(e)  # pickled code: name it, never echo torch's "retry with weights_only=False"
    if refused:
        first = f"it names {refused}, which is not a tensor (unpickling it could run code; it was not run)"
    # RuntimeError (key/shape mismatch), UnpicklingError, SafetensorError, ...: a file that is no such checkpoint.
    return ModelError(f"teacher weights {weights} do not fit {cfg.name}: {first}",
                      "use the weights released for this architecture (timm or Meta layout, .pth or .safetensors)")


def check_teacher(cfg: TeacherConfig) -> Optional[Path]:
    """Fail on an unknown teacher name or missing weights before anything is written; the weights path."""
    import timm

    weights = resolve_teacher_weights(cfg)
    if not timm.is_model(cfg.name):
        raise ConfigError(f"teacher.name {cfg.name!r} is not a timm model", "use e.g. vit_small_patch16_dinov3")
    return weights


def teacher_dtype(cfg: TeacherConfig, device_type: str):
    import torch

    if device_type != "cuda" or cfg.dtype == "fp32":
        return torch.float32
    return torch.bfloat16 if cfg.dtype == "bf16" else torch.float16


def cache_rope_embeds(model) -> None:
    """Memoise ``model.rope.get_embed`` per grid shape while the RoPE module is in eval mode.

    timm's DINOv3 (``dynamic_img_size``) rebuilds its RoPE table on the CPU and copies it to the
    device on every forward: a host->device copy per step, and an operation a CUDA graph cannot
    capture. In eval mode the table is a pure function of the grid shape, so caching it is exact.
    Hand-written because timm has no switch for it; a no-op for models without ``rope.get_embed``.
    """
    rope = getattr(model, "rope", None)
    get_embed = getattr(rope, "get_embed", None)
    if get_embed is None or getattr(get_embed, "_edgekit_cached", False):
        return
    cache: Dict[Any, Any] = {}

    def cached_get_embed(*args, **kwargs):
        if rope.training:  # training-time coordinate augmentation draws new tables: never cache
            return get_embed(*args, **kwargs)
        key = (tuple(tuple(a) if isinstance(a, (list, tuple)) else a for a in args),
               tuple(sorted((k, tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in kwargs.items())))
        if key not in cache:
            cache[key] = get_embed(*args, **kwargs)
        return cache[key]

    cached_get_embed._edgekit_cached = True  # type: ignore[attr-defined]
    rope.get_embed = cached_get_embed


class PendingFeatures:
    """Teacher features being computed on a side CUDA stream (or, on CPU, not computed yet).

    ``result()`` joins the side stream into the caller's current stream (no host sync) and returns
    the (B, C, h, w) float32 features; it may be called more than once.
    """

    def __init__(self, teacher: Teacher, img: torch.Tensor, feats: Optional[torch.Tensor] = None,
                 stream=None) -> None:
        self.teacher = teacher
        self.img = img
        self._feats = feats
        self._stream = stream

    def result(self) -> torch.Tensor:
        import torch

        if self._feats is None:  # CPU (or an input the side stream could not take): compute it now
            self._feats = self.teacher.features(self.img)
        elif self._stream is not None:
            current = torch.cuda.current_stream(self._feats.device)
            current.wait_stream(self._stream)
            # Allocated on the side stream, used from here on by this one: the caching allocator must not
            # hand the memory back to the side stream before this stream's work on it is done.
            self._feats.record_stream(current)
            self._stream = None
        return self._feats


class _GraphedForward:
    """One captured teacher forward: static input/output buffers and the graph that links them."""

    def __init__(self, graph, static_in: torch.Tensor, static_out: torch.Tensor) -> None:
        self.graph, self.static_in, self.static_out = graph, static_in, static_out

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        self.static_in.copy_(img)
        self.graph.replay()  # on the caller's current stream
        return self.static_out.clone()  # callers may keep the result across the next replay


class Teacher:
    """Frozen timm ViT returning normalised patch maps (B, C, H/16, W/16) for RGB [0, 1] images.

    Deliberately not an ``nn.Module``: it can never be registered as a submodule of the student.
    On CUDA, ``submit`` runs the forward on a side stream so it overlaps the student's step, and
    with ``cfg.cuda_graph`` the forward is captured once per input shape and replayed.
    """

    MAX_GRAPHS = 4  # input shapes kept captured (the full batch, the last smaller one, ...)

    def __init__(self, model, cfg: TeacherConfig, device, source: str) -> None:
        import torch

        self.cfg = cfg
        self.source = source
        self.device = torch.device(device)
        self.dtype = teacher_dtype(cfg, self.device.type)
        self.model = model.to(self.device, dtype=self.dtype).eval()
        cache_rope_embeds(self.model)
        data_cfg = getattr(model, "pretrained_cfg", {}) or {}
        mean = torch.tensor(data_cfg.get("mean", (0.485, 0.456, 0.406)), device=self.device).view(1, 3, 1, 1)
        std = torch.tensor(data_cfg.get("std", (0.229, 0.224, 0.225)), device=self.device).view(1, 3, 1, 1)
        self.mean, self.std = mean, std
        # (x - mean) / std as one fused multiply-add: x * scale + shift.
        self._scale, self._shift = 1.0 / std, -mean / std
        self.patch = int(getattr(getattr(model, "patch_embed", None), "patch_size", (16, 16))[0])
        self.width = int(getattr(model, "embed_dim", getattr(model, "num_features", 0)))
        self.use_cuda_graph = bool(cfg.cuda_graph) and self.device.type == "cuda"
        self._graphs: Dict[Tuple[int, ...], _GraphedForward] = {}  # insertion order = least recently used first
        self._side_stream = None

    def input_hw(self, img_hw: Tuple[int, int]) -> Tuple[int, int]:
        """Teacher input size: ``cfg.imgsz`` square, else the image size rounded to the patch size."""
        if self.cfg.imgsz:
            return self.cfg.imgsz, self.cfg.imgsz
        return tuple(max(self.patch, round(s / self.patch) * self.patch) for s in img_hw)  # type: ignore[return-value]

    @property
    def graph_shapes(self) -> List[Tuple[int, ...]]:
        """Input shapes with a captured CUDA graph (empty on CPU, with cuda_graph off, or after a failed capture)."""
        return list(self._graphs)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        """Resize, normalise and run the ViT: no autograd, no host syncs (so it can be graph-captured)."""
        import torch
        import torch.nn.functional as F

        # autocast off: the teacher runs in its own dtype whatever the trainer's AMP context is.
        with torch.autocast(device_type=self.device.type, enabled=False):
            hw = self.input_hw(tuple(x.shape[-2:]))
            if tuple(x.shape[-2:]) != hw:
                x = F.interpolate(x, size=hw, mode="bilinear", align_corners=False)
            x = torch.addcmul(self._shift, x, self._scale).to(self.dtype)
            feats = self.model.forward_intermediates(x, indices=[self.cfg.layer], norm=True,
                                                     output_fmt="NCHW", intermediates_only=True)
        return feats[-1].float()

    def features(self, img: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) float32 patch features of RGB [0, 1] images, without autograd, on the current stream."""
        import torch

        with torch.no_grad():
            x = img.detach()
            if self.use_cuda_graph:
                graphed = self._graphed(x)
                if graphed is not None:
                    current = torch.cuda.current_stream(self.device)
                    if self._side_stream is not None and current != self._side_stream:
                        current.wait_stream(self._side_stream)  # a replay queued by submit() must finish first
                    return graphed(x)
            return self._forward(x.to(self.device, dtype=torch.float32))

    def submit(self, img: torch.Tensor) -> PendingFeatures:
        """Start ``features(img)`` on a side CUDA stream and return at once; on CPU the work waits for ``result()``.

        The side stream first waits for the current stream (which produced ``img``), so nothing the
        caller queued before is raced; ``img`` is marked as used by the side stream for the allocator.
        """
        import torch

        if self.device.type != "cuda" or not img.is_cuda or img.device != self.device:
            return PendingFeatures(self, img)
        if self._side_stream is None:
            self._side_stream = torch.cuda.Stream(device=self.device)
        side = self._side_stream
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            feats = self.features(img)
        img.record_stream(side)
        return PendingFeatures(self, img, feats, side)

    def _graphed(self, x: torch.Tensor) -> Optional[_GraphedForward]:
        """The captured forward for ``x``'s shape (capturing it now if new); None when graphs are unavailable."""
        key = tuple(x.shape)
        graphed = self._graphs.pop(key, None)
        if graphed is None:
            graphed = self._capture(x)
            if graphed is None:
                return None
            while len(self._graphs) >= self.MAX_GRAPHS:
                self._graphs.pop(next(iter(self._graphs)))
        self._graphs[key] = graphed  # (re)inserted last: most recently used
        return graphed

    def _capture(self, x: torch.Tensor) -> Optional[_GraphedForward]:
        """Warm up on a side stream, capture, and check one replay against eager; on any failure log once
        and turn graphs off for good (the eager forward keeps working)."""
        import torch

        try:
            static_in = torch.empty(x.shape, dtype=torch.float32, device=self.device)
            static_in.copy_(x)
            warm = torch.cuda.Stream(device=self.device)
            warm.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(warm):  # the PyTorch docs: warm up (lazy init, autotuning) before capturing
                for _ in range(2):
                    reference = self._forward(static_in)
            torch.cuda.current_stream(self.device).wait_stream(warm)
            graph = torch.cuda.CUDAGraph()
            # thread_local: only this thread's calls may break the capture (not e.g. a pin-memory thread).
            with torch.cuda.graph(graph, capture_error_mode="thread_local"):
                static_out = self._forward(static_in)
            graph.replay()
            tol = {torch.float32: 1e-4, torch.float16: 2e-2}.get(self.dtype, 5e-2)
            if not torch.allclose(static_out, reference, rtol=tol, atol=tol):
                raise RuntimeError(f"graph replay differs from eager by {(static_out - reference).abs().max():.3g}")
        except Exception as e:  # any capture problem: log once, stay eager
            self.use_cuda_graph = False
            self._graphs.clear()
            LOG.warning("teacher CUDA graph for input %s failed (%s: %s); running the teacher eagerly",
                        tuple(x.shape), type(e).__name__, str(e).strip().splitlines()[0] if str(e).strip() else "")
            return None
        LOG.info("teacher CUDA graph captured for input %s", tuple(x.shape))
        return _GraphedForward(graph, static_in, static_out)


def build_teacher(cfg: TeacherConfig, device) -> Teacher:
    """Resolve weights, build the timm model, and wrap it; logs a warning for random weights."""
    weights = resolve_teacher_weights(cfg)
    if weights is None:
        LOG.warning("teacher %s uses RANDOM weights (teacher.weights: random): distillation targets carry no "
                    "pretrained signal", cfg.name)
    model = create_teacher_model(cfg, weights)
    return Teacher(model, cfg, device, source=str(weights) if weights else "random")


__all__ = ["Teacher", "PendingFeatures", "cache_rope_embeds", "build_teacher", "check_teacher", "resolve_teacher_weights", "weight_candidates", "create_teacher_model"]
