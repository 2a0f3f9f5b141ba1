"""Data loss on --resume: a corrupt or foreign last.pt is refused (never a silent restart over best.pt),
and a run killed before its first checkpoint restarts cleanly without duplicate metric rows."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, List

import pytest

from tests.robustness.conftest import assert_one_line_error, debris, run_cli, tree_hash

pytest.importorskip("ultralytics")

TINY = ["imgsz=64", "batch=2", "workers=0", "device=cpu", "amp=false", "mosaic=0", "teacher.weights=random",
        "teacher.model_kwargs={embed_dim: 32, depth: 2, num_heads: 2}", "logging.wandb=disabled",
        "stages.a.epochs=1", "stages.b.epochs=1"]


def _run(tmp: Path, base: Path, overrides: List[str] = ()) -> Path:
    """runs/r/ with its marker and reports/config_resolved.yaml, as `train obb --run-id r` starts it."""
    from edgekit.core.config import dump_config
    from edgekit.train.obb.config import load_train_config
    from edgekit.train.run import RunDir

    run = RunDir.create(tmp / "runs", "r")
    cfg = load_train_config(None, [f"data={base}", f"project={tmp / 'runs'}", *TINY, *overrides])
    run.config_resolved.write_text(dump_config(cfg))
    return run.root


def _truncated(src: Path, dst: Path) -> None:
    dst.write_bytes(src.read_bytes()[: 4096])


def _empty(src: Path, dst: Path) -> None:
    dst.write_bytes(b"")


def _not_a_training_checkpoint(src: Path, dst: Path) -> None:
    shutil.copy(str(src), str(dst))  # a real Ultralytics checkpoint, but without edgekit's training state


LAST: Dict[str, Callable[[Path, Path], None]] = {
    "truncated": _truncated, "empty": _empty, "no edgekit state": _not_a_training_checkpoint,
}


@pytest.mark.parametrize("kind", list(LAST))
def test_resume_with_a_bad_last_pt_is_refused_and_keeps_best(tmp_path: Path, base_dataset: Path, obb_pt: Path,
                                                              kind: str) -> None:
    run = _run(tmp_path, base_dataset)
    shutil.copy(str(obb_pt), str(run / "checkpoints" / "best.pt"))
    LAST[kind](obb_pt, run / "checkpoints" / "last.pt")
    (run / "reports" / "val_metrics.jsonl").write_text(json.dumps({"stage": "a", "epoch": 0, "final": True}) + "\n")
    before = tree_hash(tmp_path)
    res = run_cli(["train", "obb", "--run-id", "r", "--resume", f"project={tmp_path / 'runs'}"], cwd=tmp_path)
    assert_one_line_error(res, 1, names=["--resume", str(run / "checkpoints" / "last.pt")])
    assert tree_hash(tmp_path) == before  # best.pt, the reports and last.pt itself untouched
    assert debris(tmp_path) == []


@pytest.mark.parametrize("resume", [True, False], ids=["--resume", "restart"])
def test_kill_before_the_first_checkpoint_restarts_without_duplicate_rows(tmp_path: Path, base_dataset: Path,
                                                                         resume: bool) -> None:
    """The state a kill leaves between reporting epoch 0 and writing last.pt: rows, no checkpoint."""
    run = _run(tmp_path, base_dataset)
    for name in ("train_metrics.jsonl", "val_metrics.jsonl"):
        (run / "reports" / name).write_text(json.dumps({"stage": "a", "epoch": 0, "stage_epoch": 0}) + "\n")
    args = ["train", "obb", "--run-id", "r", f"project={tmp_path / 'runs'}"]
    args += ["--resume"] if resume else [f"data={base_dataset}", *TINY]
    res = run_cli(args, cwd=tmp_path, timeout=300)
    assert res.rc == 0, res.stderr[-3000:]
    train = [json.loads(line) for line in (run / "reports" / "train_metrics.jsonl").read_text().splitlines()]
    val = [json.loads(line) for line in (run / "reports" / "val_metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in train] == [0, 1]
    assert [(r["epoch"], bool(r.get("final"))) for r in val] == [(0, False), (0, True), (1, False), (1, True)]
    assert (run / "checkpoints" / "last.pt").is_file() and (run / "checkpoints" / "best.pt").is_file()
    assert debris(tmp_path) == []


def test_resume_without_checkpoint_of_a_foreign_dir_still_refuses(tmp_path: Path, base_dataset: Path) -> None:
    run = _run(tmp_path, base_dataset)
    (run / ".edgekit-output.json").unlink()  # not a run edgekit started: nothing is restarted there
    before = tree_hash(tmp_path)
    res = run_cli(["train", "obb", "--run-id", "r", "--resume", f"project={tmp_path / 'runs'}"], cwd=tmp_path)
    assert_one_line_error(res, 1, names=["nothing to resume", str(run / "checkpoints" / "last.pt")])
    assert tree_hash(tmp_path) == before
