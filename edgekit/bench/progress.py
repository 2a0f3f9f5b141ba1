"""A tqdm progress bar on stderr, or a silent stand-in when tqdm is missing or progress is off.

Bars are updated outside the timed regions (see :mod:`edgekit.bench.measure`); tqdm only redraws
every ``mininterval`` seconds, so an update costs about a microsecond.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterator, Optional


class _Silent:
    def update(self, n: int = 1) -> None:
        pass


@contextlib.contextmanager
def progress_bar(desc: str, total: Optional[int], enabled: bool = True) -> Iterator[Any]:
    if not enabled:
        yield _Silent()
        return
    try:
        from tqdm import tqdm
    except ImportError:
        yield _Silent()
        return
    bar = tqdm(total=total, desc=desc, unit="frame", file=sys.stderr, leave=False, mininterval=0.5)
    try:
        yield bar
    finally:
        bar.close()


__all__ = ["progress_bar"]
