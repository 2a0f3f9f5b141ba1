"""What the numbers were measured on: versions, CPU, GPU, Jetson identity, power mode, clocks, temperatures.

Everything is read best-effort from files and version metadata (no subprocess needs root); what
cannot be read is left out, never guessed. On a Jetson: ``/etc/nv_tegra_release`` (L4T),
``/proc/device-tree/model``, ``nvpmodel -q`` (the power mode), the devfreq/cpufreq clocks and the
thermal zones.
"""

from __future__ import annotations

import contextlib
import glob
import os
import platform
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional

_PACKAGES = ("edgekit", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "opencv-python",
             "opencv-python-headless", "pydantic", "polygraphy", "cuda-python", "pycuda")


def _read(path: str, limit: int = 4096) -> Optional[str]:
    try:
        with open(path, "rb") as f:
            text = f.read(limit).decode("utf-8", "replace")
    except OSError:
        return None
    return text.replace("\x00", "").strip() or None


def package_versions() -> Dict[str, str]:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for dist in _PACKAGES:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "tensorrt" not in out:  # JetPack ships the bindings as a system package without dist metadata
        from edgekit.deploy.tensorrt.device import import_tensorrt, trt_version

        with contextlib.suppress(Exception):  # absent or broken (PyPI's stubs count as absent): not reported
            out["tensorrt"] = trt_version(import_tensorrt())
    return out


def cpu_model() -> Optional[str]:
    text = _read("/proc/cpuinfo", 1 << 16) or ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Hardware", "CPU part") and value.strip():
            return value.strip()
    return platform.processor() or None


def gpu_names() -> Optional[str]:
    """GPU names from nvidia-smi when present (not on Jetson, whose GPU is the SoC's)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip().replace("\n", "; ") or None


def nvpmodel_mode() -> Optional[str]:
    exe = shutil.which("nvpmodel")
    if not exe:
        return None
    try:
        out = subprocess.run([exe, "-q"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [ln.strip() for ln in out.stdout.splitlines() if ln.strip()]
    return " ".join(lines[-2:]) if out.returncode == 0 and lines else None


def clocks() -> Dict[str, int]:
    """Current frequencies in Hz: CPU cores (cpufreq) and devfreq devices (the Jetson GPU, EMC)."""
    out: Dict[str, int] = {}
    for path in sorted(glob.glob("/sys/devices/system/cpu/cpu[0-9]*/cpufreq/scaling_cur_freq")):
        value = _read(path)
        if value and value.isdigit():
            out[Path(path).parent.parent.name] = int(value) * 1000  # kHz
    for path in sorted(glob.glob("/sys/class/devfreq/*/cur_freq")):
        value = _read(path)
        if value and value.isdigit():
            out[Path(path).parent.name] = int(value)
    return out


def temperatures() -> Dict[str, float]:
    """Thermal zones in degrees C, keyed by their type (AO-therm, GPU-therm, ... on a Jetson)."""
    out: Dict[str, float] = {}
    for zone in sorted(glob.glob("/sys/class/thermal/thermal_zone*")):
        kind, temp = _read(os.path.join(zone, "type")), _read(os.path.join(zone, "temp"))
        if kind and temp and temp.lstrip("-").isdigit():
            out[kind] = int(temp) / 1000.0
    return out


def collect_environment(engine_key: Optional[str] = None) -> Dict[str, Any]:
    env: Dict[str, Any] = {
        "versions": package_versions(), "platform": platform.platform(), "machine": platform.machine(),
        "cpu_model": cpu_model(), "cpu_count": os.cpu_count(), "gpu": gpu_names(),
        "l4t": _read("/etc/nv_tegra_release", 1024), "device_model": _read("/proc/device-tree/model"),
        "nvpmodel": nvpmodel_mode(), "clocks_hz": clocks(), "temperatures_c": temperatures(),
    }
    if engine_key:
        env["engine_key"] = engine_key
    return {k: v for k, v in env.items() if v not in (None, {}, "")}


__all__ = ["collect_environment", "package_versions", "cpu_model", "clocks", "temperatures"]
