"""``edgekit bench``: latency, throughput, parity and accuracy of a bundle; ``edgekit bench compare``.

``edgekit bench BUNDLE [options]`` is ``edgekit bench run BUNDLE [options]``: the group routes a
first argument that is not a subcommand to ``run``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Optional, Tuple

import click

from edgekit.cli.params import SESSIONS, FiniteFloatRange
from edgekit.core.errors import DeviceError

_EXISTING = click.Path(exists=False, path_type=Path)


class _BenchGroup(click.Group):
    """``bench BUNDLE ...`` means ``bench run BUNDLE ...`` (``compare`` stays a subcommand)."""

    def parse_args(self, ctx: click.Context, args: List[str]) -> List[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["run"] + list(args)
        return super().parse_args(ctx, args)


@click.group(cls=_BenchGroup)
def bench() -> None:
    """Benchmark a bundle: `edgekit bench BUNDLE [options]` (see `edgekit bench run --help`)."""


@bench.command("run")
@click.argument("bundle", type=_EXISTING)
@click.option("--backend", type=click.Choice(["onnxruntime", "tensorrt", "torch"]), default="onnxruntime",
              show_default=True)
@click.option("--device", type=click.Choice(["cpu", "cuda", "jetson"]), default="cpu", show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16", "int8"]), default="fp32", show_default=True)
@click.option("--host", help="user@addr[:port] of the Jetson (with --device jetson).")
@click.option("--power-mode", help="nvpmodel mode ID to bench in (with --device jetson; restored afterwards).")
@click.option("--warmup", type=click.IntRange(min=0), default=10, show_default=True,
              help="Minimum warm-up frames; warm-up then goes on until latency is steady.")
@click.option("--warmup-s", type=FiniteFloatRange(min=0), default=0.0, help="Minimum warm-up seconds.")
@click.option("--iterations", type=click.IntRange(min=1), help="Timed frames.  [default: 100]")
@click.option("--duration", type=FiniteFloatRange(min=0, min_open=True), help="Timed seconds (instead of --iterations).")
@click.option("--batch", type=click.IntRange(min=1), default=1, show_default=True,
              help="Also time the runner on batches of N (needs a dynamic-batch bundle).")
@click.option("--video", type=_EXISTING, help="Frames from this video file.")
@click.option("--images", type=_EXISTING, help="Frames from this folder of images.")
@click.option("--data", type=_EXISTING, help="YOLO-OBB dataset root (data.yaml): also measure mAP on its val split.")
@click.option("--out", type=_EXISTING, help="Results directory.  [default: bench_results/<bundle>_<backend>_<precision>]")
@click.option("--json", "as_json", is_flag=True, help="Print bench.json to stdout instead of the table.")
@click.option("--no-plots", is_flag=True, help="Skip the PNG plots.")
@click.option("--no-progress", is_flag=True, help="No progress bars on stderr.")
@click.option("--no-parity", is_flag=True, help="Skip the golden-set parity check.")
@click.option("--uint8-input", is_flag=True,
              help="onnxruntime: feed uint8 frames to a graph variant that normalises them itself.")
@click.option("--pipeline-sessions", type=SESSIONS, default=0,
              help="onnxruntime: N single-threaded sessions run whole frames in parallel in the pipelined run "
                   "(on a 2-core CPU 2 measured 1.09-1.31x the FPS of one session; 0: one session).")
@click.option("--tile", type=click.IntRange(min=0), default=None,
              help="Sliced inference: cut frames into SIZE-px tiles (0: whole frames).  [default: the bundle's plan]")
@click.option("--tile-overlap", type=click.IntRange(min=0), default=None, help="Pixels shared by neighbouring tiles.")
def run(bundle: Path, backend: str, device: str, precision: str, host: Optional[str], power_mode: Optional[str],
        warmup: int, warmup_s: float, iterations: Optional[int], duration: Optional[float], batch: int,
        video: Optional[Path], images: Optional[Path], data: Optional[Path], out: Optional[Path], as_json: bool,
        no_plots: bool, no_progress: bool, no_parity: bool, uint8_input: bool, pipeline_sessions: int,
        tile: Optional[int], tile_overlap: Optional[int]) -> None:
    """Measure BUNDLE on this machine (or on a Jetson with --device jetson --host)."""
    from edgekit.bench import BenchSettings, run_bench, to_markdown, write_outputs
    from edgekit.bench.report import prepare_out
    from edgekit.core.config import build_config

    if iterations is not None and duration is not None:
        raise click.UsageError("pass --iterations or --duration, not both")
    if (host or power_mode) and device != "jetson":
        raise click.UsageError("--host and --power-mode go with --device jetson")
    settings = build_config(BenchSettings, {
        "backend": backend, "device": device, "precision": precision, "warmup": warmup, "warmup_s": warmup_s,
        "iterations": iterations, "duration_s": duration, "batch": batch, "data": _s(data),
        "video": _s(video), "images": _s(images), "parity": not no_parity,
        "uint8_input": uint8_input, "pipeline_sessions": pipeline_sessions, "tile": tile, "tile_overlap": tile_overlap},
        "edgekit bench options")
    if device == "jetson":
        _remote(bundle, settings, host, power_mode, out, as_json, not no_progress)
        return
    target = prepare_out(out or Path("bench_results") / f"{Path(bundle).name}_{backend}_{precision}",
                         sources=[bundle, video, images, data])  # one line before any measuring
    report = run_bench(bundle, settings, progress=not no_progress)
    write_outputs(report, target, plots=not no_plots)
    click.echo(report.model_dump_json(indent=2) if as_json else to_markdown(report))
    click.echo(f"wrote {target}/bench.json, bench.md" + ("" if no_plots else " and plots"), err=True)


def _s(p: Optional[Path]) -> Optional[str]:
    return None if p is None else str(p)


def _remote(bundle: Path, settings: Any, host: Optional[str], power_mode: Optional[str], out: Optional[Path],
            as_json: bool, progress: bool) -> None:
    if not host:
        raise click.UsageError("--device jetson needs --host user@addr")
    try:
        from edgekit.jetson import remote_bench
    except ImportError as e:
        raise DeviceError(f"--device jetson is not available in this edgekit ({e})",
                          "install an edgekit that includes edgekit.jetson, or bench on the device itself") from None
    remote_bench(host=host, bundle=bundle, settings=settings, out=out, power_mode=power_mode, json_output=as_json,
                 progress=progress)


@bench.command("compare")
@click.argument("results", nargs=-1, required=True, type=_EXISTING)
@click.option("--force", is_flag=True, help="Compare runs of different models or precisions anyway.")
def compare(results: Tuple[Path, ...], force: bool) -> None:
    """Print the differences between bench.json files (or their directories), relative to the first."""
    from edgekit.bench import compare_table

    click.echo(compare_table(list(results), force=force))
