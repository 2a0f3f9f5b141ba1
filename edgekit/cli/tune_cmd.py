"""``edgekit tune obb``: Optuna search over ``train obb`` configs (see edgekit.train.obb.tune).

Thin: options -> :func:`edgekit.train.obb.tune.tune_obb`; ``--worker`` is the internal entry of the
extra worker processes ``--n-jobs`` starts (they share the study's storage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import click


@click.group()
def tune() -> None:
    """Hyper-parameter search (Optuna: TPE sampler, median pruner, resumable RDB storage)."""


@tune.command("obb", context_settings={"ignore_unknown_options": True})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Base train obb config (YAML); the space's keys are set on top of it.")
@click.option("--space", "space_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Search-space YAML (params: {key: {type: float|int|categorical, low, high, log, choices}}).")
@click.option("--trials", required=True, type=click.IntRange(1), help="Finished trials the study should hold.")
@click.option("--study", default=None, help="Study name and folder under project (default: the space file's stem).")
@click.option("--storage", default=None,
              help="Optuna storage URL (default sqlite:///<project>/<study>/study.db; postgresql://... for several hosts).")
@click.option("--n-jobs", type=click.IntRange(1), default=1, show_default=True,
              help="Worker processes sharing the storage on this machine.")
@click.option("--heartbeat", type=click.IntRange(1), default=30, show_default=True,
              help="Seconds between trial heartbeats; a trial silent for 3x this is failed and rerun.")
@click.option("--worker", is_flag=True, hidden=True)
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def obb(config_path: Optional[Path], space_path: Path, trials: int, study: Optional[str], storage: Optional[str],
        n_jobs: int, heartbeat: int, worker: bool, overrides: Tuple[str, ...]) -> None:
    """Every trial is a normal edgekit run under <project>/<study>/trial<NNNN>/; ends with best.yaml + plots.

    OVERRIDES are key=value for the base config (as in train obb). Re-running the same command resumes
    the study: finished trials are kept, a killed one is rerun.
    """
    from edgekit.cli.train_cmd import check_override_shape

    check_override_shape(overrides)
    from edgekit.train.obb import tune as t

    if worker:
        t.run_worker(config_path, overrides, space_path, study or space_path.stem, storage, trials, heartbeat)
        return
    summary = t.tune_obb(config_path, overrides, space_path, trials, study=study, storage=storage, n_jobs=n_jobs,
                         heartbeat=heartbeat)
    for key, value in t.describe(summary):
        click.echo(f"{key}: {value}")
