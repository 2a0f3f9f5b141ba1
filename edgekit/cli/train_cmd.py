"""``edgekit train``: training commands (``obb``: YOLOv8-OBB with DINOv3 feature distillation).

Thin: parse options, build the typed config (CLI ``key=value`` > config file > defaults), call
:func:`edgekit.train.obb.train_obb`, print where the run went. Heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import click


@click.group()
def train() -> None:
    """Train a model into runs/<run_id>/ (checkpoints, reports, signal maps)."""


@train.command("obb", context_settings={"ignore_unknown_options": True})
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML or JSON config (see edgekit.train.obb.ObbTrainConfig).")
@click.option("--run-id", default=None, help="Run directory name under `project` (default: a fresh id).")
@click.option("--resume", is_flag=True, help="Continue the run's interrupted stage/epoch from checkpoints/last.pt.")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load student=/last.pt without the class allow-list (it may run code): only for files you trust.")
@click.option("--print-config", is_flag=True, help="Print the resolved config as YAML and exit (nothing is trained).")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def obb(config_path: Optional[Path], run_id: Optional[str], resume: bool, trust_checkpoint: bool, print_config: bool,
        overrides: Tuple[str, ...]) -> None:
    """YOLOv8-OBB (Ultralytics) distilled from a frozen DINOv3 teacher, stage A then stage B.

    OVERRIDES are key=value (dotted for nested keys, e.g. imgsz=320, teacher.imgsz=320, stages.a.epochs=5);
    every key is in docs/config.md. `--run-id ID --resume` without --config continues with the run's
    reports/config_resolved.yaml.
    """
    check_override_shape(overrides)
    from edgekit.train.obb.config import load_train_config
    from edgekit.train.run import check_run_id

    if run_id is not None:
        check_run_id(run_id)  # before it is joined to any path
    if resume and config_path is None and run_id:  # resume alone: the run's own resolved config
        project = next((o.split("=", 1)[1] for o in overrides if o.startswith("project=")), "runs")
        saved = Path(project) / run_id / "reports" / "config_resolved.yaml"
        if not saved.is_file() and not any(o.startswith("data=") for o in overrides):
            from edgekit.core.errors import ConfigError

            raise ConfigError(f"nothing to resume: {saved} does not exist",
                              "check --run-id and project=, or pass --config")
        config_path = saved if saved.is_file() else None
    cfg = load_train_config(config_path, overrides)
    if print_config:
        from edgekit.core.config import dump_config

        click.echo(dump_config(cfg), nl=False)
        return
    from edgekit.train.obb import train_obb

    result = train_obb(cfg, run_id=run_id, resume=resume, trust_checkpoint=trust_checkpoint)
    click.echo(f"run: {result.run_dir}")
    click.echo(f"best: {result.best}")
    metrics = {k: v for k, v in result.final_metrics.items() if k.startswith("metrics/")}
    if metrics:
        click.echo("final: " + ", ".join(f"{k.split('/', 1)[1]}={v:.4f}" for k, v in sorted(metrics.items())))


def check_override_shape(overrides: Tuple[str, ...]) -> None:
    """Usage error (exit 2) for an override that is not key=value, e.g. ``--epochs 3``, naming the key to write."""
    for i, item in enumerate(overrides):
        if item.startswith("-"):
            name, _, value = item.lstrip("-").partition("=")
            nxt = overrides[i + 1] if i + 1 < len(overrides) else ""
            if not value and nxt and "=" not in nxt and not nxt.startswith("-"):
                value = nxt
            raise click.UsageError(f"{item.split('=', 1)[0]} is not an option of `train obb`; config keys are "
                                   f"key=value overrides: write {suggest_override(name, value or '...')}")
        if "=" not in item:
            raise click.UsageError(f"override '{item}' is not key=value; write e.g. imgsz=320 "
                                   "(every key: docs/config.md, or --print-config)")


def suggest_override(name: str, value: str) -> str:
    """The override that sets what ``--name value`` meant: a real key of the train config."""
    from edgekit.core.config import closest_key
    from edgekit.train.obb.config import ObbTrainConfig, StageConfig, _default_stages

    key = name.replace("-", "_")
    if key in ObbTrainConfig.model_fields:
        return f"{key}={value}"
    if key in StageConfig.model_fields:  # epochs, lr0, freeze: one per stage
        stages = [s.name for s in _default_stages()]
        return " ".join(f"stages.{s}.{key}={value}" for s in stages) + " (each stage has its own)"
    for section in ("teacher", "distillation", "logging"):
        model = ObbTrainConfig.model_fields[section].annotation
        if key in getattr(model, "model_fields", {}):
            return f"{section}.{key}={value}"
    hint = closest_key(key, list(ObbTrainConfig.model_fields))
    return f"{hint}={value}" if hint else f"{key}={value} with a key from docs/config.md"
