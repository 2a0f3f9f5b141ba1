"""The run contract shared by every trainer: the layout of ``runs/<run_id>/`` and its reports.

::

    runs/<run_id>/checkpoints/{last,best}.pt      written atomically (kill -9 leaves a loadable last.pt)
    runs/<run_id>/reports/train_metrics.jsonl     one JSON object per epoch
    runs/<run_id>/reports/val_metrics.jsonl       one JSON object per validation (+ the final one)
    runs/<run_id>/reports/config_resolved.yaml    the resolved config (``data:`` = the dataset root)
    runs/<run_id>/reports/run_meta.json           versions, git sha, host, seed, stage timings, teacher
    runs/<run_id>/signal_maps/                    PNGs written during training

No heavy imports here: the export stage reads runs on machines without torch.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from edgekit.core.atomic import write_json_atomic, write_text_atomic
from edgekit.core.errors import ConfigError
from edgekit.core.outdir import owned_by, prepare_output, write_marker

PathLike = Union[str, "os.PathLike[str]"]
WRITER = "train"  # the run directory's output marker (edgekit.core.outdir)


@dataclass
class TrainResult:
    """Where a finished run's artifacts are and its final validation metrics (OBB and RefDet alike)."""

    run_dir: Path
    best: Path
    last: Path
    final_metrics: Dict[str, Any] = field(default_factory=dict)


def new_run_id(prefix: str = "obb") -> str:
    """A sortable, unique run id, e.g. ``obb-20261121-142501-3fa2``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return f"{prefix}-{stamp}-{uuid.uuid4().hex[:4]}"


def check_run_id(run_id: str) -> str:
    """A run id is one plain directory name: ``x/exp1``, ``..``, ``/abs`` or "" would put the run (and its
    "already has checkpoints" guard) somewhere else than ``project/<run_id>``."""
    bad = (not run_id or run_id != run_id.strip() or any(c in run_id for c in "/\\\0")
           or run_id in (".", "..") or os.path.isabs(run_id))
    if bad:
        raise ConfigError(f"--run-id {run_id!r} is not a plain directory name (no '/', '\\', '..', absolute "
                          "path or empty name)", "pass --run-id like exp1")
    return run_id


class RunDir:
    """Paths of one run; creating it makes the directories, nothing else."""

    def __init__(self, root: PathLike) -> None:
        self.root = Path(root).absolute()

    @classmethod
    def create(cls, project: PathLike, run_id: str) -> RunDir:
        """Make the run's directories and its output marker (check the target with
        ``edgekit.core.outdir.prepare_output`` first: a run never goes into a directory edgekit did not write)."""
        run = cls(Path(project) / check_run_id(run_id))
        run.root.mkdir(parents=True, exist_ok=True)
        if not owned_by(run.root, WRITER):  # first: a kill right after leaves a run a re-run may reuse
            write_marker(run.root, WRITER)
        for d in (run.checkpoints, run.reports, run.signal_maps):
            d.mkdir(parents=True, exist_ok=True)
        return run

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def signal_maps(self) -> Path:
        return self.root / "signal_maps"

    @property
    def last(self) -> Path:
        return self.checkpoints / "last.pt"

    @property
    def best(self) -> Path:
        return self.checkpoints / "best.pt"

    @property
    def train_metrics(self) -> Path:
        return self.reports / "train_metrics.jsonl"

    @property
    def val_metrics(self) -> Path:
        return self.reports / "val_metrics.jsonl"

    @property
    def config_resolved(self) -> Path:
        return self.reports / "config_resolved.yaml"

    @property
    def run_meta(self) -> Path:
        return self.reports / "run_meta.json"

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r})"


# -- JSONL reports -------------------------------------------------------------------------------
def append_jsonl(path: PathLike, record: Dict[str, Any]) -> None:
    """Append one record as one line with a single write, so a kill leaves at most a torn last line."""
    line = (json.dumps(record, default=_json_default) + "\n").encode("utf-8")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(str(path), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_jsonl(path: PathLike) -> List[Dict[str, Any]]:
    """Records of a JSONL file; a torn (unparseable) line left by a kill is skipped."""
    path = Path(path)
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


def keep_jsonl(path: PathLike, keep: Callable[[Dict[str, Any]], bool]) -> None:
    """Rewrite a JSONL file atomically with only the records ``keep`` accepts (used on resume)."""
    path = Path(path)
    if path.is_file():
        kept = [r for r in read_jsonl(path) if keep(r)]
        write_text_atomic(path, "".join(json.dumps(r, default=_json_default) + "\n" for r in kept))


def _json_default(o: Any) -> Any:
    for attr in ("item", "tolist"):  # numpy / torch scalars and arrays
        if hasattr(o, attr):
            try:
                return getattr(o, attr)()
            except (TypeError, ValueError, RuntimeError):
                pass
    return str(o)


# -- run_meta.json -------------------------------------------------------------------------------
def git_sha(cwd: Optional[PathLike] = None) -> Optional[str]:
    """The commit of the source tree edgekit runs from (None outside git)."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=str(where), capture_output=True, text=True,
                             timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() or None) if out.returncode == 0 else None


def package_versions(names: Sequence[str] = ()) -> Dict[str, Optional[str]]:
    """Installed versions of ``names`` (None when absent), plus python and edgekit."""
    from importlib import metadata

    out: Dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in ["edgekit", *names]:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def host_info() -> Dict[str, Any]:
    return {"hostname": socket.gethostname(), "platform": platform.platform(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "argv": list(sys.argv)}


def read_run_meta(run: RunDir) -> Dict[str, Any]:
    try:
        data = json.loads(run.run_meta.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def update_run_meta(run: RunDir, **fields: Any) -> Dict[str, Any]:
    """Merge ``fields`` into run_meta.json (dicts merge one level deep) and write it atomically."""
    meta = read_run_meta(run)
    for key, value in fields.items():
        if isinstance(value, dict) and isinstance(meta.get(key), dict):
            meta[key] = {**meta[key], **value}
        else:
            meta[key] = value
    meta["updated"] = _dt.datetime.now().astimezone().isoformat()
    write_json_atomic(run.run_meta, json.loads(json.dumps(meta, default=_json_default)))
    return meta


# -- starting and resuming a run (every refusal happens before anything is written) -------------------
def flatten_config(d: Dict[str, Any], prefix: str = "", opaque: Sequence[str] = ()) -> Dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``; mappings under an ``opaque`` key stay one value."""
    out: Dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and k not in opaque:
            out.update(flatten_config(v, key + ".", opaque))
        else:
            out[key] = v
    return out


def check_saved_config(config_cls: Any, cfg: Any, run: RunDir, mutable: Sequence[str],
                       opaque: Sequence[str] = ()) -> None:
    """:func:`check_resume_config` of ``cfg`` against the run's config_resolved.yaml read as ``config_cls``
    (a pydantic model); nothing to compare when the report is missing, unreadable or outdated."""
    from edgekit.core.config import read_mapping

    if not run.config_resolved.is_file():
        return
    try:
        saved = config_cls.model_validate(read_mapping(run.config_resolved)).model_dump(mode="json")
    except Exception:  # an unreadable or outdated report: nothing to compare against
        return
    check_resume_config(saved, cfg.model_dump(mode="json"), run, mutable, opaque=opaque)


def check_resume_config(saved: Dict[str, Any], new: Dict[str, Any], run: RunDir, mutable: Sequence[str],
                        opaque: Sequence[str] = ()) -> None:
    """ConfigError naming the first key of ``new`` that differs from the run's saved config (both as
    ``model_dump(mode="json")``), except keys under ``mutable`` (where and how fast the run executes).
    A resume continues what was started; a silently changed config would make config_resolved.yaml lie."""
    old, cur = flatten_config(saved, opaque=opaque), flatten_config(new, opaque=opaque)
    for key in sorted(set(old) | set(cur)):
        if key.split(".")[0] in mutable or key in mutable or old.get(key) == cur.get(key):
            continue
        raise ConfigError(f"--resume with a changed config: {key} is {cur.get(key)!r}, the run "
                          f"{run.run_id} was started with {old.get(key)!r} ({run.config_resolved})",
                          "resume with the run's own config (drop the change), or start a new --run-id")


def restartable(run: RunDir) -> bool:
    """A run of ours killed before its first checkpoint: nothing trained, so it restarts from scratch."""
    return owned_by(run.root, WRITER) and not run.last.exists() and not run.best.exists()


_HELD: Dict[str, int] = {}  # run directory -> the open descriptor whose flock this process holds until it exits


def hold_run(root: Path) -> None:
    """Mark ``root`` as being trained by this process until it exits (kill -9 included: the kernel drops the
    lock); refuse a run another process holds. A flock on the directory itself, so no lock file is left."""
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock (the run directory still refuses a second set of checkpoints)
        return
    key = str(Path(root).absolute())
    if key in _HELD or not os.path.isdir(key):
        return
    fd = os.open(key, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"run {key} is being trained by another edgekit process",
                          "wait for it to finish (or stop it), or pass a new --run-id") from None
    _HELD[key] = fd


def release_run(root: Path) -> None:
    """Let go of :func:`hold_run` once training returned (a later run in this same process, or a subprocess
    it starts, may then continue the run)."""
    fd = _HELD.pop(str(Path(root).absolute()), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor drops its flock


def plan_run(run: RunDir, resume: bool, sources: Sequence[PathLike],
             on_resume: Callable[[RunDir], Dict[str, Any]]) -> tuple:
    """``(resume?, state)`` for starting ``run``: ``on_resume(run)`` reads and checks last.pt's state (and the
    config) when resuming; a new run never goes into a directory edgekit did not write nor into/around the
    ``sources`` (the dataset), and never over a run that has checkpoints."""
    import logging

    state: Dict[str, Any] = {}
    hold_run(run.root)  # before anything reads or rewrites the run (the caller holds it again once created)
    if resume and not run.last.exists() and restartable(run):
        logging.getLogger(__name__).warning("run %s was stopped before its first checkpoint: restarting it from "
                                            "epoch 0", run.root)
        resume = False
    elif resume:
        if not run.last.exists():
            raise ConfigError(f"nothing to resume: {run.last} does not exist", "start the run without --resume")
        state = on_resume(run)
    elif run.last.exists():
        raise ConfigError(f"run {run.root} already has checkpoints", "pass --resume, or a new --run-id")
    if not resume:
        prepare_output(run.root, WRITER, flag="--run-id", sources=list(sources))
        hold_run(run.root)  # the directory may exist only now
    return resume, state


__all__ = ["TrainResult", "RunDir", "hold_run", "release_run", "flatten_config", "check_resume_config", "check_saved_config", "restartable", "plan_run", "WRITER", "check_run_id", "new_run_id", "append_jsonl", "read_jsonl", "keep_jsonl", "git_sha", "package_versions",
           "host_info", "read_run_meta", "update_run_meta"]
