"""tegrastats: parse its lines (JetPack 4 and 5), integrate power into energy, sample it on the device.

Line formats (facts in docs/jetson.md):

* JetPack 4: ``RAM 1728/7763MB (lfb 1117x4MB) ... CPU [5%@1190,off,...] EMC_FREQ 0% GR3D_FREQ 0%
  AO@35.5C ... VDD_IN 3757/3757 VDD_CPU_GPU_CV 197/197 VDD_SOC 1066/1066`` (rails in mW, no unit);
* JetPack 5: a ``MM-DD-YYYY HH:MM:SS`` prefix, ``mW`` units, ``GR3D_FREQ 0%@[114]``;
* newer releases print three values per rail (``current/average/max``): the third is ignored.

Rails are ``current/average`` in mW. A rail tegrastats does not print (it needs root on some
releases) is *unavailable*: never reported as 0 W.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from edgekit.core.errors import DeviceError

# Module input power rail, by board: Xavier NX / Orin NX+Nano, Nano, AGX Orin.
INPUT_RAILS = ("VDD_IN", "POM_5V_IN", "VIN_SYS_5V0")

_STAMP = re.compile(r"^(\d\d-\d\d-\d{4} \d\d:\d\d:\d\d)\s+")
_RAM = re.compile(r"\bRAM (\d+)/(\d+)MB")
_CPU = re.compile(r"\bCPU \[([^\]]*)\]")
_GR3D = re.compile(r"\bGR3D_FREQ (\d+)%(?:@\[?([\d,]+)\]?)?")
_EMC = re.compile(r"\bEMC_FREQ (\d+)%(?:@(\d+))?")
_TEMP = re.compile(r"\b([A-Za-z][\w]*)@(-?\d+(?:\.\d+)?)C\b")
_RAIL = re.compile(r"\b([A-Z][A-Z0-9_]*) (\d+)(?:mW)?/(\d+)(?:mW)?(?:/(\d+)(?:mW)?)?(?=\s|$)")


@dataclass
class Sample:
    """One tegrastats line. ``t`` (device epoch seconds) is assigned by :func:`parse_log`."""

    t: Optional[float] = None
    stamp: Optional[str] = None  # JetPack 5's own 1-second timestamp, as printed
    ram_used_mb: Optional[int] = None
    ram_total_mb: Optional[int] = None
    cpu_load_pct: List[Optional[int]] = field(default_factory=list)  # None: core off
    cpu_freq_mhz: List[Optional[int]] = field(default_factory=list)
    gr3d_pct: Optional[int] = None
    gr3d_mhz: Optional[int] = None
    emc_pct: Optional[int] = None
    temps_c: Dict[str, float] = field(default_factory=dict)
    rails: Dict[str, Tuple[int, int]] = field(default_factory=dict)  # name -> (current mW, average mW)

    def power_mw(self, rail: str) -> Optional[int]:
        """Instantaneous power of ``rail`` in mW, None when this line does not have it."""
        value = self.rails.get(rail)
        return None if value is None else value[0]


def parse_line(line: str) -> Optional[Sample]:
    """Parse one line; None for a line that is not tegrastats output (blank, banner)."""
    line = line.strip()
    s = Sample()
    m = _STAMP.match(line)
    if m:
        s.stamp = m.group(1)
        line = line[m.end():]
    m = _RAM.search(line)
    if not m:
        return None
    s.ram_used_mb, s.ram_total_mb = int(m.group(1)), int(m.group(2))
    m = _CPU.search(line)
    if m:
        for core in m.group(1).split(","):
            load, _, freq = core.strip().partition("%@")
            on = load.isdigit()
            s.cpu_load_pct.append(int(load) if on else None)
            s.cpu_freq_mhz.append(int(freq) if on and freq.isdigit() else None)
    m = _GR3D.search(line)
    if m:
        s.gr3d_pct = int(m.group(1))
        s.gr3d_mhz = int(m.group(2).split(",")[0]) if m.group(2) else None
    m = _EMC.search(line)
    if m:
        s.emc_pct = int(m.group(1))
    s.temps_c = {name: float(v) for name, v in _TEMP.findall(line)}
    for name, cur, avg, _peak in _RAIL.findall(line):
        if name not in ("RAM", "SWAP", "IRAM"):
            s.rails[name] = (int(cur), int(avg))
    return s


def parse_log(text: str, start: Optional[float] = None, stop: Optional[float] = None,
              interval_s: Optional[float] = None) -> List[Sample]:
    """Parse a tegrastats log; assign device times when the sampler's start (and stop) are known.

    tegrastats prints no sub-second time (JetPack 4 none at all), so line ``i`` is placed at
    ``start + i * period``: the period is ``(stop - start) / n`` when the stop time is known (it
    absorbs tegrastats' drift), else the requested interval.
    """
    samples = [s for s in (parse_line(ln) for ln in text.splitlines()) if s is not None]
    if start is not None and samples:
        if stop is not None and stop > start:
            period = (stop - start) / len(samples)
        elif interval_s:
            period = interval_s
        else:
            return samples
        for i, s in enumerate(samples):
            s.t = start + i * period
    return samples


def input_rail(samples: Sequence[Sample]) -> Optional[str]:
    """The module-input rail these samples carry (VDD_IN on Xavier NX), None when none does."""
    for rail in INPUT_RAILS:
        if any(rail in s.rails for s in samples):
            return rail
    return None


def _power_points(samples: Sequence[Sample], rail: str) -> List[Tuple[float, float]]:
    pts = [(s.t, float(s.rails[rail][0])) for s in samples if s.t is not None and rail in s.rails]
    return sorted(pts)


def _interp(pts: List[Tuple[float, float]], t: float) -> float:
    if t <= pts[0][0]:
        return pts[0][1]
    if t >= pts[-1][0]:
        return pts[-1][1]
    for (t0, p0), (t1, p1) in zip(pts, pts[1:]):
        if t0 <= t <= t1:
            return p0 if t1 == t0 else p0 + (p1 - p0) * (t - t0) / (t1 - t0)
    return pts[-1][1]  # pragma: no cover


def window_energy_mj(samples: Sequence[Sample], start: float, end: float, rail: str = "VDD_IN") -> Optional[float]:
    """Energy in mJ of ``rail`` over ``[start, end]`` (trapezoid over mW x s); None if unavailable.

    Unavailable: the rail is missing, or no sample lies within one sample period of the window.
    """
    pts = _power_points(samples, rail)
    if not pts or end <= start:
        return None
    period = (pts[-1][0] - pts[0][0]) / (len(pts) - 1) if len(pts) > 1 else 0.0
    if pts[-1][0] < start - period or pts[0][0] > end + period:
        return None
    inner = [(t, p) for t, p in pts if start < t < end]
    curve = [(start, _interp(pts, start)), *inner, (end, _interp(pts, end))]
    return sum((t1 - t0) * (p0 + p1) / 2.0 for (t0, p0), (t1, p1) in zip(curve, curve[1:]))


def energy_per_frame_mj(samples: Sequence[Sample], window_start: float, window_end: float, frames: int,
                        rail: Optional[str] = None) -> Optional[float]:
    """Input-rail energy per frame (mJ) over the bench's timed window; None when unavailable."""
    rail = rail or input_rail(samples)
    if rail is None or frames <= 0:
        return None
    energy = window_energy_mj(samples, window_start, window_end, rail)
    return None if energy is None else energy / frames


def power_summary(samples: Sequence[Sample], window_start: float, window_end: float, frames: int) -> Dict[str, Any]:
    """The report's ``power`` section: energy per frame, mean/peak per rail, temperatures, GPU load."""
    rail = input_rail(samples)
    in_window = [s for s in samples if s.t is not None and window_start <= s.t <= window_end]
    inside = in_window or list(samples)  # a window shorter than one period: describe the whole run
    rails: Dict[str, Any] = {}
    for name in sorted({r for s in inside for r in s.rails}):
        values = [s.rails[name][0] for s in inside if name in s.rails]
        rails[name] = {"mean_mw": sum(values) / len(values), "peak_mw": max(values), "n": len(values)}
    out: Dict[str, Any] = {
        "available": False, "rail": rail, "window_s": window_end - window_start, "frames": frames,
        "n_samples_in_window": len(in_window), "rails": rails,
        "gr3d_mean_pct": _mean([s.gr3d_pct for s in inside]),
        "temps_max_c": _max_temps(inside),
    }
    if not samples:
        out["reason"] = "tegrastats printed nothing (is it installed? it ships with L4T on every Jetson)"
        return out
    if rail is None:
        out["reason"] = (f"tegrastats printed no input power rail ({'/'.join(INPUT_RAILS)}); "
                         "on some releases rails need root: run tegrastats via sudo")
        return out
    energy = window_energy_mj(samples, window_start, window_end, rail)
    if energy is None or frames <= 0:
        out["reason"] = f"no {rail} sample covers the timed window"
        return out
    out.update(available=True, energy_mj=energy, energy_per_frame_mj=energy / frames,
               mean_power_mw=energy / (window_end - window_start))
    return out


def _mean(values: Sequence[Optional[int]]) -> Optional[float]:
    v = [x for x in values if x is not None]
    return sum(v) / len(v) if v else None


def _max_temps(samples: Sequence[Sample]) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for s in samples:
        for k, v in s.temps_c.items():
            out[k] = max(v, out.get(k, v))
    return out


# ---- sampling on the device ----------------------------------------------------------------------
def start_script() -> str:
    """sh script (``$1`` log file, ``$2`` interval ms): record the start time, run tegrastats in the
    background detached from the ssh session, remember its pid."""
    return ('set -e; rm -f "$1"; date +%s.%N > "$1.start"; '
            'nohup tegrastats --interval "$2" --logfile "$1" </dev/null >"$1.out" 2>&1 & '
            'echo $! > "$1.pid"')


def stop_script() -> str:
    """sh script (``$1`` log file): record the stop time, stop our tegrastats (kill its pid; if it
    survives a second, ``tegrastats --stop``), print the times and the log.

    A killed child may stay a zombie when nothing reaps orphans, so "alive" reads /proc's state.
    """
    return ('alive() { s=$(sed "s/.*) //" "/proc/$1/stat" 2>/dev/null | cut -c1); [ -n "$s" ] && [ "$s" != Z ]; }; '
            'date +%s.%N > "$1.stop"; pid=$(cat "$1.pid" 2>/dev/null || true); '
            'if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; '
            'for i in 1 2 3 4 5 6 7 8 9 10; do alive "$pid" || break; sleep 0.1; done; '
            'if alive "$pid"; then tegrastats --stop >/dev/null 2>&1 || kill -9 "$pid" 2>/dev/null || true; fi; fi; '
            'echo "@@start"; cat "$1.start" 2>/dev/null; echo "@@stop"; cat "$1.stop"; '
            'echo "@@log"; cat "$1" 2>/dev/null || true')


def parse_stop_output(text: str) -> List[Sample]:
    """The output of :func:`stop_script`: the log with device times assigned."""
    sections: Dict[str, List[str]] = {}
    current = None
    for line in text.splitlines():
        if line.startswith("@@"):
            current = line[2:].strip()
            sections[current] = []
        elif current is not None:
            sections[current].append(line)
    start = _float("".join(sections.get("start", [])))
    stop = _float("".join(sections.get("stop", [])))
    return parse_log("\n".join(sections.get("log", [])), start, stop)


ScriptRunner = Callable[[str, Sequence[str]], str]


def local_script_runner(script: str, args: Sequence[str]) -> str:
    """Run a sampler script on this machine (edgekit running on the Jetson itself)."""
    p = subprocess.run(["sh", "-c", script, "edgekit", *args], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True)
    if p.returncode != 0:
        raise DeviceError(f"tegrastats sampler failed: {p.stderr.strip() or p.returncode}",
                          "check tegrastats runs on this device (it ships with L4T)")
    return p.stdout


class TegrastatsSampler:
    """Runs ``tegrastats --interval MS --logfile F`` on the device for the duration of a ``with``.

    ``run_script(script, args)`` runs an sh script there (over ssh, or locally on the Jetson) and
    returns its stdout. After the block, :attr:`samples` holds the parsed lines with device times.
    """

    def __init__(self, logfile: str, interval_ms: int = 100, run_script: ScriptRunner = local_script_runner) -> None:
        self.logfile = logfile
        self.interval_ms = int(interval_ms)
        self._run = run_script
        self.samples: List[Sample] = []
        self._started = False

    def start(self) -> None:
        self._run(start_script(), [self.logfile, str(self.interval_ms)])
        self._started = True

    def stop(self) -> List[Sample]:
        if self._started:
            self._started = False
            self.samples = parse_stop_output(self._run(stop_script(), [self.logfile]))
        return self.samples

    def __enter__(self) -> TegrastatsSampler:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def _float(text: str) -> Optional[float]:
    try:
        return float(text.strip())
    except ValueError:
        return None


__all__ = [
    "INPUT_RAILS", "Sample", "parse_line", "parse_log", "input_rail", "window_energy_mj", "energy_per_frame_mj",
    "power_summary", "start_script", "stop_script", "parse_stop_output", "TegrastatsSampler",
    "local_script_runner",
]
