"""edgekit.core.outdir: the one output-directory policy (refusals, marker, staging next to the target)."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgekit.core import outdir
from edgekit.core.errors import DataError
from edgekit.core.outdir import MARKER, prepare_output, read_marker, staged_output, work_dir

W = "test writer"


def _snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.read_bytes() if p.is_file() else None) for p in sorted(root.rglob("*"))}


def _make(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.txt").write_text("keep")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.txt").write_text("keep")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / MARKER).write_text(json.dumps({"writer": "someone else"}))


@pytest.mark.parametrize("target, sources, replace, match", [
    ("afile", (), True, r"--out .*afile is a file"),
    ("afile/sub", (), True, r"--out .*sub cannot be created: .*afile is a file"),
    ("mine", (), True, r"--out .*mine is not empty and edgekit did not write it \(e\.g\. 'thesis\.txt'\)"),
    ("other", (), True, r"holds the output of `edgekit someone else`"),
    ("src/out", ("src",), True, r"--out .*src/out is inside the source .*src"),
    ("src", ("src/a.txt",), True, r"is inside the source|contains the source"),
    (".", (), True, r"is the current directory"),
    ("..", (), True, r"is the current directory or holds it"),
])
def test_refusals_name_the_path_and_touch_nothing(tmp_path: Path, monkeypatch, target, sources, replace, match) -> None:
    _make(tmp_path)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work if target in (".", "..") else tmp_path)
    before = _snapshot(tmp_path)
    with pytest.raises(DataError, match=match):
        prepare_output(target, W, sources=[tmp_path / s for s in sources])
    assert _snapshot(tmp_path) == before


def test_dst_containing_the_source_is_refused_even_when_ours(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(prepare_output(out, W), W) as stage:
        (stage / "x").write_text("1")
    with pytest.raises(DataError, match="contains the source"):
        prepare_output(out, W, sources=[out / "x"])


def test_mount_point_is_refused(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "mnt").mkdir()
    monkeypatch.setattr(os.path, "ismount", lambda p: str(p).endswith("mnt"))
    with pytest.raises(DataError, match="mnt is a mount point"):
        prepare_output(tmp_path / "mnt", W)


def test_read_only_parent_is_one_line(tmp_path: Path, monkeypatch) -> None:
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(tmp_path) else real(p, mode))
    with pytest.raises(DataError, match=r"cannot be written: .* is read-only or not writable"):
        prepare_output(tmp_path / "new" / "deeper", W)


def test_replace_only_own_output_and_marker_written(tmp_path: Path) -> None:
    out = tmp_path / "out"
    for run in range(2):
        target = prepare_output(out, W)
        with staged_output(target, W) as stage:
            assert stage.parent == tmp_path and stage.name.startswith(f".edgekit-stage-test_writer-{os.getpid()}-")
            (stage / "data.txt").write_text(str(run))
    assert (out / "data.txt").read_text() == "1"
    assert read_marker(out)["writer"] == W and read_marker(out)["version"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no staging left
    with pytest.raises(DataError, match="already exists"):
        prepare_output(out, W, replace=False)
    with pytest.raises(DataError, match="holds the output of `edgekit test writer`"):
        prepare_output(out, "another writer")


def test_failure_leaves_the_old_output_and_no_staging(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(prepare_output(out, W), W) as stage:
        (stage / "data.txt").write_text("old")
    with pytest.raises(RuntimeError), staged_output(prepare_output(out, W), W) as stage:
        (stage / "data.txt").write_text("new")
        raise RuntimeError("boom")
    assert (out / "data.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_full_disk_is_one_line_naming_the_path(tmp_path: Path) -> None:
    full = r"cannot write .*big\.bin \(--out .*out\): No space left on device; free some"
    with pytest.raises(DataError, match=full), staged_output(prepare_output(tmp_path / "out", W), W) as stage:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(stage / "big.bin"))
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


def test_stale_stagings_of_dead_processes_are_cleaned_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".edgekit-stage-test_writer-{dead_pid}-abc123"
    (stale / ".edgekit-work").mkdir(parents=True)
    live = tmp_path / f".edgekit-stage-test_writer-{os.getppid()}-def456"
    live.mkdir()
    theirs = tmp_path / f".edgekit-stage-other-{dead_pid}-ghi789"
    theirs.mkdir()
    with staged_output(prepare_output(tmp_path / "out", W), W) as stage:
        with work_dir(stage) as work:
            (work / "scratch").write_text("x")
        (stage / "data.txt").write_text("x")
    assert not stale.exists() and live.exists() and theirs.exists()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "data.txt"]  # no work dir inside


def test_swap_fallback_without_renameat2(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(outdir, "_exchange", lambda a, b: False)
    out = tmp_path / "out"
    for text in ("a", "b"):
        with staged_output(prepare_output(out, W), W) as stage:
            (stage / "f").write_text(text)
    assert (out / "f").read_text() == "b" and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_symlinked_target_resolves_to_the_real_directory(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    assert prepare_output(tmp_path / "link", W) == (tmp_path / "real").resolve()
    with pytest.raises(DataError, match="is inside the source"):
        prepare_output(tmp_path / "link" / "sub", W, sources=[tmp_path / "real"])


def test_a_file_the_user_added_to_an_output_is_never_replaced(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with staged_output(prepare_output(out, W), W) as stage:
        (stage / "data.txt").write_text("x")
    assert read_marker(out)["entries"] == ["data.txt"]
    (out / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match=r"holds 'notes\.txt', which `edgekit test writer` did not write there"):
        prepare_output(out, W)
