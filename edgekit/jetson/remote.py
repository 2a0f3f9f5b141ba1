"""Driving a Jetson from the host: push a bundle, build its engine, bench it while sampling power.

Layout on the device (``--remote-dir``, default ``~/edgekit``): ``bundles/<name>/`` (pushed
bundles; engines built there stay in ``bundles/<name>/engines``) and ``runs/<id>/`` (one bench:
its results, the tegrastats log, the stored clocks). A push is staged in
``bundles/.edgekit-push-<hex>`` and renamed into place, so an interrupted push leaves no half
bundle; an existing ``bundles/<name>`` is replaced only when it is an edgekit bundle.
"""

from __future__ import annotations

import json
import os
import secrets
import shlex
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Dict, List, Optional, Sequence, Tuple, Union

from edgekit import __version__
from edgekit.core.atomic import write_json_atomic
from edgekit.core.errors import ConfigError, DataError, DeviceError
from edgekit.core.outdir import prepare_output, staged_output

from .device import DeviceInfo, check_edgekit, check_target, parse_probe, probe_script
from .power import PowerSession
from .ssh import (
    Completed,
    SshConfig,
    SshSession,
    remote_command,
    rsync_argv,
    run_argv,
    scp_argv,
    scp_pull_argv,
    script_command,
)
from .tegrastats import TegrastatsSampler, power_summary

PathLike = Union[str, "os.PathLike[str]"]
REMOTE_DIR_ENV = "EDGEKIT_JETSON_DIR"
REMOTE_EDGEKIT_ENV = "EDGEKIT_REMOTE_EDGEKIT"
DEFAULT_REMOTE_DIR = "~/edgekit"
STAGING_PREFIX = ".edgekit-push-"

# $1 remote dir (may start with ~): create it, print its absolute path and whether rsync exists.
_RESOLVE = ('d=$1; case $d in "~") d=$HOME;; "~/"*) d=$HOME/${d#"~/"};; esac; '
            'mkdir -p -- "$d/bundles" "$d/runs" && cd -- "$d" && pwd -P && (command -v rsync >/dev/null && echo rsync || echo no-rsync)')
# $1 bundles dir, $2 staging name, $3 bundle name: rename the staged copy into place.
_FINALIZE = '''set -e
cd -- "$1"
if [ -e "$3" ] || [ -L "$3" ]; then
  if [ ! -f "$3/manifest.json" ] || [ -L "$3" ]; then
    echo "edgekit-refuse: $1/$3 exists and is not an edgekit bundle" >&2; exit 3
  fi
  mv -- "$3" "$2.old"
  mv -- "$2" "$3"
  if [ -d "$2.old/engines" ] && [ ! -e "$3/engines" ]; then mv -- "$2.old/engines" "$3/engines"; fi
  rm -rf -- "$2.old"
else
  mv -- "$2" "$3"
fi'''


# $1 pid file, then the command: record the pid so an interrupted run can be stopped (ssh without a
# tty does not forward Ctrl-C; the remote process would only die at its next write).
_RUN_WITH_PID = 'echo $$ > "$1"; shift; exec "$@"'
_KILL_PID = 'pid=$(cat "$1" 2>/dev/null) && kill "$pid" 2>/dev/null; exit 0'


@dataclass(frozen=True)
class RemoteOptions:
    """Where edgekit lives on the device and how to run it."""

    remote_dir: str = DEFAULT_REMOTE_DIR
    edgekit_cmd: Tuple[str, ...] = ("edgekit",)
    use_rsync: bool = True  # rsync when both ends have it, else scp

    @classmethod
    def build(cls, remote_dir: Optional[str] = None, remote_edgekit: Optional[str] = None,
              use_rsync: bool = True, environ: Optional[Dict[str, str]] = None) -> RemoteOptions:
        env = os.environ if environ is None else environ
        cmd = remote_edgekit or env.get(REMOTE_EDGEKIT_ENV) or "edgekit"
        words = tuple(shlex.split(cmd))
        if not words:
            raise ConfigError("--remote-edgekit is empty", "pass the edgekit command on the device, e.g. edgekit-venv/bin/edgekit")
        return cls(remote_dir=remote_dir or env.get(REMOTE_DIR_ENV) or DEFAULT_REMOTE_DIR, edgekit_cmd=words,
                   use_rsync=use_rsync)


def bundle_name(path: Path) -> str:
    name = path.name
    if name in ("", ".", "..") or "/" in name or name.startswith(STAGING_PREFIX):
        raise ConfigError(f"cannot name a remote bundle after {str(path)!r}", "pass the bundle directory itself")
    return name


class Device:
    """One Jetson reached over ssh; every step raises a one-line :class:`EdgekitError`."""

    def __init__(self, ssh: SshConfig, opts: Optional[RemoteOptions] = None, runner: Any = run_argv,
                 log: Optional[IO[str]] = None) -> None:
        self.session = SshSession(ssh, runner)
        self.opts = opts or RemoteOptions()
        self._runner = runner
        self._log = log if log is not None else sys.stderr
        self._info: Optional[DeviceInfo] = None
        self._dir: Optional[Tuple[str, bool]] = None

    @property
    def where(self) -> str:
        return str(self.session.cfg.target)

    def say(self, msg: str) -> None:
        print(msg, file=self._log, flush=True)

    # ---- facts --------------------------------------------------------------------------------
    def info(self) -> DeviceInfo:
        if self._info is None:
            p = self.session.run(script_command(probe_script(self.opts.edgekit_cmd)))
            self._info = parse_probe(p.stdout)
        return self._info

    def check(self, target: Optional[str], backend: str) -> DeviceInfo:
        info = self.info()
        check_edgekit(info, self.where)
        check_target(info, target, backend, self.where)
        return info

    def remote_dir(self) -> Tuple[str, bool]:
        """(absolute remote dir, rsync available there); created on first use."""
        if self._dir is None:
            out = self.session.run(script_command(_RESOLVE, [self.opts.remote_dir])).stdout.split("\n")
            lines = [ln.strip() for ln in out if ln.strip()]
            if len(lines) < 2:
                raise DeviceError(f"cannot create {self.opts.remote_dir} on {self.where}", "check the remote user's home")
            self._dir = (lines[0], lines[1] == "rsync")
        return self._dir

    def rsync(self) -> bool:
        return self.opts.use_rsync and self.remote_dir()[1] and shutil.which("rsync") is not None

    # ---- push -----------------------------------------------------------------------------------
    def push(self, bundle: PathLike, verify: bool = True) -> str:
        """Copy a bundle to ``<remote_dir>/bundles/<name>``; returns its remote path."""
        local = Path(bundle).expanduser().absolute()
        if verify:
            from edgekit.deploy.bundle import Bundle

            local = Bundle.open(local).root
        name = bundle_name(local)
        base = self.remote_dir()[0] + "/bundles"
        staging = STAGING_PREFIX + secrets.token_hex(6)
        how = "rsync" if self.rsync() else "scp"
        self.say(f"pushing {local} to {self.where}:{base}/{name} ({how})")
        done = False
        try:
            cfg = self.session.resolve()
            argv = rsync_argv(cfg, str(local), f"{base}/{staging}") if how == "rsync" \
                else scp_argv(cfg, str(local), f"{base}/{staging}")
            self.session.transfer(argv, f"pushing {name}")
            p = self.session.run(script_command(_FINALIZE, [base, staging, name]), check=False)
            if p.returncode == 3:
                raise DeviceError(f"{base}/{name} on {self.where} exists and is not an edgekit bundle",
                                  "move it away or push under another name (rename the local bundle directory)")
            if p.returncode != 0:
                raise DeviceError(f"could not move the pushed bundle into place on {self.where}: {p.stderr.strip()}",
                                  "check permissions of the remote directory")
            done = True
        finally:
            if not done:
                self._cleanup(base, staging)
        return f"{base}/{name}"

    def _cleanup(self, base: str, staging: str) -> None:
        try:
            self.session.run(remote_command(["rm", "-rf", "--", f"{base}/{staging}", f"{base}/{staging}.old"]),
                             check=False, timeout=30)
        except Exception as e:  # noqa: BLE001 - the original error matters more
            self.say(f"warning: could not remove the partial push {base}/{staging} on {self.where}: {e}")

    # ---- commands -----------------------------------------------------------------------------
    def build(self, bundle: PathLike, args: Sequence[str] = (), push: bool = True) -> Completed:
        """``edgekit engine build BUNDLE ARGS`` on the device, its progress streamed here."""
        target = _manifest_target(bundle)
        self.check(target, "tensorrt")
        remote_bundle = self.push(bundle) if push else f"{self.remote_dir()[0]}/bundles/{bundle_name(Path(bundle))}"
        argv = build_argv(self.opts.edgekit_cmd, remote_bundle, args)
        p = self.session.run(remote_command(argv), stream=True, check=False)
        if p.returncode != 0:
            raise DeviceError(f"engine build on {self.where} failed (exit {p.returncode}): {_tail(p)}",
                              "see the device's output above")
        return p

    def execute(self, argv: List[str]) -> Tuple[int, str, str]:
        """Run one command on the device: (rc, stdout, stderr); ssh failures raise."""
        p = self.session.run(remote_command(argv), check=False)
        return p.returncode, p.stdout, p.stderr

    def run_script(self, script: str, args: Sequence[str]) -> str:
        return self.session.run(script_command(script, args)).stdout


def build_argv(edgekit_cmd: Sequence[str], remote_bundle: str, args: Sequence[str] = ()) -> List[str]:
    return [*edgekit_cmd, "engine", "build", remote_bundle, *args]


def bench_argv(edgekit_cmd: Sequence[str], remote_bundle: str, remote_out: str, settings: Dict[str, Any],
               progress: bool = True) -> List[str]:
    """``edgekit bench`` on the device, from the host's bench settings (a dict of BenchSettings)."""
    backend = settings.get("backend", "onnxruntime")
    argv = [*edgekit_cmd, "bench", remote_bundle, "--backend", backend,
            "--device", "cuda" if backend == "tensorrt" else "cpu",
            "--precision", settings.get("precision", "fp32"), "--out", remote_out]
    for key, flag in (("warmup", "--warmup"), ("warmup_s", "--warmup-s"), ("iterations", "--iterations"),
                      ("duration_s", "--duration"), ("batch", "--batch")):
        if settings.get(key) is not None:
            argv += [flag, str(settings[key])]
    for key in ("video", "images", "data"):  # paths on the device (run_bench pushes the local ones)
        if settings.get(key):
            argv += [f"--{key}", str(settings[key])]
    if settings.get("parity") is False:
        argv.append("--no-parity")
    if not progress:
        argv.append("--no-progress")
    return argv


def _manifest_target(bundle: PathLike) -> Optional[str]:
    from edgekit.core.manifest import load_manifest

    return load_manifest(Path(bundle).expanduser()).target


def _tail(p: Completed) -> str:
    for text in (p.stderr, p.stdout):
        lines = [ln.strip() for ln in text.replace("\r", "\n").splitlines() if ln.strip()]
        if lines:
            return lines[-1]
    return "no output"


def _settings_dict(settings: Any) -> Dict[str, Any]:
    if settings is None:
        return {}
    if hasattr(settings, "model_dump"):
        return settings.model_dump()
    return dict(settings)


# The results directory follows edgekit's output policy as `edgekit bench`'s own (same writer name, so
# a local and a remote run may replace each other's results, and nothing else).
OUT_WRITER = "bench"


def _check_local_out(out: Path, bundle: PathLike, settings: Dict[str, Any]) -> Path:
    sources = [bundle, *(settings.get(k) for k in ("video", "images", "data"))]
    return prepare_output(out, OUT_WRITER, "--out", sources=sources)


def _phase_windows(report: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    """The timed windows bench.json records: ``throughput.{sequential,pipelined}`` (frames, start/end_unix)."""
    tp = report.get("throughput") or {}
    return {k: v for k, v in tp.items() if isinstance(v, dict) and {"frames", "start_unix", "end_unix"} <= set(v)}


def add_power(report: Dict[str, Any], samples: Sequence[Any]) -> Dict[str, Any]:
    """The ``power`` section: per timed phase, and headline energy per frame of the pipelined phase."""
    phases = {name: power_summary(samples, w["start_unix"], w["end_unix"], int(w["frames"]))
              for name, w in _phase_windows(report).items()}
    head = phases.get("pipelined") or next(iter(phases.values()), None)
    power: Dict[str, Any] = {"phases": phases, "n_samples": len(samples)}
    if head is None:
        power.update(available=False, reason="bench.json records no timed window")
    else:
        power.update({k: head.get(k) for k in ("available", "rail", "energy_per_frame_mj", "mean_power_mw", "reason")
                      if k in head})
    report["power"] = power
    return power


def power_markdown(power: Dict[str, Any]) -> str:
    lines = ["", "## Power (tegrastats on the device)", ""]
    if not power.get("available"):
        return "\n".join(lines + [f"energy per frame: unavailable ({power.get('reason')})", ""])
    lines += ["| phase | rail | mean power (mW) | energy per frame (mJ) |", "| --- | --- | --- | --- |"]
    for name, ph in power["phases"].items():
        if ph.get("available"):
            lines.append(f"| {name} | {ph['rail']} | {ph['mean_power_mw']:.0f} | {ph['energy_per_frame_mj']:.2f} |")
        else:
            lines.append(f"| {name} | {ph.get('rail')} | unavailable | unavailable |")
    return "\n".join(lines + [""])


def _pull(dev: Device, remote: str, local: Path) -> None:
    """Copy the remote directory's contents into the (existing, empty) local directory."""
    cfg = dev.session.resolve()
    if dev.rsync():
        dev.session.transfer(rsync_argv(cfg, str(local), remote, pull=True), "pulling results")
        return
    dev.session.transfer(scp_pull_argv(cfg, remote, str(local / "pulled")), "pulling results")
    for child in (local / "pulled").iterdir():
        os.replace(str(child), str(local / child.name))
    (local / "pulled").rmdir()


def push_inputs(dev: Device, settings: Dict[str, Any], remote_dir: str) -> Dict[str, Any]:
    """Copy ``video``/``images``/``data`` to the run's ``inputs/`` on the device; returns the settings
    with those paths replaced by the remote ones (a data.yaml's folder goes whole: its paths are relative)."""
    s = dict(settings)
    for key in ("video", "images", "data"):
        if not s.get(key):
            continue
        local = Path(str(s[key])).expanduser().absolute()
        if not local.exists():
            raise DataError(f"--{key} {local} does not exist", f"pass an existing --{key}")
        source, tail = (local.parent, local.name) if key == "data" and local.is_file() else (local, "")
        suffix = "".join(c for c in source.suffix if c.isalnum() or c == ".") if source.is_file() else ""
        remote = f"{remote_dir}/{key}{suffix}"
        dev.say(f"copying --{key} {local} to {dev.where}")
        cfg = dev.session.resolve()
        if source.is_dir() and dev.rsync():
            argv = rsync_argv(cfg, str(source), remote)
        else:
            argv = scp_argv(cfg, str(source), remote)
        dev.session.transfer(argv, f"copying --{key}")
        s[key] = f"{remote}/{tail}" if tail else remote
    return s


def run_bench(dev: Device, bundle: PathLike, out: PathLike, settings: Any = None, power_mode: Optional[int] = None,
              jetson_clocks: bool = False, interval_ms: int = 100, progress: bool = True) -> Dict[str, Any]:
    """Push, bench on the device while sampling tegrastats, pull the results into ``out``, add power."""
    s = _settings_dict(settings)
    out_dir = _check_local_out(Path(out), bundle, s)
    target = _manifest_target(bundle)
    dev.check(target, s.get("backend", "onnxruntime"))
    remote_bundle = dev.push(bundle)
    run_dir = f"{dev.remote_dir()[0]}/runs/{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
    dev.session.run(remote_command(["mkdir", "-p", "--", f"{run_dir}/inputs"]))
    s = push_inputs(dev, s, f"{run_dir}/inputs")
    argv = bench_argv(dev.opts.edgekit_cmd, remote_bundle, f"{run_dir}/bench", s, progress)
    power = PowerSession(dev.execute, mode=power_mode, clocks=jetson_clocks,
                         store_file=f"{run_dir}/clocks.conf", where=dev.where)
    sampler = TegrastatsSampler(f"{run_dir}/tegrastats.log", interval_ms, dev.run_script)
    with power.session(), sampler:
        dev.say(f"benchmarking on {dev.where}: {remote_command(argv)}")
        try:
            with open(os.devnull, "w") as quiet:  # the device's table is replaced by the pulled report
                p = dev.session.run(script_command(_RUN_WITH_PID, [f"{run_dir}/bench.pid", *argv]), stream=True,
                                    check=False, out=quiet)
        except BaseException:  # Ctrl-C, SIGTERM, timeout: stop the bench on the device too
            dev.session.run(script_command(_KILL_PID, [f"{run_dir}/bench.pid"]), check=False, timeout=30)
            raise
    if p.returncode != 0:
        raise DeviceError(f"edgekit bench on {dev.where} failed (exit {p.returncode}): {_tail(p)}",
                          "see the device's output above")
    with staged_output(out_dir, OUT_WRITER) as stage:
        _pull(dev, f"{run_dir}/bench", stage)
        report = _add_results(dev, stage, sampler.samples, power)
    return report


def _add_results(dev: Device, stage: Path, samples: List[Any], power: PowerSession) -> Dict[str, Any]:
    """Add the power section (and the device) to the pulled bench.json/bench.md; write power.json."""
    report_path = stage / "bench.json"
    if not report_path.is_file():
        raise DeviceError(f"edgekit bench on {dev.where} wrote no bench.json", "check the device's edgekit version")
    report = json.loads(report_path.read_text(encoding="utf-8"))
    summary = add_power(report, samples)
    if power.previous is not None:
        summary["power_mode"] = {"previous": vars(power.previous), "benched": vars(power.applied) if power.applied else None}
    report.setdefault("environment", {})["device"] = dev.info().as_dict()
    write_json_atomic(report_path, report)
    write_json_atomic(stage / "power.json", {"samples": [vars(x) for x in samples], "summary": summary})
    md = stage / "bench.md"
    if md.is_file():
        md.write_text(md.read_text(encoding="utf-8") + power_markdown(summary), encoding="utf-8")
    return report


def remote_bench(host: str, bundle: PathLike, settings: Any = None, out: Optional[PathLike] = None,
                 power_mode: Optional[Union[int, str]] = None, json_output: bool = False, progress: bool = True,
                 jetson_clocks: bool = False, ssh: Optional[SshConfig] = None, remote: Optional[RemoteOptions] = None,
                 interval_ms: int = 100) -> Dict[str, Any]:
    """``edgekit bench --device jetson --host H``: the whole remote bench; prints the report, returns it.

    ssh settings come from ``ssh`` or ``$EDGEKIT_SSH_OPTS``/``$EDGEKIT_SSH_CONFIG`` and ~/.ssh/config;
    the remote layout from ``remote`` or ``$EDGEKIT_JETSON_DIR``/``$EDGEKIT_REMOTE_EDGEKIT``.
    """
    s = _settings_dict(settings)
    if out is None:
        out = Path("bench_results") / f"{Path(bundle).name}_{s.get('backend', 'onnxruntime')}_{s.get('precision', 'fp32')}"
    mode = None
    if power_mode is not None and str(power_mode) != "":
        if not str(power_mode).isdigit():
            raise ConfigError(f"--power-mode {power_mode!r} is not an nvpmodel mode id", "e.g. --power-mode 8 (20W_6CORE)")
        mode = int(power_mode)
    dev = Device(ssh or SshConfig.build(host), remote or RemoteOptions.build())
    report = run_bench(dev, bundle, out, s, mode, jetson_clocks, interval_ms, progress)
    if json_output:
        print(json.dumps(report, indent=2))
    else:
        md = Path(out) / "bench.md"
        print(md.read_text(encoding="utf-8") if md.is_file() else json.dumps(report.get("power"), indent=2))
    print(f"wrote {Path(out)}/bench.json, bench.md, power.json", file=sys.stderr)
    return report


def setup_commands(venv: str = "~/edgekit-venv", source: Optional[str] = None) -> List[str]:
    """What the device needs: a venv over the system TensorRT, the deploy subset of edgekit, numpy<1.24."""
    spec = source or f"edgekit[trt]=={__version__}"
    py = f"{venv}/bin/python"
    return [
        f"python3 -m venv --system-site-packages {venv}",
        f"{py} -m pip install 'numpy<1.24' 'onnxruntime<1.20' {shlex.quote(spec)}",
        f"{py} -c 'import tensorrt, numpy; print(\"tensorrt\", tensorrt.__version__, \"numpy\", numpy.__version__)'",
        f"{venv}/bin/edgekit --version",
    ]


__all__ = [
    "REMOTE_DIR_ENV", "REMOTE_EDGEKIT_ENV", "RemoteOptions", "Device", "bundle_name", "build_argv", "bench_argv",
    "add_power", "power_markdown", "run_bench", "remote_bench", "setup_commands",
]
