"""The system OpenSSH client, driven through subprocess with the user's own keys and config.

Why not paramiko/fabric: the user's ``~/.ssh/config`` (ProxyJump, IdentityFile, agents, hardware
keys, known_hosts) only behaves exactly like their terminal when the real ``ssh`` reads it.

Every command line here is built as data by a pure function (``ssh_argv``, ``scp_argv``,
``rsync_argv``) so tests check the quoting and the host-key options without a network. Remote
arguments are always joined with :func:`shlex.quote`: a bundle named ``a b;touch x`` or ``$(id)``
reaches the device as one literal argument. Host-key checking stays on: ``StrictHostKeyChecking``
is ``yes`` unless the user's own config chose ``accept-new``; ``no`` is never used or accepted.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
from dataclasses import dataclass, field, replace
from typing import IO, Callable, Dict, List, Optional, Sequence, Tuple

from edgekit.core.errors import ConfigError, DeviceError

SSH_OPTS_ENV = "EDGEKIT_SSH_OPTS"  # extra `-o` options, e.g. "UserKnownHostsFile=~/kh IdentitiesOnly=yes"
SSH_CONFIG_ENV = "EDGEKIT_SSH_CONFIG"  # an ssh config file passed as `ssh -F`
DEFAULT_CONNECT_TIMEOUT = 10
# Paths handed to scp/rsync are not shell-quoted by every version of them (scp's SFTP mode takes
# them literally, rsync >= 3.2.4 escapes them itself), so only plain characters go there; names
# chosen by users (bundle names) only ever appear in quoted ssh commands.
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9._/+@%=,:-]+$")
_HOST = re.compile(r"^[A-Za-z0-9._%-]+$|^[0-9A-Fa-f:]+$")
_USER = re.compile(r"^[A-Za-z0-9._][A-Za-z0-9._-]*$")
_OPTION = re.compile(r"^[A-Za-z][A-Za-z0-9]*=.+$")


@dataclass(frozen=True)
class SshTarget:
    """``user@host[:port]`` (``[v6addr]:port`` for IPv6), parsed and checked."""

    host: str
    user: Optional[str] = None
    port: Optional[int] = None

    @classmethod
    def parse(cls, spec: str) -> SshTarget:
        """Parse ``user@host[:port]``; anything that could be read as an ssh option is refused."""
        bad = ConfigError(f"--host {spec!r} is not user@host[:port]", "e.g. --host nvidia@192.168.1.20:22")
        user, _, rest = spec.rpartition("@")
        port: Optional[str] = None
        if rest.startswith("["):  # [::1]:2222
            host, _, tail = rest[1:].partition("]")
            if tail:
                if not tail.startswith(":"):
                    raise bad
                port = tail[1:]
        elif rest.count(":") == 1:
            host, port = rest.split(":")
        else:
            host = rest
        if not host or not _HOST.match(host) or host.startswith("-") or (user and not _USER.match(user)):
            raise bad
        if "@" in spec and not user:
            raise bad
        if port is not None and (not port.isdigit() or not 0 < int(port) < 65536):
            raise bad
        return cls(host=host, user=user or None, port=int(port) if port else None)

    @property
    def destination(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def known_hosts_name(self) -> str:
        """How ssh names this host in known_hosts: ``host`` on port 22, ``[host]:port`` otherwise."""
        return self.host if self.port in (None, 22) else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host and self.port else self.host
        return (f"{self.user}@" if self.user else "") + host + (f":{self.port}" if self.port else "")


@dataclass(frozen=True)
class SshConfig:
    """How to reach the device: target plus the user's ssh settings (all optional)."""

    target: SshTarget
    options: Tuple[str, ...] = ()  # extra `-o KEY=VALUE` options
    config_file: Optional[str] = None  # `ssh -F FILE` (replaces ~/.ssh/config, as ssh itself does)
    identity: Optional[str] = None  # `ssh -i FILE`
    connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    # The user's effective StrictHostKeyChecking (from `ssh -G`); None until resolved.
    effective_host_key_checking: Optional[str] = field(default=None, compare=False)
    effective_known_hosts: Optional[str] = field(default=None, compare=False)

    @classmethod
    def build(cls, host: str, options: Sequence[str] = (), config_file: Optional[str] = None,
              identity: Optional[str] = None, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT,
              environ: Optional[Dict[str, str]] = None) -> SshConfig:
        """From CLI values plus ``$EDGEKIT_SSH_OPTS`` / ``$EDGEKIT_SSH_CONFIG``; options are validated."""
        env = os.environ if environ is None else environ
        opts = list(shlex.split(env.get(SSH_OPTS_ENV, ""))) + list(options)
        for opt in opts:
            check_option(opt)
        cfg_file = config_file or env.get(SSH_CONFIG_ENV) or None
        if cfg_file and not os.path.isfile(os.path.expanduser(cfg_file)):
            raise ConfigError(f"ssh config {cfg_file} does not exist", "pass --ssh-config an existing ssh_config file")
        return cls(target=SshTarget.parse(host), options=tuple(opts), config_file=cfg_file,
                   identity=identity, connect_timeout=connect_timeout)


def check_option(opt: str) -> str:
    """An ``-o`` option must be ``Key=Value``; disabling host-key checking is refused."""
    if not _OPTION.match(opt):
        raise ConfigError(f"ssh option {opt!r} is not KEY=VALUE", "e.g. --ssh-option UserKnownHostsFile=~/.ssh/jetson_hosts")
    key, value = opt.split("=", 1)
    if key.lower() == "stricthostkeychecking" and value.strip().lower() in ("no", "off", "false"):
        raise ConfigError(f"ssh option {opt} turns host-key checking off, which edgekit never does",
                          "add the device's key to known_hosts instead (ssh-keyscan, see `edgekit jetson info`)")
    return opt


def host_key_option(effective: Optional[str]) -> Optional[str]:
    """The ``StrictHostKeyChecking`` edgekit passes, given the user's effective value (``ssh -G``).

    ``accept-new`` chosen by the user is kept (None: pass nothing); everything else becomes ``yes``.
    """
    if effective is not None and effective.strip().lower() == "accept-new":
        return None
    return "StrictHostKeyChecking=yes"


def _common_options(cfg: SshConfig, host_key: bool = True) -> List[str]:
    """Options shared by ssh/scp/rsync's ssh; the first value of an option wins in OpenSSH."""
    argv: List[str] = ["-o", "BatchMode=yes"]
    if cfg.config_file:
        argv += ["-F", os.path.expanduser(cfg.config_file)]
    if cfg.identity:
        argv += ["-i", os.path.expanduser(cfg.identity)]
    for opt in cfg.options:
        argv += ["-o", opt]
    strict = host_key_option(cfg.effective_host_key_checking)
    if host_key and strict and not any(o.lower().startswith("stricthostkeychecking=") for o in cfg.options):
        argv += ["-o", strict]
    argv += ["-o", f"ConnectTimeout={cfg.connect_timeout}"]
    return argv


def remote_command(argv: Sequence[str]) -> str:
    """One shell command line whose words are exactly ``argv`` (each quoted)."""
    return " ".join(shlex.quote(str(a)) for a in argv)


def script_command(script: str, args: Sequence[str] = ()) -> str:
    """Run an edgekit-written POSIX sh script remotely with ``args`` as ``$1..``, whatever the login shell."""
    return remote_command(["sh", "-c", script, "edgekit", *args])


def ssh_argv(cfg: SshConfig, command: str) -> List[str]:
    """``ssh`` argv running ``command`` (already quoted: see :func:`remote_command`)."""
    argv = ["ssh", "-T", *_common_options(cfg)]
    if cfg.target.port:
        argv += ["-p", str(cfg.target.port)]
    return argv + ["--", cfg.target.destination, command]


def _ssh_program(cfg: SshConfig) -> str:
    """rsync's ``-e``: the ssh command line rsync runs (rsync splits it on spaces, honouring quotes)."""
    argv = ["ssh", "-T", *_common_options(cfg)]
    if cfg.target.port:
        argv += ["-p", str(cfg.target.port)]
    return remote_command(argv)


def _remote_spec(cfg: SshConfig, path: str) -> str:
    if not _PLAIN_PATH.match(path):
        raise ConfigError(f"remote path {path!r} has characters scp/rsync may interpret",
                          "use a --remote-dir made of letters, digits and . _ / - only")
    host = f"[{cfg.target.host}]" if ":" in cfg.target.host else cfg.target.host
    user = f"{cfg.target.user}@" if cfg.target.user else ""
    return f"{user}{host}:{path}"


def scp_argv(cfg: SshConfig, local_dir: str, remote_path: str) -> List[str]:
    """``scp -p -r`` of a local directory onto ``remote_path`` (which must not exist yet)."""
    argv = ["scp", "-p", "-r", "-q", *_common_options(cfg)]
    if cfg.target.port:
        argv += ["-P", str(cfg.target.port)]
    return argv + ["--", local_dir, _remote_spec(cfg, remote_path)]


def rsync_argv(cfg: SshConfig, local_dir: str, remote_path: str, pull: bool = False) -> List[str]:
    """``rsync -a`` of a directory's contents to (or, ``pull``, from) ``remote_path``."""
    argv = ["rsync", "-a", "--partial-dir=.rsync-partial", "-e", _ssh_program(cfg), "--"]
    remote = _remote_spec(cfg, remote_path.rstrip("/") + "/")
    local = local_dir.rstrip("/") + "/"
    return argv + ([remote, local] if pull else [local, remote])


def scp_pull_argv(cfg: SshConfig, remote_path: str, local_dir: str) -> List[str]:
    """``scp -p -r`` of a remote directory to a local path that does not exist yet."""
    argv = ["scp", "-p", "-r", "-q", *_common_options(cfg)]
    if cfg.target.port:
        argv += ["-P", str(cfg.target.port)]
    return argv + ["--", _remote_spec(cfg, remote_path), local_dir]


# ---- failures -> one line ------------------------------------------------------------------------
def classify_failure(cfg: SshConfig, stderr: str) -> DeviceError:
    """Map an ssh exit status 255 (ssh's own failure) to one line naming the cause and the fix."""
    t = cfg.target
    kh = _known_hosts_file(cfg)
    port = f"-p {t.port} " if t.port and t.port != 22 else ""
    scan = f"ssh-keyscan {port}{t.host} >> {kh}"
    if "REMOTE HOST IDENTIFICATION HAS CHANGED" in stderr or re.search(r"Host key for .* has changed", stderr):
        return DeviceError(f"host key of {t} does not match the one in {kh} (device reinstalled, or someone in between)",
                           f"if the device really changed: ssh-keygen -f {kh} -R '{t.known_hosts_name}' && {scan}")
    if re.search(r"No .* host key is known|Host key verification failed", stderr):
        return DeviceError(f"host key of {t} is not in {kh}",
                           f"check its fingerprint on the device, then: {scan}")
    if "Permission denied" in stderr or "Too many authentication failures" in stderr:
        return DeviceError(f"ssh authentication to {t} failed (edgekit uses your keys, never a password prompt)",
                           f"install your key once: ssh-copy-id {port}{t.destination}")
    for needle in ("Connection refused", "timed out", "Could not resolve", "No route to host",
                   "Network is unreachable", "Connection reset", "Connection closed"):
        if needle in stderr:
            return DeviceError(f"device {t} is unreachable ({_last_line(stderr)})",
                               "check it is powered, on the network and its sshd runs (ssh to it by hand)")
    return DeviceError(f"ssh to {t} failed: {_last_line(stderr) or 'exit status 255'}",
                       "run the same ssh by hand to see why")


def _known_hosts_file(cfg: SshConfig) -> str:
    if cfg.effective_known_hosts:
        return cfg.effective_known_hosts
    for opt in cfg.options:
        key, _, value = opt.partition("=")
        if key.lower() == "userknownhostsfile":
            return value.split()[0]
    return "~/.ssh/known_hosts"


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


# ---- running ---------------------------------------------------------------------------------------
@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str


def _pump(src: IO[bytes], sink: Optional[IO[str]], keep: List[bytes]) -> None:
    # Raw chunks, not lines: remote progress bars redraw with '\r' and must show as they happen.
    for chunk in iter(lambda: src.read1(4096) if hasattr(src, "read1") else src.read(4096), b""):
        keep.append(chunk)
        if sink is not None:
            sink.write(chunk.decode("utf-8", "replace"))
            sink.flush()


def run_argv(argv: Sequence[str], stream: bool = False, timeout: Optional[float] = None,
             out: Optional[IO[str]] = None, err: Optional[IO[str]] = None) -> Completed:
    """Run a local command (ssh/scp/rsync); with ``stream`` its output is echoed as it arrives."""
    if shutil.which(argv[0]) is None:
        raise DeviceError(f"{argv[0]} is not installed on this machine", "install the OpenSSH client (and rsync)")
    if not stream:
        p = subprocess.run(list(argv), stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return Completed(p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace"))
    proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    kept_out: List[bytes] = []
    kept_err: List[bytes] = []
    threads = [threading.Thread(target=_pump, args=(proc.stdout, out or sys.stdout, kept_out), daemon=True),
               threading.Thread(target=_pump, args=(proc.stderr, err or sys.stderr, kept_err), daemon=True)]
    for t in threads:
        t.start()
    try:
        rc = proc.wait(timeout=timeout)
    except BaseException:  # Ctrl-C or timeout: do not leave the local ssh behind
        proc.kill()
        proc.wait()
        raise
    finally:
        for t in threads:
            t.join(timeout=5)
    return Completed(rc, b"".join(kept_out).decode("utf-8", "replace"), b"".join(kept_err).decode("utf-8", "replace"))


Runner = Callable[..., Completed]


class SshSession:
    """Runs commands on one device; ssh's own failures become one-line :class:`DeviceError`."""

    def __init__(self, cfg: SshConfig, runner: Runner = run_argv) -> None:
        self.cfg = cfg
        self._runner = runner
        self._resolved = cfg.effective_host_key_checking is not None

    def resolve(self) -> SshConfig:
        """Read the user's effective host-key settings once (``ssh -G`` prints the config without connecting)."""
        if self._resolved:
            return self.cfg
        argv = ["ssh", "-G", *_common_options(self.cfg, host_key=False)]
        if self.cfg.target.port:
            argv += ["-p", str(self.cfg.target.port)]
        p = self._runner(argv + ["--", self.cfg.target.destination])
        found: Dict[str, str] = {}
        for line in p.stdout.splitlines():
            key, _, v = line.partition(" ")
            found.setdefault(key, v)
        known = found.get("userknownhostsfile", "").split()
        self.cfg = replace(self.cfg, effective_host_key_checking=found.get("stricthostkeychecking") or "ask",
                           effective_known_hosts=known[0] if known else None)
        self._resolved = True
        return self.cfg

    def argv(self, command: str) -> List[str]:
        return ssh_argv(self.resolve(), command)

    def run(self, command: str, stream: bool = False, check: bool = True, timeout: Optional[float] = None,
            **kw) -> Completed:
        """Run a quoted remote command line; exit 255 raises the classified error, others are returned
        (or, with ``check``, raised as a DeviceError quoting the last stderr line)."""
        p = self._runner(self.argv(command), stream=stream, timeout=timeout, **kw)
        if p.returncode == 255:
            raise classify_failure(self.cfg, p.stderr)
        if check and p.returncode != 0:
            raise DeviceError(f"on {self.cfg.target}: `{_short(command)}` failed with exit status {p.returncode}: "
                              f"{_last_line(p.stderr) or _last_line(p.stdout)}", "see the output above")
        return p

    def run_argv(self, argv: Sequence[str], **kw) -> Completed:
        return self.run(remote_command(argv), **kw)

    def transfer(self, argv: List[str], what: str) -> None:
        """Run an scp/rsync argv; failures become one line."""
        p = self._runner(argv)
        if p.returncode == 0:
            return
        if p.returncode == 255 or argv[0] == "scp" and p.returncode == 1 and _ssh_like(p.stderr):
            raise classify_failure(self.cfg, p.stderr)
        raise DeviceError(f"{what} to {self.cfg.target} failed ({argv[0]} exit {p.returncode}): {_last_line(p.stderr)}",
                          "check free space and permissions on the device")


def _ssh_like(stderr: str) -> bool:
    return any(s in stderr for s in ("Host key", "host key", "Permission denied", "Connection", "resolve"))


def _short(command: str, n: int = 80) -> str:
    return command if len(command) <= n else command[: n - 3] + "..."


__all__ = [
    "SSH_OPTS_ENV", "SSH_CONFIG_ENV", "SshTarget", "SshConfig", "SshSession", "Completed", "check_option",
    "host_key_option", "remote_command", "script_command", "ssh_argv", "scp_argv", "scp_pull_argv", "rsync_argv",
    "classify_failure", "run_argv",
]
