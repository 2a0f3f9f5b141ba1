"""``edgekit demo``: the main job on an embedded synthetic default.

Runs every stage that exists, in order, on data edgekit makes itself (nothing is downloaded):
synthesise -> check -> train (distilled OBB, random teacher, CPU) -> export (ONNX, INT8 Q/DQ,
calibration cache, bundle) -> bench -> serve, then the few-shot RefDet part (synth drone videos ->
train stage 2 and 3 -> eval -> two-graph export -> bench), and ends with a results summary. The work is done by the stages'
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
    """Run synth -> check -> train -> export -> bench -> serve (OBB), then RefDet's synth -> train -> eval ->
    export -> bench, on CPU, and print a results summary."""
    from edgekit.core.errors import EdgekitError
    from edgekit.demo import run_demo

    try:
        summary = run_demo(out_dir, profile=profile, seed=seed)
    except EdgekitError as e:
        raise demo_error(e, out_dir) from None
    click.echo(summary.render())


DEMO_FLAGS = ("--out", "--profile", "--seed", "--help")


def demo_error(error, out_dir: Path):
    """``error`` with a fix the demo can act on: a stage's advice to pass ``--resume`` or ``--run-id``
    (flags of `train obb`, not of `demo`) becomes advice about the demo's own flags."""
    import re

    foreign = [f for f in re.findall(r"--[a-z][a-z0-9-]*", f"{error.message} {error.fix or ''}") if f not in DEMO_FLAGS]
    if not foreign:
        return error
    return type(error)(error.message.replace("--resume ", "").replace("--run-id ", "run id "),
                       f"pass `edgekit demo` a new --out DIR (or remove {out_dir} if it only holds an earlier demo)")
