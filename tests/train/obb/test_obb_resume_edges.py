"""Edge cases around a run that needs no training: resume of missing/finished runs, changed configs on
resume, teacher errors found before (or while) building, and what each leaves on disk."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from edgekit.core.config import dump_config
from edgekit.core.errors import ConfigError, ModelError
from edgekit.train.obb import train_obb
from edgekit.train.obb.config import TeacherConfig, load_train_config
from edgekit.train.obb.teacher import build_teacher
from edgekit.train.run import RunDir

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def _finished_run(overrides, run_id: str = "done") -> RunDir:
    """A run whose last.pt says its last stage is done (what final_eval leaves), with its resolved config."""
    cfg = load_train_config(None, overrides)
    run = RunDir.create(cfg.project, run_id)
    torch.save({"edgekit": {"stage_index": len(cfg.stages) - 1, "stage_done": True, "stage_epoch": 0,
                            "stage_epochs": 1}}, run.last)
    from edgekit.train.obb.api import resolve_dataset

    root, _ = resolve_dataset(cfg)
    run.config_resolved.write_text(dump_config(cfg.model_copy(update={"data": str(root)})))
    return run


def test_resume_of_a_missing_run_creates_nothing(tiny_overrides, tmp_path):
    cfg = load_train_config(None, tiny_overrides)
    with pytest.raises(ConfigError, match="nothing to resume"):
        train_obb(cfg, run_id="nope", resume=True)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("change, key", [
    ("stages.b.epochs=3", "stages"),
    ("imgsz=96", "imgsz"),
    ("distillation.bg_weight=0.5", "distillation.bg_weight"),
    ("teacher.imgsz=32", "teacher.imgsz"),
])
def test_resume_with_a_changed_config_is_refused_and_keeps_the_report(tiny_overrides, change, key):
    run = _finished_run(tiny_overrides)
    before = run.config_resolved.read_text()
    with pytest.raises(ConfigError, match=rf"changed config: {key} is .* started with"):
        train_obb(load_train_config(None, [*tiny_overrides, change]), run_id="done", resume=True)
    assert run.config_resolved.read_text() == before


def test_resume_of_a_finished_run_allows_runtime_keys_and_clears_stale_temps(tiny_overrides):
    run = _finished_run(tiny_overrides)
    (run.checkpoints / ".save.abc123").mkdir()  # what a kill inside save_model leaves
    (run.checkpoints / ".last.pt.x1y2.tmp").write_bytes(b"half")
    last = run.last.read_bytes()
    result = train_obb(load_train_config(None, [*tiny_overrides, "workers=1", "logging.signal_maps_every=0"]),
                       run_id="done", resume=True)
    assert result.run_dir == run.root and run.last.read_bytes() == last  # nothing retrained
    assert sorted(p.name for p in run.checkpoints.iterdir()) == ["last.pt"]
    assert yaml.safe_load(run.config_resolved.read_text())["workers"] == 1


@pytest.mark.parametrize("teacher, error, message", [
    ({"weights": "/nonexistent/dino.pth"}, ModelError, "does not exist"),
    ({"name": "vit_not_a_model", "weights": "random"}, ConfigError, "is not a timm model"),
])
def test_bad_teacher_fails_before_the_run_directory_exists(tiny_overrides, tmp_path, teacher, error, message):
    items = [o for o in tiny_overrides if not o.startswith("teacher.")] + [f"teacher.{k}={v}" for k, v in teacher.items()]
    with pytest.raises(error, match=message):
        train_obb(load_train_config(None, items), run_id="t")
    assert not (tmp_path / "runs").exists()


def test_unloadable_teacher_weights_leave_no_run_behind(tiny_overrides, tmp_path):
    bad = tmp_path / "dino.safetensors"
    bad.write_bytes(b"not a safetensors file")
    items = [o for o in tiny_overrides if o != "teacher.weights=random"] + [f"teacher.weights={bad}"]
    with pytest.raises(ModelError, match="do not fit"):
        train_obb(load_train_config(None, items), run_id="t")
    assert not (tmp_path / "runs" / "t").exists()


@pytest.mark.parametrize("suffix, content, kwargs, error, message", [
    (".safetensors", b"garbage", TINY, ModelError, "do not fit vit_small_patch16_dinov3"),
    (".pth", b"garbage", TINY, ModelError, "do not fit vit_small_patch16_dinov3"),
    (None, None, {**TINY, "no_such_arg": 1}, ConfigError, "teacher.model_kwargs does not fit"),
])
def test_teacher_build_errors_are_user_errors(tmp_path, suffix, content, kwargs, error, message):
    weights = "random"
    if suffix:
        weights = str(tmp_path / f"w{suffix}")
        Path(weights).write_bytes(content)
    with pytest.raises(error, match=message):
        build_teacher(TeacherConfig(weights=weights, model_kwargs=kwargs), "cpu")


def test_unknown_teacher_name_is_named_as_such():
    with pytest.raises(ConfigError, match="teacher.name 'vit_nope' is not a timm model"):
        build_teacher(TeacherConfig(name="vit_nope", weights="random"), "cpu")


@pytest.mark.parametrize("with_data", [True, False])
def test_cli_resume_of_a_missing_run_is_one_line_and_leaves_nothing(obb_dataset, tmp_path, with_data):
    args = [f"data={obb_dataset}"] if with_data else []
    res = subprocess.run([sys.executable, "-m", "edgekit", "train", "obb", "--run-id", "nope", "--resume",
                          f"project={tmp_path}", *args], capture_output=True, text=True, timeout=120)
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert "nothing to resume" in res.stderr and "nope" in res.stderr
    assert not list(tmp_path.iterdir())



class _Killed(BaseException):
    """Stands in for a SIGKILL: nothing in the trainer catches it."""


def test_kill_between_a_stages_last_save_and_its_final_eval_is_finished_on_resume(tiny_overrides, monkeypatch):
    """The stage's last epoch is saved but final_eval never ran: resume runs it (stage_a.pt, one final row
    for each stage) before going on, instead of skipping the stage's result."""
    import json

    from edgekit.train.obb import trainer as trainer_mod

    cfg = load_train_config(None, tiny_overrides)
    real_final_eval = trainer_mod.DistillOBBTrainer.final_eval

    def killed_in_stage_a(self):
        if self.stage.name == "a":
            raise _Killed()
        return real_final_eval(self)

    monkeypatch.setattr(trainer_mod.DistillOBBTrainer, "final_eval", killed_in_stage_a)
    with pytest.raises(_Killed):
        train_obb(cfg, run_id="k")
    run = RunDir(Path(cfg.project) / "k")
    assert not (run.checkpoints / "stage_a.pt").exists()
    monkeypatch.setattr(trainer_mod.DistillOBBTrainer, "final_eval", real_final_eval)
    train_obb(cfg, run_id="k", resume=True)
    rows = [json.loads(x) for x in run.val_metrics.read_text().splitlines()]
    assert [(r["stage"], r["epoch"]) for r in rows if r.get("final")] == [("a", 0), ("b", 1)]
    assert (run.checkpoints / "stage_a.pt").exists() and (run.checkpoints / "stage_b.pt").exists()
