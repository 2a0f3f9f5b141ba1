"""Option types shared by the subcommands."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional, TypeVar

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


class _Sessions(click.IntRange):
    """ONNX Runtime worker sessions for the pipelined run: 0 (off) or 2..64; 1 adds nothing (exit 2)."""

    def __init__(self) -> None:
        super().__init__(min=0, max=64)

    def convert(self, value: Any, param: Optional[click.Parameter], ctx: Optional[click.Context]) -> Any:
        rv = super().convert(value, param, ctx)
        if rv == 1:
            self.fail("1 adds nothing to the main session: give 0 (off) or 2 and more.", param, ctx)
        return rv


SESSIONS = _Sessions()

F = TypeVar("F", bound=Callable[..., Any])


def bundle_runtime_options(fn: F) -> F:
    """``--backend`` and ``--precision`` of the commands that also take a bundle (eval, predict)."""
    fn = click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True,
                      help="Bundles only: which graph/engine of the bundle runs.")(fn)
    return click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt"]), default="onnxruntime",
                        show_default=True, help="Bundles only: the runtime.")(fn)


def trust_checkpoint_option(fn: F) -> F:
    """``--trust-checkpoint`` of the commands that read a checkpoint for inference (eval, predict)."""
    return click.option("--trust-checkpoint", is_flag=True,
                        help="Load the .pt without the class allow-list (only for trusted files).")(fn)


__all__ = ["FiniteFloatRange", "bundle_runtime_options", "trust_checkpoint_option"]
