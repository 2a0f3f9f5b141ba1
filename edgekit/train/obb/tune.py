"""``edgekit tune obb``: hyper-parameter search over ``train obb`` configs with Optuna.

Optuna does the search and the bookkeeping (TPE sampler, median pruner, RDB storage); edgekit adds
the search-space file, one normal edgekit run per trial and the ready ``best.yaml``:

- every trial is ``train_obb`` with the base config plus the sampled ``key=value`` overrides, into
  ``<project>/<study>/trial<NNNN>/`` (a full run directory: checkpoints, reports, trackers);
- the pruner gets each epoch's validation metric through ``train_obb(on_epoch=...)``;
- the study lives in an Optuna storage: SQLite at ``<project>/<study>/study.db`` by default, any
  RDB URL otherwise (PostgreSQL/MySQL let workers on several machines join one study);
- a killed worker leaves its trial RUNNING; Optuna's heartbeat marks such a stale trial FAILED
  when a worker next starts a trial, and ``RetryFailedTrialCallback`` re-queues its parameters, so
  the trial is rerun once and never counted twice (``MaxTrialsCallback`` counts finished trials);
- ``--n-jobs K`` starts K worker processes on the same storage (training is not thread-safe).
"""

from __future__ import annotations

import logging
import math
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any, Dict, List, Literal, Optional, Sequence, Tuple

import yaml
from pydantic import Field, model_validator

from edgekit.core.config import StrictModel, build_config, read_mapping
from edgekit.core.errors import ConfigError

from .config import ObbTrainConfig, load_train_config

LOG = logging.getLogger(__name__)
DEFAULT_METRIC = "metrics/mAP50-95(B)"


class ParamSpec(StrictModel):
    """One searched key: a float/int range (optionally log-scaled or stepped) or a list of choices."""

    type: Literal["float", "int", "categorical"]
    low: Optional[float] = None
    high: Optional[float] = None
    log: bool = False  # sample on a log scale (low must be > 0)
    step: Optional[float] = None  # discretisation step (float/int; not with log)
    choices: Optional[List[Any]] = None  # categorical values

    @model_validator(mode="after")
    def _shape(self) -> ParamSpec:
        if self.type == "categorical":
            if not self.choices:
                raise ValueError("a categorical parameter needs a non-empty 'choices' list")
            if self.low is not None or self.high is not None or self.log or self.step is not None:
                raise ValueError("a categorical parameter takes only 'choices' (no low/high/log/step)")
            return self
        if self.choices is not None:
            raise ValueError(f"'choices' belongs to categorical parameters, not {self.type}")
        if self.low is None or self.high is None or not (self.low < self.high):
            raise ValueError(f"a {self.type} parameter needs low < high, got low={self.low} high={self.high}")
        if self.log and (self.low <= 0 or self.step is not None):
            raise ValueError("log=true needs low > 0 and no step")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("an int parameter needs integer low and high")
        return self


class PrunerSpec(StrictModel):
    type: Literal["median", "none"] = "median"
    n_startup_trials: int = Field(default=2, ge=0)  # trials that finish before pruning starts
    n_warmup_steps: int = Field(default=1, ge=0)  # epochs of a trial before it may be pruned


class TuneSpace(StrictModel):
    """The search-space file (``--space``): ``params`` maps train-obb config keys to their ranges."""

    params: Dict[str, ParamSpec]  # key: a train obb override path (lr0 of a stage: stages.<name>.lr0)
    metric: str = DEFAULT_METRIC  # validation metric optimised and fed to the pruner
    direction: Literal["maximize", "minimize"] = "maximize"
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    seed: Optional[int] = None  # TPE seed (single worker: reproducible sampling)

    @model_validator(mode="after")
    def _non_empty(self) -> TuneSpace:
        if not self.params:
            raise ValueError("params must name at least one key to search")
        return self


def load_space(path: Path, base: Optional[Path], overrides: Sequence[str] = ()) -> TuneSpace:
    """Read and validate the space; every key is tried on the base config so a typo fails before any trial."""
    space = build_config(TuneSpace, read_mapping(Path(path)), Path(path).name, finite=True)
    for key, spec in space.params.items():
        value = spec.choices[0] if spec.type == "categorical" else (int(spec.low) if spec.type == "int" else spec.low)
        try:
            load_train_config(base, [*overrides, f"{key}={_override_text(value)}"])
        except ConfigError as e:
            raise ConfigError(f"{Path(path).name}: params.{key}: {e.message}", e.fix) from None
    return space


def _override_text(value: Any) -> str:
    text = yaml.safe_dump(value, default_flow_style=True).strip()
    return text[:-4].strip() if text.endswith("\n...") else text


def suggest(trial: Any, space: TuneSpace) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, p in space.params.items():
        if p.type == "categorical":
            out[key] = trial.suggest_categorical(key, p.choices)
        elif p.type == "int":
            out[key] = trial.suggest_int(key, int(p.low), int(p.high), step=int(p.step or 1), log=p.log)
        else:
            out[key] = trial.suggest_float(key, p.low, p.high, step=p.step, log=p.log)
    return out


def study_dir(base: ObbTrainConfig, study: str) -> Path:
    return Path(base.project) / study


def default_storage(base: ObbTrainConfig, study: str) -> str:
    return f"sqlite:///{(study_dir(base, study) / 'study.db').absolute()}"


def open_study(storage_url: str, study: str, space: TuneSpace, heartbeat: int) -> Any:
    import optuna
    from optuna.storages import RDBStorage, RetryFailedTrialCallback

    storage = RDBStorage(storage_url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat,
                         failed_trial_callback=RetryFailedTrialCallback(max_retry=1))
    pruner = (optuna.pruners.MedianPruner(n_startup_trials=space.pruner.n_startup_trials,
                                          n_warmup_steps=space.pruner.n_warmup_steps)
              if space.pruner.type == "median" else optuna.pruners.NopPruner())
    return optuna.create_study(study_name=study, storage=storage, load_if_exists=True, direction=space.direction,
                               sampler=optuna.samplers.TPESampler(seed=space.seed), pruner=pruner)


def _objective(base_path: Optional[Path], overrides: Sequence[str], space: TuneSpace, sdir: Path):
    import optuna

    from .api import train_obb

    def objective(trial: Any) -> float:
        params = suggest(trial, space)
        items = [*overrides, *(f"{k}={_override_text(v)}" for k, v in params.items()), f"project={sdir}"]
        cfg = load_train_config(base_path, items)
        run_id = f"trial{trial.number:04d}"
        trial.set_user_attr("run_dir", str(sdir / run_id))

        def on_epoch(epoch: int, metrics: Dict[str, float]) -> None:
            if space.metric in metrics and math.isfinite(metrics[space.metric]):
                trial.report(metrics[space.metric], epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")

        result = train_obb(cfg, run_id=run_id, on_epoch=on_epoch)
        value = result.final_metrics.get(space.metric)
        if value is None:
            raise ConfigError(f"trial {trial.number}: metric {space.metric!r} is not in the run's final validation "
                              f"({sorted(result.final_metrics)})", "set metric: in the space file to one of those")
        return float(value)

    return objective


def run_worker(base_path: Optional[Path], overrides: Sequence[str], space_path: Path, study: str,
               storage: Optional[str], trials: int, heartbeat: int) -> None:
    """One worker: run trials until the study holds ``trials`` finished (complete or pruned) trials."""
    from optuna.study import MaxTrialsCallback
    from optuna.trial import TrialState

    base = load_train_config(base_path, overrides)
    space = load_space(space_path, base_path, overrides)
    sdir = study_dir(base, study)
    sdir.mkdir(parents=True, exist_ok=True)
    st = open_study(storage or default_storage(base, study), study, space, heartbeat)
    done = (TrialState.COMPLETE, TrialState.PRUNED)
    if sum(t.state in done for t in st.get_trials(deepcopy=False)) >= trials:
        return
    st.optimize(_objective(base_path, overrides, space, sdir), n_trials=None,
                callbacks=[MaxTrialsCallback(trials, states=done)], gc_after_trial=True)


def tune_obb(base_path: Optional[Path], overrides: Sequence[str], space_path: Path, trials: int,
             study: Optional[str] = None, storage: Optional[str] = None, n_jobs: int = 1,
             heartbeat: int = 30) -> Dict[str, Any]:
    """Run (or resume) a study with ``n_jobs`` worker processes, then write best.yaml and the plots."""
    base = load_train_config(base_path, overrides)
    load_space(space_path, base_path, overrides)  # fail on a bad space before any worker starts
    study = study or Path(space_path).stem
    sdir = study_dir(base, study)
    sdir.mkdir(parents=True, exist_ok=True)
    storage = storage or default_storage(base, study)
    procs = [subprocess.Popen(_worker_argv(base_path, overrides, space_path, study, storage, trials, heartbeat))
             for _ in range(max(0, n_jobs - 1))]
    try:
        run_worker(base_path, overrides, space_path, study, storage, trials, heartbeat)
    finally:
        codes = [p.wait() for p in procs]
    if any(codes):
        LOG.warning("worker exit codes %s", codes)
    return summarise(base, study, storage, sdir)


def _worker_argv(base_path: Optional[Path], overrides: Sequence[str], space: Path, study: str, storage: str,
                 trials: int, heartbeat: int) -> List[str]:
    argv = [sys.executable, "-m", "edgekit", "tune", "obb", "--worker", "--space", str(space), "--study", study,
            "--storage", storage, "--trials", str(trials), "--heartbeat", str(heartbeat)]
    if base_path:
        argv += ["--config", str(base_path)]
    return argv + list(overrides)


def summarise(base: ObbTrainConfig, study: str, storage: str, sdir: Path) -> Dict[str, Any]:
    """best.yaml (the best trial's resolved config, project reset to the base's), plots, a summary."""
    import optuna
    from optuna.trial import TrialState

    st = optuna.load_study(study_name=study, storage=storage)
    trials = st.get_trials(deepcopy=False)
    states = {s.name: sum(t.state == s for t in trials) for s in TrialState}
    summary: Dict[str, Any] = {"study": study, "storage": storage, "trials": {k: v for k, v in states.items() if v}}
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    if not complete:
        summary["notes"] = ["no trial completed: no best.yaml"]
        return summary
    best = st.best_trial
    resolved = Path(best.user_attrs["run_dir"]) / "reports" / "config_resolved.yaml"
    data = read_mapping(resolved)
    data["project"] = base.project
    (sdir / "best.yaml").write_text(f"# edgekit tune: study {study}, trial {best.number}, {best.value}\n"
                                    + yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    summary.update(best_trial=best.number, best_value=best.value, best_params=best.params,
                   best_yaml=str(sdir / "best.yaml"), plots=write_plots(st, sdir))
    return summary


def write_plots(st: Any, sdir: Path) -> Dict[str, Optional[str]]:
    """Optuna's optimisation-history and parameter-importance plots (matplotlib); None with a reason."""
    out: Dict[str, Optional[str]] = {}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from optuna.visualization import matplotlib as ovm
    except ImportError as e:
        LOG.warning("plots skipped: %s", e)
        return {"history": None, "importance": None}
    for name, fn in (("history", ovm.plot_optimization_history), ("importance", ovm.plot_param_importances)):
        try:
            with warnings.catch_warnings():  # Optuna flags its matplotlib plots "experimental" on every call
                warnings.simplefilter("ignore")
                ax = fn(st)
            fig = ax.figure if hasattr(ax, "figure") else ax.flat[0].figure
            fig.savefig(str(sdir / f"{name}.png"), bbox_inches="tight")
            plt.close(fig)
            out[name] = str(sdir / f"{name}.png")
        except Exception as e:  # e.g. importance needs two completed trials with differing params
            LOG.warning("%s plot skipped: %s", name, str(e).splitlines()[0] if str(e) else type(e).__name__)
            out[name] = None
    return out


def describe(summary: Dict[str, Any]) -> List[Tuple[str, Any]]:
    return [(k, summary[k]) for k in ("study", "trials", "best_trial", "best_value", "best_params", "best_yaml",
                                      "plots", "notes") if k in summary]


__all__ = ["TuneSpace", "ParamSpec", "load_space", "tune_obb", "run_worker", "summarise", "open_study"]
