"""What a device is: L4T, board model, TensorRT, edgekit version, power mode; and whether a bundle fits.

One ssh round trip runs :func:`probe_script` (POSIX sh, written here, no user input in it) and
:func:`parse_probe` turns its sections into a :class:`DeviceInfo`. ``$EDGEKIT_JETSON_ROOT`` moves
``/etc`` and ``/proc`` (tests use a fake device root). Target facts are in docs/jetson.md.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Optional, Sequence

from edgekit import __version__
from edgekit.core.errors import DeviceError

from .power import PowerMode, parse_nvpmodel_query
from .ssh import remote_command

ROOT_ENV = "EDGEKIT_JETSON_ROOT"


@dataclass(frozen=True)
class TargetSpec:
    """What a bundle's ``target`` needs from the device."""

    l4t_major: int
    tensorrt: str  # major.minor
    jetpack: str
    model_hint: str


TARGETS: Dict[str, TargetSpec] = {
    "jetson-xavier-nx": TargetSpec(l4t_major=35, tensorrt="8.5", jetpack="5.1", model_hint="Xavier NX"),
    "jetson-agx-xavier": TargetSpec(l4t_major=35, tensorrt="8.5", jetpack="5.1", model_hint="AGX Xavier"),
}


@dataclass
class DeviceInfo:
    l4t: Optional[str] = None  # "35.4.1"
    model: Optional[str] = None
    tensorrt: Optional[str] = None
    jetpack: Optional[str] = None
    edgekit: Optional[str] = None
    python: Optional[str] = None
    power_mode: Optional[PowerMode] = None
    rsync: bool = False

    @property
    def l4t_major(self) -> Optional[int]:
        return int(self.l4t.split(".")[0]) if self.l4t else None

    def as_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["power_mode"] = asdict(self.power_mode) if self.power_mode else None
        return d


def probe_script(edgekit_cmd: Sequence[str] = ("edgekit",)) -> str:
    """sh script printing ``@@section`` blocks; every probe tolerates a missing tool."""
    ek = remote_command(edgekit_cmd)
    return "\n".join([
        'R="${EDGEKIT_JETSON_ROOT:-}"',
        'echo @@l4t; head -n 1 "$R/etc/nv_tegra_release" 2>/dev/null || true',
        "echo @@model; tr -d '\\000' < \"$R/proc/device-tree/model\" 2>/dev/null || true; echo",
        "echo @@tensorrt; python3 -c 'import tensorrt; print(tensorrt.__version__)' 2>/dev/null"
        " || dpkg-query -W -f='${Version}\\n' tensorrt 2>/dev/null || true",
        "echo @@jetpack; dpkg-query -W -f='${Version}\\n' nvidia-jetpack 2>/dev/null || true",
        f"echo @@edgekit; {ek} --version 2>/dev/null || true",
        "echo @@python; python3 -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])' 2>/dev/null || true",
        "echo @@nvpmodel; nvpmodel -q 2>/dev/null || true",
        "echo @@rsync; command -v rsync || true",
        "echo @@end",
    ])


def _sections(text: str) -> Dict[str, List[str]]:
    out: Dict[str, List[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            out[current] = []
        elif current is not None and line.strip():
            out[current].append(line.strip())
    return out


def parse_l4t(line: str) -> Optional[str]:
    """``# R35 (release), REVISION: 4.1, ...`` -> ``35.4.1``."""
    m = re.search(r"R(\d+)\s*\(release\),\s*REVISION:\s*([\d.]+)", line)
    return f"{m.group(1)}.{m.group(2)}" if m else None


def parse_probe(text: str) -> DeviceInfo:
    s = _sections(text)
    if "end" not in s:
        raise DeviceError("the device probe did not finish", "check the device's shell (sh) works over ssh")
    info = DeviceInfo()
    info.l4t = parse_l4t(s["l4t"][0]) if s.get("l4t") else None
    info.model = s["model"][0] if s.get("model") else None
    info.tensorrt = _version(s.get("tensorrt"))
    info.jetpack = _version(s.get("jetpack"))
    ek = s.get("edgekit")
    info.edgekit = ek[-1].split()[-1] if ek else None  # "edgekit, version 0.1.0"
    info.python = s["python"][0] if s.get("python") else None
    if s.get("nvpmodel"):
        try:
            info.power_mode = parse_nvpmodel_query("\n".join(s["nvpmodel"]))
        except DeviceError:
            info.power_mode = None
    info.rsync = bool(s.get("rsync"))
    return info


def _version(lines: Optional[List[str]]) -> Optional[str]:
    if not lines:
        return None
    m = re.search(r"\d+(?:\.\d+)+", lines[0])
    return m.group(0) if m else None


def _major_minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def check_edgekit(info: DeviceInfo, where: str, local_version: str = __version__) -> None:
    """The device must run the same edgekit as this host (bundle schema, bench JSON, CLI flags)."""
    if info.edgekit is None:
        raise DeviceError(f"edgekit is not installed on {where} (or not on the PATH of a non-interactive ssh)",
                          f"run `edgekit jetson setup {where} --apply`, or pass --remote-edgekit PATH_TO/edgekit")
    if info.edgekit != local_version:
        raise DeviceError(f"{where} runs edgekit {info.edgekit} but this host runs {local_version}",
                          f"install edgekit {local_version} on the device (`edgekit jetson setup {where}` prints how)")


def check_target(info: DeviceInfo, target: Optional[str], backend: str, where: str) -> None:
    """Refuse a device that cannot run the bundle: wrong L4T or TensorRT for its target, or no TensorRT."""
    spec = TARGETS.get(target or "")
    if spec is not None:
        if info.l4t_major is None:
            raise DeviceError(f"{where} is not a Jetson (no /etc/nv_tegra_release) but the bundle targets {target}",
                              f"run it on a {spec.model_hint} with JetPack {spec.jetpack}, or re-export for this device")
        if info.l4t_major != spec.l4t_major:
            raise DeviceError(f"{where} runs L4T R{info.l4t} but the bundle targets {target} "
                              f"(JetPack {spec.jetpack}, L4T R{spec.l4t_major})",
                              f"flash JetPack {spec.jetpack} or re-export the bundle for this device")
        if info.tensorrt and _major_minor(info.tensorrt) != spec.tensorrt:
            raise DeviceError(f"{where} has TensorRT {info.tensorrt} but the bundle targets {target} "
                              f"(TensorRT {spec.tensorrt}.x)",
                              f"use JetPack {spec.jetpack}'s TensorRT {spec.tensorrt} or re-export for TensorRT "
                              f"{_major_minor(info.tensorrt)}")
    if backend == "tensorrt" and not info.tensorrt:
        raise DeviceError(f"{where} has no TensorRT (python3 cannot import tensorrt)",
                          "install JetPack's python3-libnvinfer and create the venv with --system-site-packages, "
                          "or bench with --backend onnxruntime")


__all__ = [
    "ROOT_ENV", "TargetSpec", "TARGETS", "DeviceInfo", "probe_script", "parse_probe", "parse_l4t",
    "check_edgekit", "check_target",
]
