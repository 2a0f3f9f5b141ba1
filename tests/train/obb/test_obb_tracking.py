"""Trackers read back: MLflow (client), TensorBoard (EventAccumulator), W&B offline (the run's .wandb file).

One tiny two-stage run, interrupted after stage A and resumed, must land in ONE run of every tracker:
params = the resolved config, per-epoch metrics of both stages (distillation losses included),
best.pt and signal maps as artifacts/images.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from edgekit.train.obb import api
from edgekit.train.obb.config import load_train_config
from edgekit.train.run import RunDir, read_run_meta

mlflow = pytest.importorskip("mlflow")
pytest.importorskip("tensorboard")
wandb = pytest.importorskip("wandb")


class _Stop(Exception):
    pass


@pytest.fixture(scope="module")
def tracked_run(tmp_path_factory, obb_dataset):
    from tests.train.conftest import TINY_TEACHER

    mp = pytest.MonkeyPatch()
    tmp = tmp_path_factory.mktemp("track")
    for k, v in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DISABLE_GIT": "true",
                 "WANDB_CONSOLE": "off", "WANDB_DIR": str(tmp), "WANDB_CACHE_DIR": str(tmp / "wbcache"),
                 "WANDB_CONFIG_DIR": str(tmp / "wbconfig")}.items():
        mp.setenv(k, v)
    cfg = load_train_config(None, [
        f"data={obb_dataset}", "imgsz=64", "batch=2", "workers=0", f"project={tmp / 'runs'}", "amp=false",
        "mosaic=0", "teacher.weights=random", f"teacher.model_kwargs={TINY_TEACHER}", "stages.a.epochs=1",
        "stages.b.epochs=1", "logging.wandb=offline", "logging.mlflow=true", "logging.tensorboard=true",
        "save_period=1"])
    real = api._run_stage

    def stop_before_b(cfg, run, index, *a, **k):
        if index == 1:
            raise _Stop()  # "killed" between the stages: the resume below runs stage B in a new tracker session
        return real(cfg, run, index, *a, **k)

    mp.setattr(api, "_run_stage", stop_before_b)
    with pytest.raises(_Stop):
        api.train_obb(cfg, run_id="t1")
    mp.setattr(api, "_run_stage", real)
    after_a = read_run_meta(RunDir(tmp / "runs" / "t1"))
    result = api.train_obb(cfg, run_id="t1", resume=True)
    yield result, after_a
    mp.undo()


def test_mlflow_one_run_with_params_metrics_and_artifacts(tracked_run):
    from mlflow.tracking import MlflowClient

    result, after_a = tracked_run
    meta = json.loads((result.run_dir / "reports/run_meta.json").read_text())
    assert meta["mlflow_run_id"] == after_a["mlflow_run_id"]  # the resume continued the same MLflow run
    client = MlflowClient(tracking_uri=meta["mlflow_tracking_uri"])
    runs = client.search_runs([client.get_experiment_by_name("edgekit").experiment_id])
    assert [r.info.run_id for r in runs] == [meta["mlflow_run_id"]]
    run = runs[0]
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["imgsz"] == "64" and params["stages.a.epochs"] == "1" and params["distillation.weight"] == "1.0"
    for key in ("train/dino_loss", "train/obj_distill_loss", "train/bg_distill_loss", "metrics/mAP50B"):
        hist = client.get_metric_history(run.info.run_id, key)
        assert sorted(m.step for m in hist) == [0, 1], key  # stage A's epoch 0 and stage B's epoch 1
    arts = {a.path for a in client.list_artifacts(run.info.run_id, "checkpoints")}
    maps = {a.path for a in client.list_artifacts(run.info.run_id, "signal_maps")}
    assert arts == {"checkpoints/best.pt"}
    assert maps == {"signal_maps/epoch000.png", "signal_maps/epoch001.png"}


def test_tensorboard_scalars_and_images(tracked_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result, _ = tracked_run
    acc = EventAccumulator(str(result.run_dir / "tensorboard"), size_guidance={"images": 0, "scalars": 0})
    acc.Reload()
    tags = acc.Tags()
    assert [e.step for e in acc.Scalars("train/dino_loss")] == [0, 1]
    assert [e.step for e in acc.Scalars("metrics/mAP50B")] == [0, 1]
    imgs = acc.Images("signal_map")
    assert [e.step for e in imgs] == [0, 1] and imgs[0].encoded_image_string[:4] == b"\x89PNG"
    assert "train/obj_distill_loss" in tags["scalars"]


def _leveldb_log_records(data: bytes):
    """Payloads of W&B's transaction log: a 7-byte ``:W&B`` header, then LevelDB log records in 32 KiB
    blocks (checksum u32, length u16, type u8: 1 full, 2 first, 3 middle, 4 last). wandb >= 0.19 has no
    Python reader any more (its Go core writes the file), so the test reads the documented format itself."""
    assert data[:4] == b":W&B", "not a W&B transaction log"
    pos, block, parts = 7, 32768, []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block tail too short for a header is padding
            pos += block - pos % block
            continue
        length, kind = struct.unpack("<HB", data[pos + 4:pos + 7])
        payload = data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind == 0:
            break
        parts.append(payload)
        if kind in (1, 4):
            yield b"".join(parts)
            parts = []


def _wandb_records(run_dir: Path):
    from wandb.proto import wandb_internal_pb2

    files = sorted(run_dir.glob("wandb/offline-run-*/run-*.wandb"))
    out = []
    for f in files:
        for payload in _leveldb_log_records(f.read_bytes()):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(payload)
            out.append(rec)
    return files, out


def test_wandb_offline_run_holds_both_stages(tracked_run):
    result, _ = tracked_run
    files, records = _wandb_records(result.run_dir)
    run_ids = {r.run.run_id for r in records if r.WhichOneof("record_type") == "run"}
    assert run_ids == {"t1"}  # one W&B run id across stages and the resume
    steps = {}
    for r in records:
        if r.WhichOneof("record_type") == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in r.history.item}
            if "train/dino_loss" in items:
                steps[int(items["_step"])] = float(items["train/dino_loss"])
    assert sorted(steps) == [0, 1]
    config = {i.key: json.loads(i.value_json) for r in records if r.WhichOneof("record_type") == "run"
              for i in r.run.config.update}
    assert config["imgsz"] == 64 and config["stages"][0]["name"] == "a"  # the resolved config reaches W&B
    assert len(files) == 1 and len(list(files[0].parent.glob("files/media/images/signal_map_*.png"))) == 2


def test_periodic_checkpoints_named_by_stage_and_epoch_load_in_ultralytics(tracked_run):
    from ultralytics import YOLO

    from edgekit.checkpoints import safe_load

    result, _ = tracked_run
    ckpts = result.run_dir / "checkpoints"
    assert sorted(p.name for p in ckpts.glob("*_epoch*.pt")) == ["a_epoch000.pt", "b_epoch001.pt"]
    for name in ("a_epoch000.pt", "b_epoch001.pt", "best.pt", "last.pt"):
        state = safe_load(ckpts / name)["edgekit"]  # loadable safely, with edgekit's stage state
        assert state["stage_name"] in ("a", "b")
        assert YOLO(str(ckpts / name)).task == "obb"
