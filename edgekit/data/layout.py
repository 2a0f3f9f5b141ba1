"""The on-disk layout of a YOLO dataset root and its ``data.yaml``.

One layout is shared by the synthetic generator, the converters, training, export and calibration::

    ROOT/data.yaml              path: <ABSOLUTE root>, train: images/train, val: images/val, names: {0: plane}
    ROOT/images/<split>/*.jpg
    ROOT/labels/<split>/*.txt   one object a line (YOLO-OBB or axis-aligned YOLO)

Label paths follow Ultralytics' rule (the last ``/images/`` becomes ``/labels/``, the suffix ``.txt``),
so whatever Ultralytics trains on, :meth:`DatasetLayout.label_path` points at the same file.
"""

from __future__ import annotations

import errno
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import yaml

from edgekit.core.atomic import write_text_atomic
from edgekit.core.errors import DataError
from edgekit.core.image_files import IMAGE_SUFFIXES, is_image_file

DEFAULT_SPLITS: Dict[str, str] = {"train": "images/train", "val": "images/val"}
DATA_YAML = "data.yaml"

NamesLike = Union[Mapping[int, str], Sequence[str]]


def _normalise_names(names: NamesLike, source: str = "names") -> Dict[int, str]:
    """Class names as ``{0: name, 1: name, ...}`` (Ultralytics accepts a list or a dict)."""
    if not isinstance(names, (Mapping, list, tuple)):  # a bare string or number is not a class list
        raise DataError(f"{source}: names must be a list or a mapping, got {names!r}",
                        "write names as {0: plane, 1: ship} or [plane, ship]")
    items = names.items() if isinstance(names, Mapping) else enumerate(names)
    try:
        out = {int(k): str(v) for k, v in items}
    except (TypeError, ValueError):
        raise DataError(f"{source}: class ids must be integers", "write names as {0: plane, 1: ship}") from None
    if sorted(out) != list(range(len(out))):
        raise DataError(f"{source}: class ids must be 0..{len(out) - 1} without gaps, got {sorted(out)}",
                        "renumber the classes from 0")
    return dict(sorted(out.items()))


def list_images(directory: Path) -> List[Path]:
    """Image files directly inside ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and is_image_file(p))


def broken_links(directory: Path) -> List[Tuple[Path, str]]:
    """Image-named entries of ``directory`` that are symlinks to nothing: (path, "dangling" or "looping").

    :func:`list_images` skips them (they are not files), so without this a label whose image is such a
    link would look like a label without an image at best, and vanish from training at worst.
    """
    found = []
    for p in sorted(Path(directory).iterdir()) if Path(directory).is_dir() else []:
        if is_image_file(p) and p.is_symlink() and not p.is_file():
            try:
                os.stat(str(p))
                reason = "not a file"
            except OSError as e:
                reason = "looping" if e.errno == errno.ELOOP else "dangling"
            found.append((p, reason))
    return found


def label_path_for(image_path: Path) -> Path:
    """Ultralytics' image -> label rule: the last ``images`` directory becomes ``labels``, suffix ``.txt``."""
    sep = os.sep
    text = str(image_path)
    marker = f"{sep}images{sep}"
    if marker in text:
        head, tail = text.rsplit(marker, 1)
        text = f"{head}{sep}labels{sep}{tail}"
    return Path(text).with_suffix(".txt")


@dataclass
class DatasetLayout:
    """A dataset root: class names and split -> image directory (relative to ``root``).

    >>> layout = DatasetLayout("/tmp/ds", ["plane", "ship"])
    >>> layout.names
    {0: 'plane', 1: 'ship'}
    >>> layout.label_path(Path("/tmp/ds/images/train/a.jpg")).as_posix()
    '/tmp/ds/labels/train/a.txt'
    """

    root: Path
    names: Dict[int, str]
    splits: Dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    # The data.yaml this layout was loaded from (its ``path:`` may point elsewhere); None: ROOT/data.yaml.
    source_yaml: Optional[Path] = field(default=None, compare=False)

    def __post_init__(self) -> None:
        self.root = Path(self.root).expanduser().absolute()
        self.names = _normalise_names(self.names)
        self.splits = {str(k): str(v) for k, v in self.splits.items()}

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def load(cls, root: Union[str, Path]) -> DatasetLayout:
        """Read ``ROOT/data.yaml`` (``root`` may also be the yaml file itself).

        Split paths resolve against the ``path:`` key, as in Ultralytics (see :func:`dataset_root`);
        a ``path:`` that no longer exists while the yaml's own directory holds the splits (a dataset
        that was moved) falls back to that directory. Each split must be one directory: a list of
        directories, which Ultralytics also reads, is refused by name.
        """
        root = Path(root)
        yaml_path = root if root.suffix in (".yaml", ".yml") else root / DATA_YAML
        if not yaml_path.is_file():
            raise DataError(f"{yaml_path} does not exist",
                            "point at a dataset root holding data.yaml (e.g. from `edgekit data synth obb`)")
        data = _read_yaml_mapping(yaml_path)
        if "names" not in data:
            raise DataError(f"{yaml_path} has no 'names' key", "add names: {0: <class name>, ...}")
        for key in ("train", "val", "test"):
            if data.get(key) is not None and not isinstance(data[key], str):
                what = "a list" if isinstance(data[key], (list, tuple)) else type(data[key]).__name__
                raise DataError(f"{yaml_path}: '{key}:' is {what}; edgekit reads one image directory per split",
                                f"put the {key} images in one directory and write {key}: images/{key}")
        splits = {k: str(data[k]) for k in ("train", "val", "test") if isinstance(data.get(k), str) and data[k]}
        if not splits:
            raise DataError(f"{yaml_path} names no split (train/val/test)", "add train: images/train")
        return cls(dataset_root(yaml_path, data.get("path"), splits.values()),
                   _normalise_names(data["names"], str(yaml_path)), splits, yaml_path.absolute())

    @classmethod
    def create(cls, root: Union[str, Path], names: NamesLike, splits: Iterable[str] = ("train", "val")
               ) -> DatasetLayout:
        """A layout with the standard ``images/<split>`` directories, created on disk (labels too)."""
        layout = cls(Path(root), names, {s: f"images/{s}" for s in splits})  # type: ignore[arg-type]
        for split in layout.splits:
            layout.image_dir(split).mkdir(parents=True, exist_ok=True)
            layout.label_dir(split).mkdir(parents=True, exist_ok=True)
        return layout

    @classmethod
    def from_images(cls, root: Union[str, Path], names: NamesLike, images: Mapping[str, Sequence[Path]],
                    link: bool = False) -> DatasetLayout:
        """Create a layout at ``root`` and copy (or symlink) each split's images into ``images/<split>``."""
        layout = cls.create(root, names, list(images))
        for split, paths in images.items():
            for path in paths:
                layout.add_image(split, Path(path), link=link)
        return layout

    def add_image(self, split: str, source: Path, link: bool = False) -> Path:
        """Copy (or symlink) one image into the split's directory; a second image of the same name fails."""
        target = self.image_dir(split) / Path(source).name
        if target.exists() or target.is_symlink():
            raise DataError(f"two images named {target.name} in split '{split}' ({source})",
                            "give every image of a split a unique file name")
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            target.symlink_to(Path(source).absolute())
        else:
            shutil.copyfile(source, target)
        return target

    # -- paths ----------------------------------------------------------------------------------
    @property
    def data_yaml(self) -> Path:
        """The user's data.yaml (the one loaded), else ``ROOT/data.yaml``: what error messages name."""
        return self.source_yaml if self.source_yaml is not None else self.root / DATA_YAML

    @property
    def nc(self) -> int:
        return len(self.names)

    def image_dir(self, split: str) -> Path:
        if split not in self.splits:
            raise DataError(f"split '{split}' is not in {self.data_yaml}",
                            f"use one of: {', '.join(self.splits)}")
        return self.root / self.splits[split]

    def label_dir(self, split: str) -> Path:
        return label_path_for(self.image_dir(split) / "x").parent

    def image_paths(self, split: str) -> List[Path]:
        """The split's image files, sorted by name."""
        directory = self.image_dir(split)
        if not directory.is_dir():
            raise DataError(f"image directory {directory} for split '{split}' does not exist",
                            f"create it or fix '{split}:' in {self.data_yaml}")
        return list_images(directory)

    def label_path(self, image_path: Union[str, Path]) -> Path:
        return label_path_for(Path(image_path))

    # -- writing --------------------------------------------------------------------------------
    def data_yaml_text(self) -> str:
        data: Dict[str, Any] = {"path": str(self.root)}
        data.update(self.splits)
        data["names"] = dict(self.names)
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def write_data_yaml(self, directory: Optional[Path] = None) -> Path:
        """Write ``data.yaml`` (atomically) with an ABSOLUTE ``path:`` pointing at :attr:`root`.

        ``directory`` writes the same text elsewhere, for a root being built under a temporary name
        that is renamed onto :attr:`root` afterwards.
        """
        target = Path(directory) / DATA_YAML if directory is not None else self.root / DATA_YAML
        return write_text_atomic(target, self.data_yaml_text())


def dataset_root(yaml_path: Path, path_key: Any, splits: Iterable[str] = ()) -> Path:
    """The directory a data.yaml's splits resolve against, by Ultralytics' rule for ``path:``.

    No ``path:`` (or an empty one): the yaml's directory. A relative ``path:`` is tried against the
    yaml's directory, then the working directory (Ultralytics resolves it against the latter). A
    ``path:`` that does not exist is refused by name, unless the yaml's own directory holds a split:
    then the dataset was moved with the ``path:`` edgekit wrote, and that directory is used.
    """
    here = yaml_path.parent.absolute()
    if path_key is None or str(path_key).strip() == "":
        return here
    given = Path(str(path_key)).expanduser()
    candidates = [given] if given.is_absolute() else [here / given, Path.cwd() / given]
    found = next((c for c in candidates if c.is_dir()), None)
    if found is not None:
        return Path(os.path.normpath(str(found.absolute())))
    if any((here / s).is_dir() for s in splits):
        return here
    raise DataError(f"{yaml_path}: 'path: {path_key}' is not a directory",
                    "fix path: (the dataset root the splits are relative to) or remove it")


# The splits `edgekit train obb` (Ultralytics) needs; data check checks them the same way.
TRAIN_SPLITS = ("train", "val")


def train_problems(layout: DatasetLayout) -> List[Any]:
    """What training needs of a loaded layout, as check issues (all errors): at least one class, a
    ``train`` and a ``val`` split, each an existing directory holding at least one image.

    The one rule set behind both ``edgekit data check`` and ``edgekit train obb``'s preflight, so a
    dataset check passes is one training accepts.
    """
    from .formats.base import error  # lazy: formats imports this module

    yaml_path = layout.data_yaml
    issues = []
    if layout.nc == 0:
        issues.append(error(yaml_path, _key_line(yaml_path, "names"), "no-classes",
                            "names is empty: a dataset needs at least one class"))
    for split in TRAIN_SPLITS:
        if split not in layout.splits:
            issues.append(error(yaml_path, 0, "missing-split",
                                f"no '{split}:' key: training needs a train and a val split"))
            continue
        directory = layout.image_dir(split)
        if not directory.is_dir():
            issues.append(error(yaml_path, _key_line(yaml_path, split), "missing-image",
                                f"image directory {directory} of split '{split}' does not exist"))
        elif not list_images(directory):
            issues.append(error(yaml_path, _key_line(yaml_path, split), "empty-split",
                                f"split '{split}' has no images in {directory} ({', '.join(IMAGE_SUFFIXES)})"))
        label_dir = layout.label_dir(split)
        if label_dir.exists() and not label_dir.is_dir():
            issues.append(label_dir_not_a_directory(label_dir, split))
    return issues


def label_dir_not_a_directory(label_dir: Path, split: str) -> Any:
    """The error for a file where a split's label directory belongs: training would silently see every
    image as background (Ultralytics finds no labels), so it is an error, not the no-labels warning."""
    from .formats.base import error

    return error(label_dir, 0, "label-dir-not-a-directory",
                 f"is a file, not the label directory of split '{split}' (one .txt per image); "
                 "move the file away and put the labels there")


def _key_line(yaml_path: Path, key: str) -> int:
    """1-based line of a top-level ``key:`` in a yaml file (0 when absent or unreadable)."""
    try:
        lines = yaml_path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return 0
    return next((n for n, line in enumerate(lines, start=1) if line.split(":", 1)[0].strip() == key), 0)


def _read_yaml_mapping(path: Path) -> Dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DataError(f"{where}: cannot parse YAML ({getattr(e, 'problem', None) or e})",
                        "fix the YAML syntax") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read {path}: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"{path} must hold a mapping (path/train/val/names)")
    return data


__all__ = ["DatasetLayout", "dataset_root", "train_problems", "label_dir_not_a_directory", "TRAIN_SPLITS", "broken_links", "IMAGE_SUFFIXES", "DEFAULT_SPLITS", "DATA_YAML", "label_path_for", "list_images", "is_image_file"]
