"""``edgekit demo``: the main job on an embedded synthetic default.

Runs every stage that exists, in order, on data edgekit makes itself (nothing is downloaded):
synthesise -> check -> train (distilled OBB, random teacher, CPU) -> export (ONNX, INT8 Q/DQ,
calibration cache, bundle) and ends with a results summary. The work is done by the stages'
library functions (``edgekit.demo``); this command only parses options and prints.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.command("demo")
@click.option("--out", "out_dir", type=click.Path(path_type=Path), default=Path("edgekit-demo"),
              show_default=True, help="Working directory for the demo's dataset, run and bundle.")
@click.option("--profile", type=click.Choice(["quick", "standard"]), default="standard", show_default=True,
              help="quick: a minute-scale smoke run; standard: enough training for meaningful mAP.")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out_dir: Path, profile: str, seed: int) -> None:
    """Run synth -> check -> train -> export on CPU and print a results summary."""
    from edgekit.demo import run_demo

    summary = run_demo(out_dir, profile=profile, seed=seed)
    click.echo(summary.render())
