"""PyTorch backend for the runner contract: the reference side of parity checks.

Takes an Ultralytics checkpoint (``.pt``; needs ultralytics), a TorchScript file (``.torchscript``,
``.ts``) or an ``nn.Module``. Ultralytics heads return ``(decoded, raw_maps)`` in eval mode; the
runner keeps the first tensor, which is exactly what the exported ONNX graph outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

import numpy as np

from edgekit.core.errors import DeviceError, ModelError

from .base import Dim, Runner, TensorMeta


class TorchRunner(Runner):
    """Runs a PyTorch model on numpy feeds (CPU by default)."""

    backend = "torch"

    def __init__(self, model: Union[str, os.PathLike[str], Any], input_name: str = "images",
                 input_shape: Optional[Sequence[Dim]] = None, output_names: Sequence[str] = ("output0",),
                 device: str = "cpu", name: Optional[str] = None) -> None:
        is_path = isinstance(model, (str, os.PathLike))
        super().__init__(name or (Path(model).name if is_path else type(model).__name__))
        self.model_source = model
        self.input_name = input_name
        # Default: any batch and spatial size, 3 channels (what an Ultralytics detector accepts).
        self.input_shape: Tuple[Dim, ...] = tuple(input_shape) if input_shape else ("batch", 3, "height", "width")
        self.output_names = tuple(output_names)
        self.device = device
        self.model = None

    def _activate(self) -> Dict[str, TensorMeta]:
        try:
            import torch  # lazy: the device subset has no torch
        except ImportError:
            raise DeviceError("torch is not installed", "pip install edgekit[train] to use the torch runner") from None
        self._torch = torch
        self.model = _load_model(self.model_source).to(self.device).eval()
        return {self.input_name: TensorMeta(self.input_name, self.input_shape, np.dtype(np.float32))}

    def _infer(self, feed: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        torch = self._torch
        x = torch.from_numpy(np.ascontiguousarray(feed[self.input_name])).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
        tensors = _tensor_leaves(out)[: len(self.output_names)]
        return {name: t.detach().float().cpu().numpy() for name, t in zip(self.output_names, tensors)}

    def _deactivate(self) -> None:
        self.model = None


def _load_model(source: Any):
    import torch

    if isinstance(source, torch.nn.Module):
        return source.float()
    path = Path(source)
    if not path.is_file():
        raise ModelError(f"model file {path} does not exist", "pass an existing .pt or .torchscript file")
    try:
        if path.suffix.lower() in (".torchscript", ".ts"):
            return torch.jit.load(str(path), map_location="cpu")
        from ultralytics.nn.tasks import load_checkpoint  # lazy: only .pt checkpoints need ultralytics

        from edgekit.checkpoints import guarded_loading

        with guarded_loading():  # weights_only + allow-list: a checkpoint's pickled code never runs
            model, _ = load_checkpoint(str(path), device="cpu", fuse=False)
        return model.float()
    except ModelError:
        raise
    except Exception as e:  # torch/pickle/ultralytics raise many types for an unreadable checkpoint
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load checkpoint {path}: {first}",
                         "pass an Ultralytics checkpoint such as runs/<id>/checkpoints/best.pt") from None


def _tensor_leaves(out: Any) -> list:
    """Tensors of a (possibly nested) model output, depth first."""
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        out = list(out.values())
    leaves: list = []
    for item in out if isinstance(out, (list, tuple)) else []:
        leaves.extend(_tensor_leaves(item))
    return leaves


__all__ = ["TorchRunner"]
