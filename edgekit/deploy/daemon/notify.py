"""systemd notifications (sd_notify) in pure Python: one datagram to ``$NOTIFY_SOCKET``.

Hand-written instead of a dependency: the protocol is one ``sendto`` (systemd's sd_notify(3)),
and the watchdog must be tied to our own progress counter, which no library does for us.
READY=1 is sent once the service is ready; WATCHDOG=1 only while frames keep moving, so a hung
pipeline makes systemd restart the unit (WatchdogSec in jetson/edgekit-serve.service).
"""

from __future__ import annotations

import os
import socket
import threading
from typing import Callable, Optional


def sd_notify(message: str, sock_path: Optional[str] = None) -> bool:
    """Send ``message`` (e.g. "READY=1"); False when not run under systemd (no NOTIFY_SOCKET)."""
    path = sock_path or os.environ.get("NOTIFY_SOCKET")
    if not path:
        return False
    if path.startswith("@"):  # abstract namespace
        path = "\0" + path[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        try:
            s.sendto(message.encode(), path)
        except OSError:
            return False
    return True


def watchdog_interval() -> Optional[float]:
    """Half of systemd's WATCHDOG_USEC in seconds (ping twice per period), or None."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    return max(int(usec) / 2e6, 0.05)


class Notifier:
    """READY once ``is_ready()``; WATCHDOG each interval in which ``progress()`` grew."""

    def __init__(self, is_ready: Callable[[], bool], progress: Callable[[], int],
                 interval: Optional[float] = None) -> None:
        self.is_ready, self.progress = is_ready, progress
        self.interval = interval or watchdog_interval()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="edgekit-notify", daemon=True)

    def start(self) -> Notifier:
        if os.environ.get("NOTIFY_SOCKET"):
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        sd_notify("STOPPING=1")

    def _run(self) -> None:
        sent_ready, last = False, -1
        while not self._stop.wait(self.interval or 0.5):
            if not sent_ready and self.is_ready():
                sent_ready = sd_notify("READY=1\nSTATUS=serving")
            now = self.progress()
            if sent_ready and self.interval and now > last:
                sd_notify("WATCHDOG=1")
            last = now


__all__ = ["sd_notify", "watchdog_interval", "Notifier"]
