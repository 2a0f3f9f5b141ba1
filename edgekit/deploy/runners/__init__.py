"""Inference backends behind one contract, created by name.

Backends are imported lazily: ``create_runner("tensorrt", ...)`` imports TensorRT only then, so this
package imports on a machine that has none of torch, onnxruntime or tensorrt.
"""

from __future__ import annotations

import importlib
from typing import Any, Dict

from edgekit.core.errors import ConfigError

from .base import Runner, TensorMeta

# backend name -> "module:class"
RUNNERS: Dict[str, str] = {
    "onnxruntime": "edgekit.deploy.runners.onnxruntime:OnnxRuntimeRunner",
    "tensorrt": "edgekit.deploy.tensorrt.runner:TensorRTRunner",
    "torch": "edgekit.deploy.runners.torch:TorchRunner",
}


def runner_class(backend: str) -> type:
    """The runner class registered under ``backend`` (imported now)."""
    if backend not in RUNNERS:
        raise ConfigError(f"unknown runner backend '{backend}'", f"choose one of {', '.join(sorted(RUNNERS))}")
    module, attr = RUNNERS[backend].split(":")
    return getattr(importlib.import_module(module), attr)


def create_runner(backend: str, path: Any, **kwargs: Any) -> Runner:
    """Build (not activate) the ``backend`` runner for the model at ``path``."""
    return runner_class(backend)(path, **kwargs)


__all__ = ["RUNNERS", "Runner", "TensorMeta", "create_runner", "runner_class"]
