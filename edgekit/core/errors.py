"""The one exception family for user errors.

An :class:`EdgekitError` is caught once, at the CLI, and printed as a single line that names the
file or key at fault and the fix; the process exits 1. Bugs are not EdgekitErrors and keep their
tracebacks.
"""

from __future__ import annotations

from typing import Optional


class EdgekitError(Exception):
    """A user-facing error: what is wrong (naming the file or key) and how to fix it."""

    def __init__(self, message: str, fix: Optional[str] = None) -> None:
        self.message = message
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
