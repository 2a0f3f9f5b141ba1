"""The one exception family for user errors.

An :class:`EdgekitError` is caught once, at the CLI, and printed as a single line that names the
file or key at fault and the fix; the process exits 1. Bugs are not EdgekitErrors and keep their
tracebacks.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Optional, Tuple, Type, Union

# One line on the terminal: a message longer than this is shortened at a word boundary.
MAX_FOREIGN_CHARS = 200
# "path:3: error: msg" or "error: msg" inside a message would print as "error: ...: error: ...".
_NESTED_ERROR = re.compile(r"(^|:\s)(?:error|ERROR)(?:\s*\u274c\ufe0f?)?\s*:\s*")
# Sentences of third-party advice that does not apply to an edgekit user (or is unsafe): torch's
# "re-run with weights_only=False", Ultralytics' "use yolo26n.pt", "pip install ...", "file an issue".
_ADVICE = re.compile(r"weights_only|yolo\w*\.pt\b|\brecommend|pip install|file an issue|re-?run|retry|"
                     r"trusted source|can still be loaded|alternatively|official ultralytics|see https?://|please", re.IGNORECASE)


class EdgekitError(Exception):
    """A user-facing error: what is wrong (naming the file or key) and how to fix it."""

    def __init__(self, message: str, fix: Optional[str] = None) -> None:
        self.message = _NESTED_ERROR.sub(r"\1", str(message)).strip()
        self.fix = fix
        super().__init__(self.format())

    def format(self) -> str:
        return f"{self.message}; {self.fix}" if self.fix else self.message


class ConfigError(EdgekitError):
    """A configuration file or override is invalid (unknown key, bad value, unreadable file)."""


class DataError(EdgekitError):
    """A dataset, label, image or video is missing, malformed or inconsistent."""


class ModelError(EdgekitError):
    """A checkpoint, ONNX model, engine or weights file is missing, corrupt or mismatched."""


class CalibrationError(EdgekitError):
    """Calibration data or a calibration cache is missing, too small or does not match."""


class DeviceError(EdgekitError):
    """A remote device, runtime backend or accelerator is unavailable or misbehaves."""


def shorten(text: str, limit: int = MAX_FOREIGN_CHARS) -> str:
    """``text`` on one line, cut at a word boundary (never mid-word) with an ellipsis when longer than ``limit``."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    cut = text[:limit + 1].rsplit(" ", 1)[0].rstrip(" ,;:.")
    return (cut if cut else text[:limit]) + "..."


def foreign_message(exc: BaseException, limit: int = MAX_FOREIGN_CHARS) -> str:
    """What a third-party exception (Ultralytics, torch, onnxruntime, ...) says, minus its advice.

    Keeps the first sentences that state the problem, drops those telling the user to do something
    that does not apply to edgekit (or is unsafe, like loading with ``weights_only=False``), strips
    log decorations ("ERROR ❌", emoji) and shortens the rest at a word boundary.
    """
    text = " ".join(str(exc).split())
    if isinstance(exc, KeyError):
        text = f"missing key {text}"
    text = re.sub(r"[\u2600-\u27bf\ufe0f\U0001f300-\U0001faff]", "", text).strip()  # log emoji
    text = re.sub(r"^(?:ERROR|WARNING)\b:?\s*", "", text)  # Ultralytics' log-level prefix
    sentences = re.split(r"(?<=[.!?])\s+|\s+\(\d\)\s+", text)
    kept = [s for s in sentences if s and not _ADVICE.search(s)]
    result = " ".join(kept).strip() or type(exc).__name__
    result = result[:-1] if result.endswith(".") and not result.endswith("...") else result  # "msg.; fix" reads badly
    return shorten(result, limit)


def translate(exc: BaseException, file: Union[str, Path, None], kind: Type[EdgekitError] = EdgekitError,
              fix: Optional[str] = None, what: str = "") -> EdgekitError:
    """A third-party exception raised inside an edgekit stage -> edgekit's one-line error naming ``file``.

    An :class:`EdgekitError` passes through unchanged. Use at a stage boundary::

        except Exception as e:
            raise translate(e, data_yaml, DataError, "run `edgekit data check DIR`") from None
    """
    if isinstance(exc, EdgekitError):
        return exc
    where = f"{what} {file}".strip() if file is not None else what
    message = foreign_message(exc)
    return kind(f"{where}: {message}" if where else message, fix)


# Packages whose exceptions edgekit's stages translate (see raised_inside).
FOREIGN_PACKAGES = ("torch", "torchvision", "ultralytics", "timm", "onnx", "onnxruntime", "onnxslim", "onnxsim",
                    "tensorrt", "polygraphy", "cv2")


def raised_inside(exc: BaseException, packages: Tuple[str, ...] = FOREIGN_PACKAGES) -> bool:
    """True when ``exc`` was raised by code of one of ``packages`` (its type's module, or the innermost frame).

    ``EDGEKIT_TRACEBACK=1`` makes this False, so a developer gets the raw traceback back.
    """
    if os.environ.get("EDGEKIT_TRACEBACK", "") not in ("", "0"):
        return False
    module = type(exc).__module__.split(".")[0]
    if module in packages:
        return True
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return False
    parts = Path(tb.tb_frame.f_code.co_filename).parts
    for i, part in enumerate(parts[:-1]):
        if part in ("site-packages", "dist-packages"):  # .../site-packages/<package>/...
            return parts[i + 1] in packages
    return False
