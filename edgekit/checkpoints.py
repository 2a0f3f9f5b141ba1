"""Safe loading of every PyTorch checkpoint edgekit reads: no pickled code ever runs.

A ``.pt`` file is a pickle, and unpickling may call any function the file names. So edgekit loads
checkpoints with ``torch.load(weights_only=True)`` (PyTorch's restricted unpickler: tensors, plain
containers and numbers) plus :data:`ALLOWED_GLOBALS`, the few Ultralytics/torch classes a YOLOv8-OBB
checkpoint is built from (found by listing the globals of ``YOLO("yolov8n-obb.yaml").save()`` and
of edgekit training's mid-run ``last.pt`` and stripped ``best.pt``, plus the two classes a
``yolov8n.pt`` adds (``DetectionModel``, ``Detect``), with
``torch.serialization.get_unsafe_globals_in_checkpoint``; ``tests/robustness/test_safe_load.py``
keeps that list honest). Anything else is refused in one line naming the file and the global.
``trust=True`` (the ``--trust-checkpoint`` flag) is the explicit opt-out for files the user trusts.

Ultralytics' own ``torch_load`` defaults to ``weights_only=False``; :func:`guarded_loading` makes
every ``torch.load`` in the process restricted while Ultralytics works for edgekit (trainer,
resume, validator, exporter), and :func:`safe_load` is the direct call.

Host-only (imports torch lazily); at the top level so train, export and the deploy torch runner
can all use it without importing one another.
"""

from __future__ import annotations

import contextlib
import importlib
import pickle
import re
import threading
from pathlib import Path
from typing import Any, Callable, Iterator, List, Optional, Union

from edgekit.core.errors import ModelError

TRUST_FLAG = "--trust-checkpoint"
ALLOWED_GLOBALS = (
    "torch.nn.modules.activation.SiLU",
    "torch.nn.modules.batchnorm.BatchNorm2d",
    "torch.nn.modules.container.ModuleList",
    "torch.nn.modules.container.Sequential",
    "torch.nn.modules.conv.Conv2d",
    "torch.nn.modules.pooling.MaxPool2d",
    "torch.nn.modules.upsampling.Upsample",
    "ultralytics.nn.modules.block.Bottleneck",
    "ultralytics.nn.modules.block.C2f",
    "ultralytics.nn.modules.block.DFL",
    "ultralytics.nn.modules.block.SPPF",
    "ultralytics.nn.modules.conv.Concat",
    "ultralytics.nn.modules.conv.Conv",
    "ultralytics.nn.modules.head.Detect",  # yolov8n.pt, loaded into the RefDet detector (model.weights)
    "ultralytics.nn.modules.head.OBB",
    "ultralytics.nn.tasks.DetectionModel",
    "ultralytics.nn.tasks.OBBModel",
    "ultralytics.utils.IterableSimpleNamespace",  # the training args inside a mid-run checkpoint
)
_GLOBAL_RE = re.compile(r"GLOBAL ([\w.]+)")
_lock = threading.RLock()
_original_load: List[Callable[..., Any]] = []  # torch.load as it was before the outermost guard


def allowed_globals() -> List[Any]:
    """The allow-list as objects (a class missing from the installed Ultralytics is left out)."""
    out = []
    for dotted in ALLOWED_GLOBALS:
        module, _, name = dotted.rpartition(".")
        try:
            out.append(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):
            continue
    return out


def refused_pickle(e: BaseException) -> Optional[str]:
    """What a ``weights_only`` load refused (e.g. ``posix.system``), or None when ``e`` is another error.

    For loaders edgekit does not own (timm's): their message ends in torch's advice to retry with
    ``weights_only=False``, which no edgekit flag does and which would run the file's code."""
    text = str(e)
    if ("weights_only" not in text and "GLOBAL" not in text) or _not_a_pickle(e):
        return None
    m = _GLOBAL_RE.search(text) or re.search(r"Unsupported globals?: ([\w.]+)", text)
    return m.group(1) if m else "pickled objects"


def _not_a_pickle(e: BaseException) -> bool:
    """torch's weights_only unpickler stopped at a byte that is no pickle opcode (a photo, a text file):
    the file is no checkpoint at all, not one naming a forbidden class."""
    return "Unsupported operand" in str(e) and not _GLOBAL_RE.search(str(e))


def _refusal(path: Union[str, Path], e: BaseException) -> ModelError:
    m = _GLOBAL_RE.search(str(e))
    what = m.group(1) if m else (str(e).strip().splitlines() or [type(e).__name__])[-1][:120]
    return ModelError(f"refusing to load checkpoint {path}: it names {what}, which is not on edgekit's allow-list "
                      "of checkpoint classes (unpickling it could run code)",
                      f"pass {TRUST_FLAG} only if you trust where the file came from")


def _corrupt(path: Union[str, Path], e: BaseException) -> ModelError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0].split(". ")[0]
    return ModelError(f"cannot load checkpoint {path}: the file is empty, truncated or not a PyTorch checkpoint "
                      f"({type(e).__name__}: {first})", "restore or re-create the file")


def _restricted_load(load: Callable[..., Any], f: Any, *args: Any, **kwargs: Any) -> Any:
    import torch

    kwargs["weights_only"] = True
    where = f if isinstance(f, (str, Path)) else getattr(f, "name", "<stream>")
    with torch.serialization.safe_globals(allowed_globals()):
        try:
            return load(f, *args, **kwargs)
        except pickle.UnpicklingError as e:
            raise (_corrupt(where, e) if _not_a_pickle(e) else _refusal(where, e)) from None
        except (RuntimeError, EOFError, ValueError) as e:
            if "weights_only" in str(e) or "GLOBAL" in str(e):
                raise _refusal(where, e) from None
            raise _corrupt(where, e) from None


def safe_load(path: Union[str, Path], trust: bool = False, map_location: Any = "cpu") -> Any:
    """Load ``path`` restricted to the allow-list (``trust=True``: unrestricted, the user's choice).

    Raises a one-line :class:`ModelError`: missing file, corrupt file, or a disallowed global (named).
    """
    import torch

    path = Path(path)
    if path.is_dir():  # a run or a bundle given where a .pt file is read
        raise ModelError(f"checkpoint {path} is a directory, not a .pt file",
                         f"pass the file itself (e.g. {path}/checkpoints/best.pt for a run)")
    if not path.is_file():
        raise ModelError(f"checkpoint {path} does not exist", "check the path")
    load = _original_load[0] if _original_load else torch.load
    if trust:
        try:
            return load(str(path), map_location=map_location, weights_only=False)
        except (pickle.UnpicklingError, RuntimeError, EOFError) as e:
            raise _corrupt(path, e) from None
    return _restricted_load(load, str(path), map_location=map_location)


@contextlib.contextmanager
def guarded_loading(trust: bool = False) -> Iterator[None]:
    """While active, every ``torch.load`` in this process is restricted to the allow-list (nests; no-op when
    ``trust``). Covers Ultralytics' ``torch_load``, which calls ``torch.load`` with ``weights_only=False``."""
    if trust:
        yield
        return
    import torch

    with _lock:
        previous = torch.load
        if not _original_load:
            _original_load.append(previous)
        original = _original_load[0]

        def guarded(f: Any, *args: Any, **kwargs: Any) -> Any:
            kwargs.pop("weights_only", None)
            return _restricted_load(original, f, *args, **kwargs)

        torch.load = guarded
    try:
        yield
    finally:
        with _lock:
            torch.load = previous
            if previous is original:
                _original_load.clear()


__all__ = ["ALLOWED_GLOBALS", "TRUST_FLAG", "allowed_globals", "safe_load", "guarded_loading"]
