"""One output-directory policy for every command that writes a tree (synth, convert, train, export, demo, ...).

The promises, in the order :func:`prepare_output` checks them:

- a directory edgekit writes carries a marker file, :data:`MARKER` (``{"writer", "version", "created"}``,
  plus ``"entries"``, its top-level names, for a staged output) that says "edgekit wrote this"; only a
  directory with the marker *of the same writer* is ever replaced, and not when it holds a top-level
  entry the marker does not list (a file the user added); a non-empty directory without it is refused;
- the target is never a file or under one, never the current directory (or one holding it), never a
  mount point, never inside one of the command's sources nor holding one (symlinks resolved);
- a target whose nearest existing parent is not writable is refused up front in one line.

:func:`staged_output` then builds the tree in a staging directory **next to** the target (same file
system, so the final rename is atomic) named ``.edgekit-stage-<writer>-<pid>-<random>``; stagings of
the same writer whose process is dead (a kill -9) are removed when the next run starts. Scratch files
go in :func:`work_dir` (a staging name too, beside the staging directory) and :func:`temp_files_in`
routes ``tempfile`` there, never to ``/tmp``, so a kill leaves nothing a re-run does not clean.

Device-safe: standard library only (bench, jetson and serve reuse it on Python 3.8).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import datetime as _dt
import errno
import json
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, Optional, Union

from .errors import DataError

PathLike = Union[str, "os.PathLike[str]"]

MARKER = ".edgekit-output.json"
STAGE_PREFIX = ".edgekit-stage-"
_STAGE_RE = re.compile(r"^\.edgekit-stage-(?P<writer>.+)-(?P<pid>\d+)-[^-]+$")
# errno -> what the user should do about it (a full, read-only or forbidden file system)
_FS_ERRORS = {errno.ENOSPC: "free some space or pass another directory",
              errno.EDQUOT: "free some space or pass another directory",
              errno.EROFS: "the file system is read-only: pass a writable directory",
              errno.EACCES: "pass a directory you can write to",
              errno.EPERM: "pass a directory you can write to"}


def _version() -> str:
    try:
        from edgekit import __version__
    except ImportError:  # pragma: no cover - a partial install
        return "unknown"
    return __version__


def read_marker(directory: PathLike) -> Optional[Dict[str, Any]]:
    """The marker of ``directory`` (None when absent or unreadable: then edgekit did not write it)."""
    try:
        data = json.loads((Path(directory) / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and isinstance(data.get("writer"), str) else None


def write_marker(directory: PathLike, writer: str, **extra: Any) -> Path:
    """Write the marker that says ``writer`` (e.g. ``"data synth obb"``) made ``directory``."""
    path = Path(directory) / MARKER
    record = {"writer": writer, "version": _version(),
              "created": _dt.datetime.now().astimezone().isoformat(timespec="seconds"), **extra}
    path.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return path


def owned_by(directory: PathLike, writer: str) -> bool:
    marker = read_marker(directory)
    return marker is not None and marker.get("writer") == writer


def _resolve(path: PathLike) -> Path:
    # realpath resolves the existing part (symlinks included) and keeps the rest as written
    return Path(os.path.realpath(os.path.expanduser(str(path))))


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if p.exists() or p.is_symlink():
            return p
    return Path(path.anchor or "/")


def _check_path_shape(target: Path, flag: str) -> None:
    """A file, a path under a file, the current directory or a mount point: one line, before any work."""
    existing = _nearest_existing(target)
    if not existing.is_dir():
        where = "is a file" if existing == target else f"cannot be created: {existing} is a file"
        raise DataError(f"{flag} {target} {where}", f"pass {flag} a directory path")
    cwd = _resolve(os.getcwd())
    if target == cwd or target in cwd.parents:
        raise DataError(f"{flag} {target} is the current directory or holds it",
                        f"pass {flag} a new directory (e.g. {flag} out)")
    if target.exists() and os.path.ismount(str(target)):
        raise DataError(f"{flag} {target} is a mount point", f"pass {flag} a new directory inside it")


def _check_sources(target: Path, sources: Iterable[Optional[PathLike]], flag: str) -> None:
    for source in sources:
        if source is None:
            continue
        src = _resolve(source)
        if target == src or src in target.parents:
            raise DataError(f"{flag} {target} is inside the source {src}",
                            f"pass {flag} a directory outside {src}")
        if target in src.parents:
            raise DataError(f"{flag} {target} contains the source {src}",
                            f"pass {flag} a directory that does not hold {src}")


def _check_ownership(target: Path, writer: str, flag: str, replace: bool) -> None:
    if not target.is_dir():
        return
    try:
        entries = sorted(p.name for p in target.iterdir())
    except OSError as e:
        raise DataError(f"{flag} {target} cannot be read: {e.strerror}", f"pass {flag} a directory you own") from None
    if not entries:
        return
    marker = read_marker(target)
    if marker is None:
        foreign = next((n for n in entries if n != MARKER), entries[0])
        raise DataError(f"{flag} {target} is not empty and edgekit did not write it (e.g. {foreign!r})",
                        f"pass {flag} a new or empty directory; edgekit never replaces files it did not write")
    if marker.get("writer") != writer:
        raise DataError(f"{flag} {target} holds the output of `edgekit {marker.get('writer')}`, not of `edgekit {writer}`",
                        f"pass {flag} a new directory")
    recorded = marker.get("entries")  # what a staged output held when it was renamed into place
    if isinstance(recorded, list):
        added = [n for n in entries if n != MARKER and n not in recorded]
        if added:
            raise DataError(f"{flag} {target} holds {added[0]!r}, which `edgekit {writer}` did not write there",
                            f"move it out of {target}, or pass {flag} a new directory")
    if not replace:
        raise DataError(f"{flag} {target} already exists and is not empty", "choose a new directory or pass --overwrite")


def _check_writable(target: Path, flag: str) -> None:
    parent = _nearest_existing(target.parent)
    if not os.access(str(parent), os.W_OK | os.X_OK):
        raise DataError(f"{flag} {target} cannot be written: {parent} is read-only or not writable",
                        f"pass {flag} a directory you can write to")


def prepare_output(target: PathLike, writer: str, flag: str = "--out", sources: Iterable[Optional[PathLike]] = (),
                   replace: bool = True) -> Path:
    """Check ``target`` before any work and return it absolute with symlinks resolved.

    Raises a one-line :class:`DataError` naming ``flag`` and the path when writing ``target`` could
    lose data or would fail: see the module docstring. ``sources`` are the command's inputs (files
    or directories); ``replace=False`` also refuses an earlier output of the same writer (``data
    convert`` without ``--overwrite``).
    """
    path = _resolve(target)
    _check_path_shape(path, flag)
    _check_sources(path, sources, flag)
    _check_ownership(path, writer, flag, replace)
    _check_writable(path, flag)
    return path


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def clean_stale_stagings(parent: PathLike, writer: str) -> int:
    """Remove ``writer``'s staging directories in ``parent`` whose process is gone; returns how many."""
    removed = 0
    try:
        entries = list(Path(parent).iterdir())
    except OSError:
        return 0
    for entry in entries:
        m = _STAGE_RE.match(entry.name)
        if m is None or m.group("writer") != _slug(writer) or _pid_alive(int(m.group("pid"))):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(str(entry), ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
        removed += 1
    return removed


def _slug(writer: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", writer).strip("_") or "out"


@contextlib.contextmanager
def work_dir(stage: PathLike) -> Iterator[Path]:
    """A scratch directory beside a staging directory (so nothing of it lands in the output), removed on
    exit; its name is a staging name of the same process, so a kill leaves it for the next run to clean."""
    path = Path(stage).with_name(Path(stage).name + "work")
    path.mkdir(exist_ok=True)
    try:
        yield path
    finally:
        shutil.rmtree(str(path), ignore_errors=True)


@contextlib.contextmanager
def temp_files_in(directory: PathLike) -> Iterator[None]:
    """Route this process's ``tempfile`` (and the libraries using it, e.g. onnxruntime's quantizer) into
    ``directory`` - a :func:`work_dir` - instead of /tmp, where a kill would leave them for good."""
    old = tempfile.tempdir
    tempfile.tempdir = str(directory)
    try:
        yield
    finally:
        tempfile.tempdir = old


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_RENAME_EXCHANGE = 2


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where unsupported.

    Hand-written because the standard library has no renameat2 (os.replace cannot swap directories).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd = -100
    rc = fn(at_fdcwd, os.fsencode(str(a)), at_fdcwd, os.fsencode(str(b)), _RENAME_EXCHANGE)
    return rc == 0


def _swap_into_place(stage: Path, target: Path) -> None:
    if not target.exists():
        os.replace(str(stage), str(target))
        return
    if _exchange(stage, target):  # now `stage` holds the old output
        shutil.rmtree(str(stage), ignore_errors=True)
        return
    old = stage.with_name(stage.name + "old")  # still a stale-staging name: a kill here is cleaned later
    os.replace(str(target), str(old))
    os.replace(str(stage), str(target))
    shutil.rmtree(str(old), ignore_errors=True)


def fs_error(e: OSError, target: PathLike, flag: str = "--out") -> Optional[DataError]:
    """A full, read-only or forbidden file system as a one-line DataError naming the path (else None)."""
    fix = _FS_ERRORS.get(e.errno or 0)
    if fix is None:
        return None
    where = e.filename or target
    return DataError(f"cannot write {where} ({flag} {target}): {e.strerror or os.strerror(e.errno or 0)}", fix)


@contextlib.contextmanager
def staged_output(target: PathLike, writer: str, flag: str = "--out") -> Iterator[Path]:
    """Yield a staging directory next to ``target``; on success mark it and rename it onto ``target``.

    Call :func:`prepare_output` first (this re-checks nothing but the file system). An existing
    ``target`` is replaced only once the new tree is complete; on any error the staging directory is
    removed and ``target`` is untouched. ENOSPC/EROFS/EACCES become a one-line :class:`DataError`.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        clean_stale_stagings(target.parent, writer)
        stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{_slug(writer)}-{os.getpid()}-", dir=str(target.parent)))
        os.chmod(str(stage), 0o777 & ~_umask())  # mkdtemp creates 0700
    except OSError as e:
        raise (fs_error(e, target, flag) or e) from None
    try:
        yield stage
        write_marker(stage, writer, entries=sorted(p.name for p in stage.iterdir()))
        _swap_into_place(stage, target)
    except OSError as e:
        shutil.rmtree(str(stage), ignore_errors=True)
        err = fs_error(e, target, flag)
        if err is None:
            raise
        raise err from None
    except BaseException:
        shutil.rmtree(str(stage), ignore_errors=True)
        raise


__all__ = ["MARKER", "STAGE_PREFIX", "prepare_output", "staged_output", "work_dir", "temp_files_in", "read_marker",
           "write_marker", "owned_by", "clean_stale_stagings", "fs_error"]
