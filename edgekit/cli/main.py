"""The ``edgekit`` root command.

Each stage adds one entry to ``SUBCOMMANDS``; its module is imported only when that subcommand
runs (or its help is shown), so ``edgekit --help`` stays fast and imports no heavy framework.
User errors (:class:`~edgekit.core.errors.EdgekitError`) print one line and exit 1; usage errors
exit 2 (click's convention); bugs keep their tracebacks.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Dict, List, Optional, Tuple

import click

from edgekit import __version__
from edgekit.core.errors import EdgekitError, foreign_message

# name -> (module, attribute, one-line help shown by `edgekit --help` without importing the module)
SUBCOMMANDS: Dict[str, Tuple[str, str, str]] = {
    "data": ("edgekit.cli.data_cmd", "data", "Synthesise, check and convert datasets."),
    "demo": ("edgekit.cli.demo_cmd", "demo", "Run the whole pipeline on an embedded synthetic default."),
    "train": ("edgekit.cli.train_cmd", "train", "Train a model (obb: YOLOv8-OBB with DINOv3 distillation)."),
    "export": ("edgekit.cli.export_cmd", "export", "Export a run to ONNX / INT8 Q/DQ / TensorRT and a deploy bundle."),
    "engine": ("edgekit.cli.engine_cmd", "engine", "Build the TensorRT engine for a deploy bundle on this device."),
    "bundle": ("edgekit.cli.bundle_cmd", "bundle", "Inspect a deploy bundle; check its golden outputs on this machine."),
    "jetson": ("edgekit.cli.jetson_cmd", "jetson", "Drive a Jetson over ssh: info, push, build, bench, setup."),
    "serve": ("edgekit.cli.serve_cmd", "serve", "Serve a bundle's detections: HTTP/WebSocket, metrics, live page."),
    "bench": ("edgekit.cli.bench_cmd", "bench", "Benchmark a bundle: latency, throughput, parity, mAP; compare runs."),
    "predict": ("edgekit.cli.predict_cmd", "predict", "Run a run/checkpoint/bundle on images or video (obb, refdet): predictions JSON."),
    "eval": ("edgekit.cli.eval_cmd", "eval_", "Score predictions (obb) or a model (refdet) on a dataset: mAP, P/R, ST-IoU, PR curve."),
    "tune": ("edgekit.cli.tune_cmd", "tune", "Hyper-parameter search with Optuna; writes a ready best.yaml."),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> List[str]:
        return sorted(set(super().list_commands(ctx)) | set(SUBCOMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> Optional[click.Command]:
        if cmd_name in SUBCOMMANDS:
            module, attr, _ = SUBCOMMANDS[cmd_name]
            return getattr(importlib.import_module(module), attr)
        return super().get_command(ctx, cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, SUBCOMMANDS[name][2]) for name in sorted(SUBCOMMANDS)]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgekit")
def cli() -> None:
    """edgekit: train a detector, export it to INT8/TensorRT, bench and serve it on a Jetson."""


def _command_words(argv: Optional[List[str]]) -> str:
    """The subcommand path of ``argv`` (``data synth obb``): its words before the first option or path."""
    words = []
    for word in sys.argv[1:] if argv is None else argv:
        if word.startswith("-") or "/" in word or len(words) == 3:
            break
        words.append(word)
    return " ".join(words)


def main(argv: Optional[List[str]] = None) -> None:
    """Console entry point: EdgekitError -> one line on stderr, exit 1."""
    try:
        rv = cli.main(args=argv, prog_name="edgekit", standalone_mode=False)
    except EdgekitError as e:
        click.echo(f"error: {e.format()}", err=True)
        sys.exit(1)
    except MemoryError as e:  # an absurd size (--imgsz 99999999) or a too-small machine: not a bug of edgekit
        if os.environ.get("EDGEKIT_TRACEBACK") == "1":
            raise
        click.echo(f"error: out of memory running `edgekit {_command_words(argv)}`: {foreign_message(e)}; "
                   "pass smaller sizes (e.g. --imgsz, --frame-size, batch=) or free memory", err=True)
        sys.exit(1)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    # With standalone_mode=False click returns ctx.exit(N)'s code instead of exiting.
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":  # pragma: no cover
    main()
