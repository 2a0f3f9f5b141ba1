"""RefDet checkpoints: tensors and JSON-able values only, so they load with ``weights_only=True``.

::

    {"edgekit_task": "refdet", "format": 1, "model_config": {...}, "model": state_dict (EMA weights when EMA
     is on), "imgsz": int, "epoch": int, "stage": int, ...extra JSON-able keys...,
     "optimizer"/"ema"/"scaler"/"rng"/...: resume state, only in last.pt and periodic checkpoints}

No pickled class is inside, so :func:`edgekit.checkpoints.safe_load` reads it without any allow-list entry.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

import torch

from edgekit.core.atomic import write_bytes_atomic
from edgekit.core.errors import ModelError

from .model import RefDetModel, RefDetModelConfig

TASK = "refdet"
FORMAT = 1
PathLike = Union[str, Path]


def checkpoint_bytes(model_state: Dict[str, torch.Tensor], model_config: RefDetModelConfig, imgsz: int, epoch: int,
                     stage: int, **extra: Any) -> bytes:
    """The serialised checkpoint (see the module docstring); ``extra`` adds keys (metrics, resume state)."""
    ckpt: Dict[str, Any] = {"edgekit_task": TASK, "format": FORMAT, "model_config": model_config.model_dump(mode="json"),
                            "model": {k: v.detach().cpu().clone() for k, v in model_state.items()},
                            "imgsz": int(imgsz), "epoch": int(epoch), "stage": int(stage)}
    ckpt.update(extra)
    buf = io.BytesIO()
    torch.save(ckpt, buf)
    return buf.getvalue()


def save_refdet_checkpoint(path: PathLike, model: Union[RefDetModel, Dict[str, torch.Tensor]], imgsz: int,
                           epoch: int = 0, stage: int = 2, model_config: Optional[RefDetModelConfig] = None,
                           **extra: Any) -> Path:
    """Write a checkpoint atomically (a kill leaves the old file or the new one, never half of one).

    ``model``: the module (its ``cfg`` is stored) or a state dict (then ``model_config`` is required).
    """
    if isinstance(model, RefDetModel):
        state, model_config = model.state_dict(), model_config or model.cfg
    else:
        state = model
    if model_config is None:
        raise ValueError("save_refdet_checkpoint: model_config is required with a bare state dict")
    return write_bytes_atomic(path, checkpoint_bytes(state, model_config, imgsz, epoch, stage, **extra))


def read_refdet_checkpoint(path: PathLike, trust: bool = False) -> Dict[str, Any]:
    """The checkpoint dict, checked to be a RefDet checkpoint (one-line ModelError otherwise)."""
    from edgekit.checkpoints import safe_load

    ckpt = safe_load(path, trust=trust)
    if not isinstance(ckpt, dict) or ckpt.get("edgekit_task") != TASK:
        task = ckpt.get("edgekit_task") if isinstance(ckpt, dict) else None
        raise ModelError(f"checkpoint {path} is not a RefDet checkpoint (edgekit_task={task!r})",
                         "pass a checkpoint written by `edgekit train refdet` (runs/<id>/checkpoints/best.pt)")
    if int(ckpt.get("format", 0)) > FORMAT:
        raise ModelError(f"checkpoint {path} has RefDet format {ckpt.get('format')}, newer than this edgekit ({FORMAT})",
                         "upgrade edgekit")
    return ckpt


def model_from_checkpoint(ckpt: Dict[str, Any], path: PathLike = "checkpoint") -> RefDetModel:
    """Build the model of ``ckpt["model_config"]`` (no weight files read) and load ``ckpt["model"]`` strictly."""
    cfg = RefDetModelConfig(**ckpt["model_config"])
    model = RefDetModel(cfg, load_weights=False)
    try:
        model.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as e:
        first = (str(e).strip().splitlines() or ["state dict mismatch"])[0]
        raise ModelError(f"checkpoint {path}: weights do not fit its model_config: {first}",
                         "the file was edited or written by another edgekit version; retrain or restore it") from None
    return model


def load_refdet_checkpoint(path: PathLike, trust: bool = False) -> Tuple[RefDetModel, Dict[str, Any]]:
    """``(RefDetModel in eval mode, meta)``; ``meta`` is every key but the tensors (model, optimizer, ...)."""
    ckpt = read_refdet_checkpoint(path, trust=trust)
    model = model_from_checkpoint(ckpt, path).eval()
    meta = {k: v for k, v in ckpt.items() if k not in RESUME_KEYS and k != "model"}
    return model, meta


# Keys only a resumable checkpoint holds (left out of load_refdet_checkpoint's meta).
RESUME_KEYS = ("optimizer", "criterion", "rng", "step", "ema_updates", "train_model")

__all__ = ["save_refdet_checkpoint", "load_refdet_checkpoint", "read_refdet_checkpoint", "model_from_checkpoint",
           "checkpoint_bytes", "TASK", "FORMAT", "RESUME_KEYS"]
