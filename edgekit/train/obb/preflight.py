"""What ``train_obb`` checks before a run directory exists, and how errors from inside a stage are told.

Before: the dataset (the rules ``edgekit data check`` applies, :func:`edgekit.data.check.preflight_train`),
the device, the Ultralytics pass-through keys. A failure here leaves nothing on disk.
After: an exception Ultralytics or torch raises inside a stage is translated at the stage boundary
(:func:`translate_stage_error`) into a one-line edgekit error naming the user's file, never the
data.yaml edgekit generated inside the run; anything not recognised stays a traceback (a bug).
"""

from __future__ import annotations

import contextlib
import errno
import logging
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from edgekit.core.errors import (
    ConfigError,
    DataError,
    DeviceError,
    EdgekitError,
    foreign_message,
    raised_inside,
)

from .config import ObbTrainConfig


def preflight(cfg: ObbTrainConfig) -> Tuple[ObbTrainConfig, Path]:
    """(``cfg`` with ``data`` made absolute, the dataset root its splits resolve against), once everything
    checkable without training is right."""
    from edgekit.data.check import preflight_train

    layout = preflight_train(cfg.data)
    check_student(cfg.student)
    check_device(cfg.device)
    check_ultralytics_keys(cfg.ultralytics)
    return cfg.model_copy(update={"data": str(Path(cfg.data).expanduser().absolute())}), layout.root


def check_student(student: str) -> None:
    """A ``.pt`` student must be a file here: edgekit never downloads, and a missing one would otherwise
    surface as a traceback from deep inside Ultralytics after its banner."""
    path = Path(student).expanduser()
    if path.suffix == ".pt" and not path.is_file():
        raise ConfigError(f"student={student}: {path} does not exist",
                          "pass an existing .pt checkpoint, or a model yaml such as student=yolov8n-obb.yaml")


def _gpu_indices(device: str) -> Optional[list]:
    """GPU indices a CUDA device string asks for (``cuda`` -> [0], ``cuda:1`` / ``1`` -> [1], ``0,1``);
    None when it is not a CUDA request (cpu, mps, "" = Ultralytics' choice)."""
    text = device.strip().lower()
    if text == "cuda":
        return [0]
    text = text[len("cuda:"):] if text.startswith("cuda:") else text
    parts = [p.strip() for p in text.split(",") if p.strip()]
    return [int(p) for p in parts] if parts and all(p.isdigit() for p in parts) else None


def check_device(device: str) -> None:
    """DeviceError when ``device`` asks for a GPU this machine does not have."""
    wanted = _gpu_indices(str(device))
    if wanted is None:
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count == 0:
        raise DeviceError(f"device={device}: no CUDA GPU is visible to torch",
                          "train on the CPU with device=cpu (or fix the driver / CUDA_VISIBLE_DEVICES)")
    missing = [i for i in wanted if i >= count]
    if missing:
        raise DeviceError(f"device={device}: there is no GPU {missing[0]} ({count} visible)",
                          f"use device=0{f' .. device={count - 1}' if count > 1 else ''}")


def check_ultralytics_keys(extra: Dict[str, Any]) -> None:
    """Name an unknown pass-through key here, with the closest Ultralytics key, before any run starts."""
    if not extra:
        return
    from ultralytics.cfg import DEFAULT_CFG_DICT

    from edgekit.core.config import closest_key

    for key in extra:
        if key not in DEFAULT_CFG_DICT:
            hint = closest_key(key, list(DEFAULT_CFG_DICT))
            raise ConfigError(f"unknown key 'ultralytics.{key}' (not an Ultralytics train argument)",
                              f"did you mean 'ultralytics.{hint}'?" if hint else "see Ultralytics' default.yaml")


@contextlib.contextmanager
def held_ultralytics_log() -> Iterator[Callable[[], None]]:
    """Hold back what Ultralytics logs while a stage is being set up; yield ``release`` to let it out.

    Call ``release`` once training really starts (its banner, argument dump and model summary then
    print as usual). If setup fails first, the held lines are dropped: the user sees edgekit's one
    line, not 30 lines of model summary above it.
    """
    logger = logging.getLogger("ultralytics")
    held: List[logging.LogRecord] = []
    saved = list(logger.handlers)

    class _Hold(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            held.append(record)

    hold = _Hold()
    released = []

    def release() -> None:
        if released:
            return
        released.append(True)
        logger.removeHandler(hold)
        for handler in saved:
            logger.addHandler(handler)
        for record in held:
            for handler in saved:
                if record.levelno >= handler.level:
                    handler.handle(record)
        held.clear()

    for handler in saved:
        logger.removeHandler(handler)
    logger.addHandler(hold)
    try:
        yield release
    except BaseException:
        released.append(True)  # setup failed: drop what was held
        logger.removeHandler(hold)
        for handler in saved:
            if handler not in logger.handlers:
                logger.addHandler(handler)
        raise
    release()


_DATASET_WORDS = ("dataset", "images not found", "no labels found", "data.yaml", "labels found")


def translate_stage_error(exc: BaseException, cfg: ObbTrainConfig, generated_yaml: Optional[Path]
                          ) -> Optional[EdgekitError]:
    """The user-facing error for an exception raised while a stage trains, or None (a bug: re-raise it).

    Names the user's dataset rather than the run's generated ``reports/data.yaml``.
    """
    if isinstance(exc, EdgekitError):
        return exc
    text = str(exc)
    user_data = str(Path(cfg.data))
    if generated_yaml is not None:
        text = text.replace(str(generated_yaml), user_data)
    name = type(exc).__name__
    if name == "OutOfMemoryError" or "CUDA out of memory" in text:
        return DeviceError(f"out of GPU memory at batch={cfg.batch}, imgsz={cfg.imgsz} (device={cfg.device})",
                           "lower batch= or imgsz=")
    if isinstance(exc, FileNotFoundError) and exc.filename:
        missing = str(exc.filename).replace(str(generated_yaml), user_data) if generated_yaml else str(exc.filename)
        return ConfigError(f"{missing} does not exist (needed by stage training on {user_data})",
                           "check the paths in the config and the dataset")
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return DataError(f"no space left on the device writing {cfg.project}: {foreign_message(exc)}",
                         "free disk space or pass project= on a larger disk")
    if generated_yaml is not None and (str(generated_yaml) in str(exc) or
                                       any(w in text.lower() for w in _DATASET_WORDS)):
        return DataError(f"dataset {user_data}: {foreign_message(RuntimeError(text))}",
                         f"run `edgekit data check {user_data}` and fix what it reports")
    if raised_inside(exc):  # any other Ultralytics/torch/timm error: one line naming what was trained
        return EdgekitError(f"training {cfg.student} on {user_data} failed inside {type(exc).__module__.split('.')[0]}"
                            f": {foreign_message(RuntimeError(text))}",
                            "check the config (--print-config); EDGEKIT_TRACEBACK=1 shows the full traceback")
    return None


__all__ = ["preflight", "check_student", "held_ultralytics_log", "check_device", "check_ultralytics_keys", "translate_stage_error"]
