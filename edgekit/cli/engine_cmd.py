"""``edgekit engine build BUNDLE``: build (or reuse) the TensorRT engine for a deploy bundle on this device.

Thin on purpose: options -> :class:`~edgekit.deploy.tensorrt.EngineBuildOptions` ->
:func:`~edgekit.deploy.tensorrt.build_from_bundle`, with one progress line per phase on stderr.
The choices come from the ``Literal`` aliases in ``edgekit.deploy.tensorrt.options``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import click

from edgekit.deploy.tensorrt.options import EngineBuilder, Int8Source, Precision, choices


def open_bundle(path: Path) -> Any:
    """The verified bundle at ``path`` (a seam the CLI tests replace)."""
    from edgekit.deploy.bundle import Bundle

    return Bundle.open(path, verify=True)


@click.group("engine")
def engine() -> None:
    """Build TensorRT engines for a deploy bundle, on the device that will run them."""


@engine.command("build")
@click.argument("bundle", type=click.Path(path_type=Path))
@click.option("--precision", type=click.Choice(choices(Precision)), default="fp16", show_default=True)
@click.option("--int8-source", type=click.Choice(choices(Int8Source)), default="auto", show_default=True,
              help="INT8 from the Q/DQ ONNX or from the calibration cache (auto: Q/DQ, cache for 8.x DLA).")
@click.option("--dla-core", type=click.IntRange(min=0), default=None, help="Build for this DLA core (Xavier: 0 or 1).")
@click.option("--no-gpu-fallback", is_flag=True, help="With --dla-core: fail instead of running layers on the GPU.")
@click.option("--builder", type=click.Choice(choices(EngineBuilder)), default="polygraphy", show_default=True)
@click.option("--workspace-mb", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--timing-cache", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Timing cache file. Default: ~/.cache/edgekit/timing/trt<version>-sm<XY>.cache.")
@click.option("--no-timing-cache", is_flag=True, help="Build without a timing cache.")
@click.option("--calib-data", type=click.Path(path_type=Path), default=None,
              help="INT8 from calibration: calibrate here on these images instead of the bundle's cache.")
@click.option("--calib-size", type=click.IntRange(min=1), default=64, show_default=True,
              help="With --calib-data: how many images.")
@click.option("--force", is_flag=True, help="Rebuild even if an engine with the same key exists.")
@click.option("--print-trtexec", is_flag=True, help="Print the equivalent trtexec command line and exit.")
@click.option("--trt-version", default=None, help="TensorRT version for --print-trtexec where tensorrt is not importable.")
@click.option("--quiet", is_flag=True, help="No progress lines.")
def build(bundle: Path, precision: str, int8_source: str, dla_core: Optional[int], no_gpu_fallback: bool, builder: str,
          workspace_mb: int, timing_cache: Optional[Path], no_timing_cache: bool, calib_data: Optional[Path],
          calib_size: int, force: bool, print_trtexec: bool, trt_version: Optional[str], quiet: bool) -> None:
    """Build the engine for BUNDLE into its engine cache (BUNDLE/engines) and print where it is."""
    from edgekit.core.config import build_config
    from edgekit.deploy.tensorrt import EngineBuildOptions, build_from_bundle

    options = build_config(EngineBuildOptions, {
        "precision": precision, "int8_source": int8_source, "dla_core": dla_core, "gpu_fallback": not no_gpu_fallback,
        "builder": builder, "workspace_mb": workspace_mb,
        "timing_cache": "" if no_timing_cache else (str(timing_cache) if timing_cache else None),
    }, source="edgekit engine build options")
    opened = open_bundle(bundle)
    if print_trtexec:
        click.echo(" ".join(_trtexec_line(opened, options, trt_version)))
        return
    log = (lambda _msg: None) if quiet else (lambda msg: click.echo(f"[engine] {msg}", err=True))
    images = None
    if calib_data is not None:
        from edgekit.calib.dataset import CalibrationSet

        images = CalibrationSet.from_dir(calib_data, opened.manifest.preprocess, size=calib_size,
                                         min_images=min(8, calib_size))
    result = build_from_bundle(opened, options, progress=log, force=force, calib_images=images)
    click.echo(f"{'reused' if result.reused else 'built'} {result.plan_path}")
    click.echo(f"sidecar {result.sidecar_path}")
    if opened.task == "refdet":  # its reference encoder: always FP16 (edgekit.deploy.bundle.encoder_precision)
        from edgekit.deploy.bundle import ENCODER_ROLE, encoder_precision

        entry = opened.model(ENCODER_ROLE)
        enc = build_from_bundle(opened, options.model_copy(update={"precision": encoder_precision("tensorrt", entry),
                                                                   "dla_core": None, "int8_source": "auto"}),
                                progress=log, force=force, role=ENCODER_ROLE)
        click.echo(f"{'reused' if enc.reused else 'built'} {enc.plan_path} ({ENCODER_ROLE})")


def _trtexec_line(bundle: Any, options: Any, trt_version: Optional[str]) -> list:
    import shlex

    from edgekit.core.errors import ConfigError
    from edgekit.deploy.tensorrt.device import import_tensorrt, tensorrt_available
    from edgekit.deploy.tensorrt.from_bundle import bundle_build_inputs
    from edgekit.deploy.tensorrt.trtexec import trtexec_command

    if trt_version is None:
        if not tensorrt_available():
            raise ConfigError("--print-trtexec needs the TensorRT version, and tensorrt is not importable here",
                              "pass --trt-version (e.g. 8.5.2.2 on JetPack 5.1)")
        trt_version = str(import_tensorrt().__version__)
    onnx, resolved, cache = bundle_build_inputs(bundle, options, int(trt_version.split(".")[0]))
    plan = Path(bundle.engine_cache_dir) / f"{resolved.precision}.plan"
    cmd = trtexec_command(onnx, plan, resolved, trt_version, calib_cache=cache,
                          int8_source=resolved.int8_source if resolved.precision == "int8" else None)
    return [shlex.quote(part) for part in cmd]
