"""Atomic file writes: write to a temporary name beside the target, then rename.

A crash or kill at any moment leaves either the old file or the new one, never half of one.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional, Union

from .errors import DataError

PathLike = Union[str, "os.PathLike[str]"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(target: PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path in the target's directory; rename it onto ``target`` on success.

    The temporary keeps ``suffix`` (e.g. ``.onnx``) so tools that look at extensions still work.
    On an exception the temporary is removed and the target is untouched.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=str(target.parent))
    os.close(fd)
    # mkstemp creates 0600; a finished artifact gets the permissions a plain open() would give.
    os.chmod(tmp, 0o666 & ~_umask())
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(str(tmp_path), str(target))
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(target: PathLike, data: bytes) -> Path:
    with atomic_path(target) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    return Path(target)


def write_text_atomic(target: PathLike, text: str) -> Path:
    return write_bytes_atomic(target, text.encode("utf-8"))


def write_json_atomic(target: PathLike, obj: Any, indent: int = 2) -> Path:
    return write_text_atomic(target, json.dumps(obj, indent=indent, sort_keys=False) + "\n")


def check_output_dir(target: PathLike, replaceable: Optional[Iterable[str]] = None, flag: str = "--out") -> Path:
    """Refuse an output directory before any work is done: a path that is a file, one under a file,
    or (when ``replaceable`` is given) a non-empty directory holding anything but those entries.

    ``replaceable`` names what an earlier run of the same writer leaves there: such a directory may be
    replaced (re-running a command works), anything else would be deleted by :func:`atomic_dir`'s swap.
    Returns the absolute target.
    """
    target = Path(target).expanduser().absolute()
    for path in (target, *target.parents):
        if path.exists() or path.is_symlink():
            if not path.is_dir():
                where = "is a file" if path == target else f"cannot be created: {path} is a file"
                raise DataError(f"{flag} {target} {where}", f"pass {flag} a directory path")
            break
    if replaceable is not None and target.is_dir():
        owned = set(replaceable)
        foreign = sorted(p.name for p in target.iterdir() if p.name not in owned)
        if foreign:
            raise DataError(f"{flag} {target} holds files this command did not write (e.g. {foreign[0]!r})",
                            f"pass {flag} a new or empty directory (the output replaces the whole directory)")
    return target


@contextlib.contextmanager
def atomic_dir(target: PathLike) -> Iterator[Path]:
    """Build a directory under a temporary name, then rename it onto ``target``.

    An existing ``target`` is replaced only once the new one is complete.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=str(target.parent)))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp creates 0700
    try:
        yield tmp
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(str(target), str(old))
            os.replace(str(tmp), str(target))
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(str(tmp), str(target))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
