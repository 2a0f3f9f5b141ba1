"""check_output_dir: an output path is refused up front when writing it would fail or clobber files."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgekit.core.atomic import atomic_dir, check_output_dir
from edgekit.core.errors import DataError


def test_new_empty_and_own_output_directories_are_accepted(tmp_path: Path) -> None:
    assert check_output_dir(tmp_path / "new" / "deeper", ("data.yaml",)) == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    check_output_dir(tmp_path / "empty", ("data.yaml",))
    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "data.yaml").write_text("x")
    check_output_dir(tmp_path / "own", ("data.yaml", "images"))


@pytest.mark.parametrize("target, replaceable, match", [
    ("afile", None, r"--out .*afile is a file"),
    ("afile/sub/dir", None, r"--out .*sub/dir cannot be created: .*afile is a file"),
    ("mixed", ("data.yaml",), r"--out .*mixed holds files this command did not write \(e\.g\. 'notes\.txt'\)"),
])
def test_refused_targets_name_the_path_and_touch_nothing(tmp_path: Path, target: str, replaceable, match: str) -> None:
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "data.yaml").write_text("x")
    (tmp_path / "mixed" / "notes.txt").write_text("keep")
    with pytest.raises(DataError, match=match):
        check_output_dir(tmp_path / target, replaceable)
    assert (tmp_path / "afile").read_text() == "keep" and (tmp_path / "mixed" / "notes.txt").read_text() == "keep"


def test_without_the_check_atomic_dir_would_replace_the_directory(tmp_path: Path) -> None:
    # why the check exists: atomic_dir swaps the whole target, so a foreign file in it is lost
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "notes.txt").write_text("keep")
    with atomic_dir(tmp_path / "out") as tmp:
        (tmp / "data.yaml").write_text("x")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["data.yaml"]
