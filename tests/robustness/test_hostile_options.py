"""Hostile option values (see HOSTILE_CASES.md for the whole corpus)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.robustness.conftest import assert_one_line_error, debris, run_cli


@pytest.mark.parametrize("workers", ["0", "2"])
def test_an_absurd_size_is_one_line_out_of_memory_and_leaves_nothing(tmp_path: Path, workers: str) -> None:
    out = tmp_path / "synth"
    res = run_cli(["data", "synth", "obb", "--out", out, "--n-train", "1", "--n-val", "1", "--imgsz", "99999999",
                   "--workers", workers], cwd=tmp_path, timeout=120)
    line = assert_one_line_error(res, names=["out of memory", "edgekit data synth obb", "--imgsz"])
    assert "PiB" in line  # what numpy could not allocate, so the size at fault shows
    assert not out.exists() and not debris(tmp_path)
