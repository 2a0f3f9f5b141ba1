"""Experiment trackers behind :class:`~edgekit.train.obb.monitoring.MetricSinks`: MLflow, TensorBoard, W&B.

Each opener returns a :class:`Tracker` (metrics, images, artifacts, close). One tracker run spans
every stage of an edgekit run and its resumes: the tracker's run id is kept in the run's
``run_meta.json`` (``mlflow_run_id``, ``wandb_run_id``) and reopened by the next stage or resume.

MLflow: ``logging.mlflow_tracking_uri`` (any URI MLflow accepts) or, by default, an SQLite file in the
run (``<run>/mlflow.db``, artifacts under ``<run>/mlartifacts``). SQLite rather than the ``./mlruns``
directory store because MLflow 3.x refuses that store unless ``MLFLOW_ALLOW_FILE_STORE`` is set
(it is in maintenance mode); a ``file:`` URI still works when the user sets that variable.
The client API (``MlflowClient``) is used instead of ``mlflow.start_run`` so no global active run
leaks into the caller's process.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

from edgekit.core.image_files import imread

from ..run import RunDir, read_run_meta, update_run_meta


@dataclass
class Tracker:
    """One backend: each callable may raise; MetricSinks turns failures into warnings."""
    log: Callable[[Dict[str, float], int], None]
    close: Callable[[bool], None]  # close(final): final=True at the end of the last stage
    image: Optional[Callable[[str, Path, int], None]] = None
    artifact: Optional[Callable[[Path, str], None]] = None


def flatten_config(d: Dict[str, Any], prefix: str = "") -> Dict[str, str]:
    """Nested config -> ``{"distillation.weight": "1.0", ...}`` (tracker params are flat strings)."""
    out: Dict[str, str] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten_config(v, key + "."))
        elif isinstance(v, list) and v and all(isinstance(x, dict) and "name" in x for x in v):
            for item in v:  # stages: stages.a.epochs, stages.b.lr0, ...
                out.update(flatten_config({kk: vv for kk, vv in item.items() if kk != "name"},
                                          f"{key}.{item['name']}."))
        else:
            out[key] = str(v)
    return out


def default_mlflow_uri(run: RunDir) -> str:
    return f"sqlite:///{run.root / 'mlflow.db'}"


def open_mlflow(run: RunDir, config: Dict[str, Any], uri: Optional[str], experiment: str) -> Tracker:
    import mlflow  # noqa: F401  (ImportError -> "not installed" note)
    from mlflow.entities import Metric, Param
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri or default_mlflow_uri(run))
    run_id = read_run_meta(run).get("mlflow_run_id")
    if run_id:  # the next stage or a resume: the same MLflow run
        client.update_run(run_id, status="RUNNING")
    else:
        exp = client.get_experiment_by_name(experiment)
        exp_id = exp.experiment_id if exp else client.create_experiment(
            experiment, artifact_location=None if uri else (run.root / "mlartifacts").as_uri())
        run_id = client.create_run(exp_id, run_name=run.run_id, tags={"edgekit.run_dir": str(run.root)}).info.run_id
        params = [Param(k, v[:6000]) for k, v in sorted(flatten_config(config).items())]
        for i in range(0, len(params), 100):  # log_batch takes at most 100 params per call
            client.log_batch(run_id, params=params[i:i + 100])
        update_run_meta(run, mlflow_run_id=run_id, mlflow_tracking_uri=uri or default_mlflow_uri(run))

    def log(m: Dict[str, float], step: int) -> None:
        import time

        ts = int(time.time() * 1000)
        client.log_batch(run_id, metrics=[Metric(k, v, ts, step) for k, v in m.items()])

    def artifact(path: Path, subdir: str) -> None:
        client.log_artifact(run_id, str(path), artifact_path=subdir or None)

    def close(final: bool) -> None:
        client.set_terminated(run_id, "FINISHED" if final else "RUNNING")

    return Tracker(log=log, close=close, image=lambda tag, path, step: artifact(path, "signal_maps"),
                   artifact=artifact)


def open_tensorboard(run: RunDir) -> Tracker:
    from torch.utils.tensorboard import SummaryWriter  # needs the tensorboard package

    writer = SummaryWriter(str(run.root / "tensorboard"))  # every stage and resume appends an events file here

    def log(m: Dict[str, float], step: int) -> None:
        for k, v in m.items():
            writer.add_scalar(k, v, step)
        writer.flush()

    def image(tag: str, path: Path, step: int) -> None:
        bgr = imread(path)
        if bgr is not None:
            writer.add_image(tag, bgr[:, :, ::-1].copy(), step, dataformats="HWC")
            writer.flush()

    return Tracker(log=log, close=lambda final: writer.close(), image=image)


def wandb_run_id(run: RunDir) -> str:
    return re.sub(r"[^0-9A-Za-z_-]", "-", run.run_id)


def open_wandb(run: RunDir, config: Dict[str, Any], mode: str, project: str) -> Tracker:
    import wandb

    run_id = read_run_meta(run).get("wandb_run_id") or wandb_run_id(run)
    wb = wandb.run
    if wb is None or wb.id != run_id:  # stage B in the same process keeps stage A's W&B run open
        wb = wandb.init(project=project, name=run.run_id, id=run_id, resume="allow", dir=str(run.root), mode=mode,
                        config=config)
        update_run_meta(run, wandb_run_id=run_id, wandb_mode=mode)

    def image(tag: str, path: Path, step: int) -> None:
        wb.log({tag: wandb.Image(str(path))}, step=step)

    def close(final: bool) -> None:
        if final:
            wb.finish()

    return Tracker(log=lambda m, step: wb.log(m, step=step), close=close, image=image)


__all__ = ["Tracker", "flatten_config", "open_mlflow", "open_tensorboard", "open_wandb", "default_mlflow_uri"]
