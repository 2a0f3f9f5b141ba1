"""What ``edgekit export`` was pointed at: a run directory or a bare checkpoint, and its dataset.

A run directory is ``runs/<id>/`` holding ``checkpoints/best.pt`` and ``reports/config_resolved.yaml``
whose ``data:`` names the dataset root; val and calibration images default from that dataset. A bare
checkpoint falls back to the ``data`` path Ultralytics stores in its ``train_args``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional

from edgekit.core.config import read_mapping
from edgekit.core.errors import ConfigError, DataError, ModelError

RUN_CHECKPOINT = Path("checkpoints") / "best.pt"
RUN_CONFIG = Path("reports") / "config_resolved.yaml"
_DATA_KEYS = ("root", "path", "data", "dataset")  # accepted spellings when `data:` is a mapping


@dataclass
class ExportSource:
    checkpoint: Path
    run_dir: Optional[Path] = None
    run_id: Optional[str] = None
    dataset_root: Optional[Path] = None  # a directory holding data.yaml (or the yaml itself)


def resolve_source(path: Path) -> ExportSource:
    """Classify ``path`` as a run directory or a checkpoint file; fail with the fix if neither."""
    path = Path(path)
    if path.is_dir():
        ckpt = path / RUN_CHECKPOINT
        if not ckpt.is_file():
            raise ModelError(f"run directory {path} has no {RUN_CHECKPOINT}",
                             "pass a finished run (runs/<id>/) or a checkpoint .pt file")
        return ExportSource(ckpt, run_dir=path, run_id=path.name, dataset_root=_run_dataset_root(path))
    if path.is_file():
        if path.suffix.lower() != ".pt":
            raise ModelError(f"{path} is not a PyTorch checkpoint (.pt)", "pass runs/<id>/ or an Ultralytics .pt file")
        run_dir = path.parent.parent if path.parent.name == "checkpoints" else None
        dataset = _run_dataset_root(run_dir) if run_dir is not None else None
        return ExportSource(path, run_dir=run_dir, run_id=run_dir.name if run_dir else None, dataset_root=dataset)
    raise ModelError(f"{path} does not exist", "pass a run directory (runs/<id>/) or a checkpoint .pt file")


def _run_dataset_root(run_dir: Path) -> Optional[Path]:
    cfg_path = run_dir / RUN_CONFIG
    if not cfg_path.is_file():
        return None
    try:
        cfg = read_mapping(cfg_path)
    except ConfigError:
        return None  # an unreadable report must not block export; images can still come from --calib-data
    return _data_path(cfg.get("data"), cfg_path.parent)


def _data_path(value: Any, base: Path) -> Optional[Path]:
    if isinstance(value, dict):
        value = next((value[k] for k in _DATA_KEYS if isinstance(value.get(k), str)), None)
    if not isinstance(value, str) or not value:
        return None
    p = Path(value).expanduser()
    return p if p.is_absolute() else (base / p)


def dataset_from_train_args(train_args: Dict[str, Any]) -> Optional[Path]:
    """The ``data`` yaml Ultralytics recorded at training time, if it still exists here."""
    data = train_args.get("data") if isinstance(train_args, dict) else None
    if isinstance(data, str) and data and Path(data).exists():
        return Path(data)
    return None


def load_layout(dataset_root: Optional[Path]):
    """The :class:`~edgekit.data.layout.DatasetLayout` at ``dataset_root``, or None if there is none."""
    if dataset_root is None:
        return None
    from edgekit.data.layout import DatasetLayout

    try:
        return DatasetLayout.load(dataset_root)
    except DataError:
        return None


def split_images(layout, split: str) -> List[Path]:
    if layout is None or split not in layout.splits:
        return []
    try:
        return layout.image_paths(split)
    except DataError:
        return []


__all__ = ["ExportSource", "resolve_source", "dataset_from_train_args", "load_layout", "split_images",
           "RUN_CHECKPOINT", "RUN_CONFIG"]
