"""Data loss: no command deletes or replaces what edgekit did not write (edgekit.core.outdir's policy).

Table-driven over the reproductions of the reliability corpus: each case prepares a tree, runs the
real CLI, and asserts exit 1, one line without a traceback naming the path, the whole tree (the
user's files, the sources, the dataset) byte-identical afterwards, and no staging debris.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Callable, Dict, List, Tuple

import pytest

from tests.robustness.conftest import assert_one_line_error, debris, run_cli, tree_hash

Setup = Callable[[Path, Path], Tuple[List[str], str]]  # (tmp, base) -> (CLI args, text the error must name)


def _user_dir(tmp: Path) -> Path:
    mine = tmp / "mine"
    mine.mkdir()
    (mine / "thesis.txt").write_text("x")
    return mine


def _run_dir(tmp: Path, base: Path, ckpt: Path) -> Path:
    run = tmp / "runs" / "X"
    (run / "checkpoints").mkdir(parents=True)
    (run / "reports").mkdir()
    shutil.copy(str(ckpt), str(run / "checkpoints" / "best.pt"))
    (run / "reports" / "config_resolved.yaml").write_text(f"data: {base}\nimgsz: 160\n")
    return run


def export_into_user_dir(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    mine = _user_dir(tmp)
    shutil.copy(str(ckpt), str(mine / "m.pt"))
    return ["export", str(mine / "m.pt"), "--imgsz", "160", "--calib-data", str(base / "images/val"),
            "--out", str(mine)], str(mine)


def export_run_onto_itself(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    run = _run_dir(tmp, base, ckpt)
    return ["export", str(run), "--imgsz", "160", "--out", str(run)], str(run)


def export_out_dot(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    return ["export", str(ckpt), "--imgsz", "160", "--calib-data", str(base / "images/val"), "--out", "."], str(tmp)


def export_under_a_file(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    (tmp / "afile").write_text("keep")
    return ["export", str(ckpt), "--imgsz", "160", "--calib-data", str(base / "images/val"), "--out",
            str(tmp / "afile" / "b")], str(tmp / "afile")


def export_onto_a_dataset(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    return ["export", str(ckpt), "--imgsz", "160", "--calib-data", str(base / "images/val"), "--out",
            str(base)], str(base)


def convert_dst_is_src(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    from tests.robustness.conftest import make_dota

    dota = make_dota(tmp / "dota", base, limit=3)
    return ["data", "convert", "--from", "dota", "--to", "yolo-obb", str(dota), str(dota), "--overwrite", "--link"], \
        str(dota)


def convert_dst_is_src_parent(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    from tests.robustness.conftest import make_dota

    parent = tmp / "parent"
    dota = make_dota(parent / "dota", base, limit=3)
    (parent / "unrelated.txt").write_text("keep")
    return ["data", "convert", "--from", "dota", "--to", "yolo-obb", str(dota), str(parent), "--overwrite"], \
        str(parent)


def convert_dst_inside_src(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    from tests.robustness.conftest import make_dota

    dota = make_dota(tmp / "dota", base, limit=3)
    return ["data", "convert", "--from", "dota", "--to", "yolo-obb", str(dota), str(dota / "yolo")], str(dota)


def synth_into_user_dir(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    mine = _user_dir(tmp)
    return ["data", "synth", "obb", "--out", str(mine), "--n-train", "1", "--n-val", "1", "--imgsz", "64"], str(mine)


def synth_onto_another_commands_output(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    return ["data", "synth", "refdet", "--out", str(base), "--n-train", "1", "--n-test", "1", "--frames", "2",
            "--imgsz", "64"], str(base)


def train_run_id_with_a_slash(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    run = _run_dir(tmp, base, ckpt)  # runs/X has checkpoints: x/X must not sneak past the guard onto it
    shutil.copy(str(ckpt), str(run / "checkpoints" / "last.pt"))
    return ["train", "obb", "--run-id", "x/X", f"data={base}", f"project={tmp / 'runs'}", "device=cpu",
            "teacher.weights=random"], "--run-id 'x/X'"


def train_run_id_escaping(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    return ["train", "obb", "--run-id", "../escape", f"data={base}", f"project={tmp / 'runs'}", "device=cpu",
            "teacher.weights=random"], "--run-id '../escape'"


def train_into_user_dir(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    mine = tmp / "runs" / "mine"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("x")
    return ["train", "obb", "--run-id", "mine", f"data={base}", f"project={tmp / 'runs'}", "device=cpu",
            "teacher.weights=random"], str(mine)


def demo_into_user_dir(tmp: Path, base: Path, ckpt: Path) -> Tuple[List[str], str]:
    mine = _user_dir(tmp)
    return ["demo", "--profile", "quick", "--out", str(mine)], str(mine)


CASES: Dict[str, Callable[[Path, Path, Path], Tuple[List[str], str]]] = {
    f.__name__: f for f in (export_into_user_dir, export_run_onto_itself, export_out_dot, export_under_a_file,
                            export_onto_a_dataset, convert_dst_is_src, convert_dst_is_src_parent,
                            convert_dst_inside_src, synth_into_user_dir, synth_onto_another_commands_output,
                            train_run_id_with_a_slash, train_run_id_escaping, train_into_user_dir, demo_into_user_dir)
}


@pytest.mark.parametrize("case", list(CASES))
def test_never_deletes_or_replaces_what_edgekit_did_not_write(tmp_path: Path, base_dataset: Path, obb_pt: Path,
                                                              case: str) -> None:
    work = tmp_path / "work"
    work.mkdir()
    base = work / "base"
    shutil.copytree(str(base_dataset), str(base))  # a private copy: cases may aim at the dataset itself
    args, named = CASES[case](work, base, obb_pt)
    before = tree_hash(work)
    res = run_cli(args, cwd=work, timeout=240)
    assert_one_line_error(res, 1, names=[named])
    assert tree_hash(work) == before, "files outside the target changed"
    assert debris(work) == []


def test_outputs_are_re_runnable_and_marked(tmp_path: Path, base_dataset: Path) -> None:
    """The positive side: each writer replaces its own earlier output (marker), leaving nothing else."""
    from tests.robustness.conftest import make_dota

    dota = make_dota(tmp_path / "dota", base_dataset, limit=3)
    for _ in range(2):
        res = run_cli(["data", "synth", "obb", "--out", "s", "--n-train", "2", "--n-val", "1", "--imgsz", "64"],
                      cwd=tmp_path)
        assert res.rc == 0, res.stderr
        res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo-obb", str(dota), "c", "--overwrite"],
                      cwd=tmp_path)
        assert res.rc == 0, res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c", "dota", "s"]
    assert '"writer": "data synth obb"' in (tmp_path / "s" / ".edgekit-output.json").read_text()
    assert '"writer": "data convert"' in (tmp_path / "c" / ".edgekit-output.json").read_text()


def test_demo_re_runs_into_its_own_out_and_only_its_own(tmp_path: Path) -> None:
    """`demo --out D` twice: the second run removes the first run's training run (it has the train marker);
    a runs/demo that edgekit did not write is left for train_obb to refuse."""
    from edgekit.core.outdir import write_marker
    from edgekit.demo import _prepare_out
    from edgekit.train.run import RunDir

    out = _prepare_out(tmp_path / "d")
    run = RunDir.create(out / "runs", "demo")
    run.last.write_bytes(b"x")
    (out / "demo_summary.json").write_text("{}")
    assert _prepare_out(out) == out and not run.root.exists() and (out / "demo_summary.json").exists()
    foreign = out / "runs" / "demo"
    foreign.mkdir(parents=True)
    (foreign / "notes.txt").write_text("keep")
    _prepare_out(out)
    assert (foreign / "notes.txt").read_text() == "keep"
    other = tmp_path / "other"
    other.mkdir()
    write_marker(other, "data synth obb")
    with pytest.raises(Exception, match="holds the output of `edgekit data synth obb`"):
        _prepare_out(other)


@pytest.fixture
def small_fs(tmp_path: Path):
    """A 2 MB tmpfs (root only: skipped where mounting is not allowed)."""
    import subprocess

    mnt = tmp_path / "fs"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


@pytest.mark.parametrize("read_only", [False, True], ids=["full", "read-only"])
@pytest.mark.parametrize("command", ["synth", "export"])
def test_full_or_read_only_file_system_is_one_line(small_fs: Path, base_dataset: Path, obb_pt: Path, command: str,
                                                   read_only: bool) -> None:
    import subprocess

    out = small_fs / "out"
    args = (["data", "synth", "obb", "--out", str(out), "--n-train", "200", "--n-val", "2", "--imgsz", "320"]
            if command == "synth" else
            ["export", str(obb_pt), "--imgsz", "160", "--calib-data", str(base_dataset / "images/val"), "--out",
             str(out), "--quiet"])
    if read_only:
        subprocess.run(["mount", "-o", "remount,ro", str(small_fs)], check=True)
    res = run_cli(args, cwd=base_dataset.parent)
    assert_one_line_error(res, 1, names=[str(out)])
    assert sorted(p.name for p in small_fs.iterdir()) == []  # nothing half-written left on the full disk
