"""Pool workers that do not outlive a killed parent.

``kill -9`` of ``edgekit data synth --workers N`` leaves its pool's processes re-parented to init:
they keep rendering into a staging directory nobody will rename (a re-run removes it) or block
forever on the task pipe that their sibling still holds open. ``concurrent.futures`` has no option
for this, so each worker watches its parent's pid and exits once the parent is gone.
"""

from __future__ import annotations

import os
import threading
import time

POLL_SECONDS = 0.5


def exit_with_parent(parent: int) -> None:
    """``ProcessPoolExecutor(initializer=exit_with_parent, initargs=(os.getpid(),))``: a daemon thread
    that ends this worker (``os._exit``, no cleanup of a dead run) as soon as ``parent`` is not its parent."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="edgekit-parent-watch", daemon=True).start()


__all__ = ["exit_with_parent"]
