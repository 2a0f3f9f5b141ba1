"""Power modes: ``nvpmodel`` and ``jetson_clocks``, always put back afterwards.

Power-mode ids on the Xavier NX (stock L4T R35) are listed in docs/jetson.md; ``jetson_clocks``
pins the clocks to the current mode's maximum, ``--store FILE`` / ``--restore FILE`` save and
restore them. Changing either needs root: edgekit uses ``sudo -n`` (never a password prompt),
so a device without passwordless sudo for these two tools fails with one line saying so.

:class:`PowerSession` sets the mode for a ``with`` block and restores the previous mode and clocks
in ``finally``, also on an exception, Ctrl-C or SIGTERM; a second Ctrl-C during the restore is
ignored so the device is not left in the benchmark's mode. The command lines are pure functions.
"""

from __future__ import annotations

import contextlib
import re
import signal
import threading
from dataclasses import dataclass
from typing import Any, Callable, Iterator, List, Optional, Sequence, Tuple

from edgekit.core.errors import DeviceError

# Power modes of the Xavier NX on stock L4T R35 (nvpmodel -m ID).
XAVIER_NX_MODES = {0: "15W_2CORE", 1: "15W_4CORE", 2: "15W_6CORE", 3: "10W_2CORE", 4: "10W_4CORE",
                   5: "10W_DESKTOP", 6: "20W_2CORE", 7: "20W_4CORE", 8: "20W_6CORE"}

SUDO = ("sudo", "-n")


@dataclass(frozen=True)
class PowerMode:
    id: int
    name: Optional[str] = None


# Runs a command on the device: argv -> (returncode, stdout, stderr).
Execute = Callable[[List[str]], Tuple[int, str, str]]


def local_execute(argv: List[str]) -> Tuple[int, str, str]:
    """Run a command on this machine (edgekit running on the Jetson itself)."""
    import subprocess

    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: command not found"
    return p.returncode, p.stdout, p.stderr


# ---- command lines (data) ----------------------------------------------------------------------
def nvpmodel_query_argv() -> List[str]:
    return ["nvpmodel", "-q"]


def nvpmodel_set_argv(mode_id: int) -> List[str]:
    return [*SUDO, "nvpmodel", "-m", str(int(mode_id))]


def jetson_clocks_store_argv(path: str) -> List[str]:
    return [*SUDO, "jetson_clocks", "--store", path]


def jetson_clocks_argv() -> List[str]:
    return [*SUDO, "jetson_clocks"]


def jetson_clocks_restore_argv(path: str) -> List[str]:
    return [*SUDO, "jetson_clocks", "--restore", path]


def parse_nvpmodel_query(text: str) -> PowerMode:
    """``nvpmodel -q`` prints ``NV Power Mode: MODE_15W_6CORE`` and then the id on its own line."""
    name = None
    m = re.search(r"NV Power Mode:\s*(\S+)", text)
    if m:
        name = m.group(1)
        name = name[5:] if name.startswith("MODE_") else name
    ids = [ln.strip() for ln in text.splitlines() if ln.strip().isdigit()]
    if not ids:
        raise DeviceError(f"cannot read the power mode from `nvpmodel -q`: {text.strip()[:120]!r}",
                          "check nvpmodel works on the device (sudo nvpmodel -q)")
    return PowerMode(int(ids[-1]), name)


# ---- running them ------------------------------------------------------------------------------
def _check(result: Tuple[int, str, str], argv: Sequence[str], where: str) -> str:
    rc, out, err = result
    if rc == 0:
        return out
    text = (err or out).strip()
    tool = argv[2] if argv[:2] == list(SUDO) else argv[0]
    if argv[:2] == list(SUDO) and ("sudo:" in text or "password" in text or (rc == 127 and "sudo" in text)):
        raise DeviceError(f"{tool} needs root on {where} and `sudo -n` was refused ({_last(text)})",
                          "allow it without a password (sudoers: USER ALL=(root) NOPASSWD: /usr/sbin/nvpmodel, "
                          "/usr/bin/jetson_clocks) or run without --power-mode/--jetson-clocks")
    raise DeviceError(f"`{' '.join(argv)}` failed on {where} (exit {rc}): {_last(text)}",
                      "run it by hand on the device to see why")


def _last(text: str) -> str:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return lines[-1].strip() if lines else "no output"


def query_mode(execute: Execute, where: str = "the device") -> PowerMode:
    argv = nvpmodel_query_argv()
    return parse_nvpmodel_query(_check(execute(argv), argv, where))


class PowerSession:
    """Set a power mode (and optionally pin clocks) for a block; restore both afterwards.

    ``execute(argv) -> (rc, stdout, stderr)`` runs a command on the device (over ssh or locally).
    ``store_file`` is where ``jetson_clocks --store`` keeps the previous clocks on the device.
    """

    def __init__(self, execute: Execute, mode: Optional[int] = None, clocks: bool = False,
                 store_file: str = "/tmp/edgekit_clocks.conf", where: str = "the device") -> None:
        self.execute = execute
        self.mode = mode
        self.clocks = clocks
        self.store_file = store_file
        self.where = where
        self.previous: Optional[PowerMode] = None
        self.applied: Optional[PowerMode] = None
        self._mode_changed = False
        self._clocks_stored = False

    def _run(self, argv: List[str]) -> str:
        return _check(self.execute(argv), argv, self.where)

    def apply(self) -> None:
        if self.mode is None and not self.clocks:
            return
        self.previous = query_mode(self.execute, self.where)
        if self.clocks:
            self._run(jetson_clocks_store_argv(self.store_file))
            self._clocks_stored = True
        if self.mode is not None and self.mode != self.previous.id:
            self._mode_changed = True  # set before running: a half-applied change is still undone
            self._run(nvpmodel_set_argv(self.mode))
        if self.clocks:
            self._run(jetson_clocks_argv())
        self.applied = query_mode(self.execute, self.where)

    def restore(self) -> List[str]:
        """Undo what :meth:`apply` did (mode first: it resets clocks; then the stored clocks).
        Every step is attempted; failures are returned as messages, not raised."""
        problems: List[str] = []
        steps: List[List[str]] = []
        if self._mode_changed and self.previous is not None:
            steps.append(nvpmodel_set_argv(self.previous.id))
        if self._clocks_stored:
            steps.append(jetson_clocks_restore_argv(self.store_file))
        for argv in steps:
            try:
                self._run(argv)
            except DeviceError as e:
                problems.append(e.format())
            except Exception as e:  # noqa: BLE001 - the next restore step must still run
                problems.append(f"{' '.join(argv)}: {e}")
        self._mode_changed = self._clocks_stored = False
        return problems

    @contextlib.contextmanager
    def session(self) -> Iterator[PowerSession]:
        """``with PowerSession(...).session():`` apply, run the block, always restore."""
        with _signals_raise():
            try:
                self.apply()
                yield self
            finally:
                with _ignore_sigint():
                    problems = self.restore()
                if problems:
                    import sys

                    for p in problems:
                        print(f"warning: power mode restore: {p}", file=sys.stderr)


class Terminated(KeyboardInterrupt):
    """SIGTERM/SIGHUP turned into an exception so ``finally`` blocks (the restore) run."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def _signals_raise() -> Iterator[None]:
    """In the main thread, SIGTERM and SIGHUP raise (Ctrl-C already does) for the block's duration."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for sig in (signal.SIGTERM, getattr(signal, "SIGHUP", None)):
        if sig is not None:
            old[sig] = signal.signal(sig, _raise_terminated)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _ignore_sigint() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)


__all__ = [
    "XAVIER_NX_MODES", "PowerMode", "PowerSession", "Terminated", "nvpmodel_query_argv", "nvpmodel_set_argv",
    "jetson_clocks_store_argv", "jetson_clocks_argv", "jetson_clocks_restore_argv", "parse_nvpmodel_query",
    "query_mode", "local_execute",
]
