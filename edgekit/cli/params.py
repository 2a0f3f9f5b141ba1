"""Option types shared by the subcommands."""

from __future__ import annotations

import math
from typing import Any, Optional

import click


class FiniteFloatRange(click.FloatRange):
    """``click.FloatRange`` that also refuses ``nan`` and ``inf`` (a usage error, exit 2).

    click's bounds are plain comparisons, which ``nan`` passes (``--conf nan`` silently kept no box)
    and ``inf`` passes where there is no upper bound (``--duration inf`` timed forever).
    """

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        rv = super().convert(value, param, ctx)
        if not math.isfinite(rv):
            self.fail(f"{value!r} is not a finite number.", param, ctx)
        return rv


__all__ = ["FiniteFloatRange"]
