"""End to end on CPU: both stages on a tiny synthetic set write the whole run contract; kill -9 + --resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from edgekit.train.obb import ObbTrainConfig, train_obb
from edgekit.train.obb.config import load_train_config
from edgekit.train.run import read_jsonl

BACKBONE = tuple(f"model.{i}." for i in range(10))


def _state(path: Path):
    ckpt = torch.load(path, map_location="cpu", weights_only=False)
    model = ckpt.get("ema") or ckpt["model"]
    return ckpt, {k: v.clone() for k, v in model.state_dict().items()}


def _split(sd):
    back = {k: v for k, v in sd.items() if k.startswith(BACKBONE)}
    return back, {k: v for k, v in sd.items() if k.startswith("model.2")}  # neck/head layers 20-22


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, obb_dataset):
    from ultralytics import YOLO

    tmp = tmp_path_factory.mktemp("e2e")
    init = tmp / "init.pt"
    YOLO("yolov8n-obb.yaml").save(str(init))  # a .pt student, so stage A's start weights are on disk
    from tests.train.conftest import TINY_TEACHER

    cfg = load_train_config(None, [
        f"data={obb_dataset}", f"student={init}", "imgsz=64", "batch=2", "workers=0", f"project={tmp / 'runs'}",
        "amp=false", "mosaic=0", "teacher.weights=random", f"teacher.model_kwargs={TINY_TEACHER}",
        "logging.wandb=disabled", "stages.a.epochs=1", "stages.b.epochs=1", "stages.b.lr0=0.01"])
    result = train_obb(cfg, run_id="e2e")
    return result, init, obb_dataset


def test_run_contract_is_complete(finished_run):
    result, _, dataset = finished_run
    run = result.run_dir
    for rel in ("checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/stage_a.pt", "checkpoints/stage_b.pt",
                "reports/train_metrics.jsonl", "reports/val_metrics.jsonl", "reports/config_resolved.yaml",
                "reports/run_meta.json"):
        assert (run / rel).is_file(), rel
    assert sorted(p.name for p in (run / "signal_maps").glob("*.png")) == ["epoch000.png", "epoch001.png"]
    resolved = yaml.safe_load((run / "reports/config_resolved.yaml").read_text())
    assert resolved["data"] == str(dataset) and ObbTrainConfig.model_validate(resolved).imgsz == 64
    train = read_jsonl(run / "reports/train_metrics.jsonl")
    assert [(r["stage"], r["epoch"]) for r in train] == [("a", 0), ("b", 1)]
    for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss", "train/angle_loss", "train/dino_loss",
                "train/obj_distill_loss", "train/bg_distill_loss"):
        assert all(isinstance(r[key], float) for r in train), key
    val = read_jsonl(run / "reports/val_metrics.jsonl")
    assert "metrics/mAP50(B)" in val[0] and "val/box_loss" in val[0] and "val/dino_loss" not in val[0]
    assert result.final_metrics["final"] and "metrics/mAP50(B)" in result.final_metrics
    meta = json.loads((run / "reports/run_meta.json").read_text())
    assert meta["seed"] == 0 and "git_sha" in meta and meta["host"]["hostname"]
    assert meta["versions"]["ultralytics"] and meta["versions"]["timm"] and meta["versions"]["torch"]
    assert set(meta["stage_timings"]) == {"a", "b"} and meta["teacher"]["source"] == "random"
    assert any("random" in w for w in meta["warnings"])


def test_checkpoints_hold_no_teacher_but_keep_projectors(finished_run):
    result, _, _ = finished_run
    ckpt, sd = _state(result.best)
    assert not any("teacher" in k or "blocks." in k or "reg_token" in k for k in sd)
    state = ckpt["edgekit"]
    assert state["stage_done"] and state["hook_layers"] == [15, 18, 21]
    assert set(state["projectors"]) == {f"convs.{i}.{p}" for i in (15, 18, 21) for p in ("weight", "bias")}
    assert state["projectors"]["convs.15.weight"].shape == (32, 64, 1, 1)


def test_stage_a_freezes_the_backbone_and_stage_b_trains_it(finished_run):
    result, init, _ = finished_run
    _, sd0 = _state(init)
    _, sd_a = _state(result.run_dir / "checkpoints/stage_a.pt")
    _, sd_b = _state(result.run_dir / "checkpoints/stage_b.pt")
    back0, _ = _split(sd0)
    back_a, head_a = _split(sd_a)
    back_b, _ = _split(sd_b)
    assert back0 and all(torch.equal(back0[k], back_a[k]) for k in back0)  # bit-identical through stage A
    assert any(not torch.equal(head_a[k], v) for k, v in _split(sd0)[1].items() if k in head_a
               and head_a[k].shape == v.shape)  # while the rest of the model did train
    assert any(not torch.equal(back_a[k], back_b[k]) for k in back_a if back_a[k].is_floating_point())


def test_best_loads_and_predicts_with_plain_ultralytics_without_edgekit(finished_run):
    result, _, dataset = finished_run
    code = (
        "import sys; sys.modules['edgekit'] = None\n"  # edgekit cannot be imported: the file must not need it
        "from ultralytics import YOLO\n"
        f"r = YOLO({str(result.best)!r}).predict({str(dataset / 'images/val')!r}, imgsz=64, verbose=False)\n"
        "print(len(r), r[0].obb is not None)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "YOLO_OFFLINE": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "2 True"


def test_existing_run_without_resume_is_refused(finished_run):
    from edgekit.core.errors import ConfigError

    result, _, dataset = finished_run
    cfg = load_train_config(None, [f"data={dataset}", f"project={result.run_dir.parent}"])
    with pytest.raises(ConfigError, match="--resume"):
        train_obb(cfg, run_id="e2e")


def test_kill_9_mid_stage_then_resume_finishes_the_run(tmp_path, tiny_overrides):
    overrides = [o for o in tiny_overrides if not o.startswith("stages.a.")] + ["stages.a.epochs=2"]
    cmd = [sys.executable, "-m", "edgekit", "train", "obb", "--run-id", "r1", *overrides]
    env = {**os.environ, "YOLO_OFFLINE": "1"}
    last = tmp_path / "runs" / "r1" / "checkpoints" / "last.pt"
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert last.exists(), (proc.stderr.read() or "")[-2000:]
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    torch.load(last, map_location="cpu", weights_only=False)  # the kill left a loadable last.pt
    killed_at = torch.load(last, map_location="cpu", weights_only=False)["edgekit"]
    assert killed_at["stage_name"] == "a"

    # resume with nothing but the run id: the run's own config_resolved.yaml supplies the rest
    resume = [sys.executable, "-m", "edgekit", "train", "obb", "--run-id", "r1", "--resume",
              f"project={tmp_path / 'runs'}"]
    res = subprocess.run(resume, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    run = tmp_path / "runs" / "r1"
    epochs = [(r["stage"], r["epoch"]) for r in read_jsonl(run / "reports/train_metrics.jsonl")]
    assert epochs == [("a", 0), ("a", 1), ("b", 2)]
    state = torch.load(last, map_location="cpu", weights_only=False)["edgekit"]
    assert (state["stage_name"], state["stage_done"], state["global_epoch"]) == ("b", True, 2)
    assert json.loads((run / "reports/run_meta.json").read_text())["resumed"] is True
