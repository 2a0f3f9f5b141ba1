"""Core types and contracts with no heavy dependencies (runs on the Jetson, Python 3.8)."""

from .errors import CalibrationError, ConfigError, DataError, DeviceError, EdgekitError, ModelError

__all__ = ["EdgekitError", "ConfigError", "DataError", "ModelError", "CalibrationError", "DeviceError"]
