"""``edgekit train``: training commands (``obb``: YOLOv8-OBB with DINOv3 feature distillation; ``refdet``: the
few-shot reference detector).

Thin: parse options, build the typed config (CLI ``key=value`` > config file > defaults), call
:func:`edgekit.train.obb.train_obb` or :func:`edgekit.train.fewshot.api.train_refdet`, print where the run went. Heavy imports happen inside the command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Tuple

import click

from edgekit.cli.params import FiniteFloatRange


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


@train.command("refdet", context_settings={"ignore_unknown_options": True})
@click.option("--data", default=None, help="RefDet root, or a root with train/ (and val/ or test/ for validation).")
@click.option("--stage", type=click.Choice(["1", "2", "3"]), default=None,
              help="1 base detection, 2 episodic meta-learning (default), 3 triplet fine-tuning from a stage-2 checkpoint.")
@click.option("--weights", default=None, help="RefDet checkpoint to start from (stage 3: the stage-2 best.pt).")
@click.option("--epochs", type=click.IntRange(min=1), default=None)
@click.option("--imgsz", type=click.IntRange(min=32), default=None, help="Frame side (multiple of 32).")
@click.option("--device", default=None, help="cpu, cuda or a GPU index.")
@click.option("--use-triplet", is_flag=True, default=None, help="Stage 3: add the triplet loss.")
@click.option("--triplet-ratio", type=FiniteFloatRange(0, 1), default=None,
              help="Stage 3: triplet share of the metric loss (contrastive weights x (1 - ratio)).")
@click.option("--negative-strategy", type=click.Choice(["background", "cross_class", "mixed"]), default=None,
              help="Triplet negatives.")
@click.option("--save-interval", type=click.IntRange(min=0), default=None,
              help="Also keep checkpoints/epoch<NNN>.pt every N epochs (0: never).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="YAML or JSON config (keys: docs/refdet.md).")
@click.option("--run-id", default=None, help="Run directory name under `project` (default: a fresh id).")
@click.option("--resume", is_flag=True, help="Continue the run from checkpoints/last.pt (exactly: same batches, same state).")
@click.option("--trust-checkpoint", is_flag=True,
              help="Load --weights/last.pt/model.weights without the class allow-list (it may run code).")
@click.option("--print-config", is_flag=True, help="Print the resolved config as YAML and exit (nothing is trained).")
@click.argument("overrides", nargs=-1, type=click.UNPROCESSED)
def refdet(data: Optional[str], stage: Optional[str], weights: Optional[str], epochs: Optional[int],
           imgsz: Optional[int], device: Optional[str], use_triplet: Optional[bool], triplet_ratio: Optional[float],
           negative_strategy: Optional[str], save_interval: Optional[int], config_path: Optional[Path],
           run_id: Optional[str], resume: bool, trust_checkpoint: bool, print_config: bool,
           overrides: Tuple[str, ...]) -> None:
    """Few-shot reference detector: YOLOv8n + DINOv2 reference encoder + fusion, trained on episodes.

    OVERRIDES are key=value (dotted for nested keys, e.g. episode.n_way=4 loss.cpe_weight=0.2); every key is
    in docs/refdet.md. Flags win over overrides, overrides over --config. `--run-id ID --resume` without
    --config continues with the run's reports/config_resolved.yaml.
    """
    check_override_shape(overrides, "train refdet", refdet_suggest)
    from edgekit.train.fewshot.config import load_refdet_config
    from edgekit.train.run import check_run_id

    if run_id is not None:
        check_run_id(run_id)
    flags = {"data": data, "stage": int(stage) if stage else None, "weights": weights, "epochs": epochs,
             "imgsz": imgsz, "device": device, "use_triplet": use_triplet, "triplet_ratio": triplet_ratio,
             "negative_strategy": negative_strategy, "save_interval": save_interval}
    flags = {k: v for k, v in flags.items() if v is not None}
    if resume and config_path is None and run_id:
        config_path = _saved_config(overrides, run_id, has_data="data" in flags or any(o.startswith("data=") for o in overrides))
    cfg = load_refdet_config(config_path, overrides, flags)
    if print_config:
        from edgekit.core.config import dump_config

        click.echo(dump_config(cfg), nl=False)
        return
    from edgekit.train.fewshot.api import train_refdet

    result = train_refdet(cfg, run_id=run_id, resume=resume, trust_checkpoint=trust_checkpoint)
    click.echo(f"run: {result.run_dir}")
    click.echo(f"best: {result.best}")
    shown = {k: v for k, v in result.final_metrics.items() if k in ("ap50", "st_iou", "val_loss", "train_loss")}
    if shown:
        click.echo("final: " + ", ".join(f"{k}={v:.4f}" for k, v in shown.items()))


def _saved_config(overrides: Tuple[str, ...], run_id: str, has_data: bool) -> Optional[Path]:
    """The run's own resolved config for `--run-id ID --resume` without --config."""
    project = next((o.split("=", 1)[1] for o in overrides if o.startswith("project=")), "runs")
    saved = Path(project) / run_id / "reports" / "config_resolved.yaml"
    if not saved.is_file() and not has_data:
        from edgekit.core.errors import ConfigError

        raise ConfigError(f"nothing to resume: {saved} does not exist", "check --run-id and project=, or pass --config")
    return saved if saved.is_file() else None


def refdet_suggest(name: str, value: str) -> str:
    """The override that sets what ``--name value`` meant for `train refdet`."""
    from edgekit.core.config import closest_key
    from edgekit.train.fewshot.config import RefDetTrainConfig

    key = name.replace("-", "_")
    if key in RefDetTrainConfig.model_fields:
        return f"{key}={value}"
    for section, info in RefDetTrainConfig.model_fields.items():
        if key in getattr(info.annotation, "model_fields", {}):
            return f"{section}.{key}={value}"
    hint = closest_key(key, list(RefDetTrainConfig.model_fields))
    return f"{hint}={value}" if hint else f"{key}={value} with a key from docs/refdet.md"


def check_override_shape(overrides: Tuple[str, ...], command: str = "train obb",
                         suggest: Optional[Callable[[str, str], str]] = None) -> None:
    """Usage error (exit 2) for an override that is not key=value, e.g. ``--epochs 3``, naming the key to write."""
    suggest = suggest or suggest_override
    for i, item in enumerate(overrides):
        if item.startswith("-"):
            name, _, value = item.lstrip("-").partition("=")
            nxt = overrides[i + 1] if i + 1 < len(overrides) else ""
            if not value and nxt and "=" not in nxt and not nxt.startswith("-"):
                value = nxt
            raise click.UsageError(f"{item.split('=', 1)[0]} is not an option of `{command}`; config keys are "
                                   f"key=value overrides: write {suggest(name, value or '...')}")
        if "=" not in item:
            raise click.UsageError(f"override '{item}' is not key=value; write e.g. imgsz=320 "
                                   f"(every key: {'docs/refdet.md' if 'refdet' in command else 'docs/config.md'}, or --print-config)")


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
