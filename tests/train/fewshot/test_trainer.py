"""RefDet training: the run contract, exact resume, stage 3 with triplet, layer-wise LRs, one-line refusals."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("ultralytics")
pytest.importorskip("timm")

from edgekit.core.errors import ConfigError, DataError, ModelError  # noqa: E402
from edgekit.train.fewshot.api import train_refdet  # noqa: E402
from edgekit.train.fewshot.config import load_refdet_config  # noqa: E402
from edgekit.train.run import read_jsonl  # noqa: E402


class _Stop(Exception):
    """Stands for a kill after the first epoch's checkpoint."""


def _stop_after_first(epoch, record):
    if epoch == 0:
        raise _Stop


@pytest.fixture(scope="module")
def stage2_run(fewshot_root, tmp_path_factory):
    """Stage 2, 2 epochs uninterrupted (the reference for the resume test, and stage 3's weights)."""
    from tests.train.fewshot.conftest import TINY_MODEL

    project = tmp_path_factory.mktemp("runs")
    over = [f"data={fewshot_root}", f"project={project}", "imgsz=64", "epochs=2", "device=cpu",
            "episode.episodes_per_epoch=2", "episode.n_query=2", "episode.n_negative=1",
            "validation.frames_per_video=3", "optim.warmup_steps=1", "save_interval=1", *TINY_MODEL]
    return over, train_refdet(load_refdet_config(None, over), run_id="full", progress=False)


def _losses(run: Path):
    return [{k: v for k, v in r.items() if k not in ("time_s",)} for r in read_jsonl(run / "reports" / "train_metrics.jsonl")]


def test_run_contract_files_metrics_and_checkpoints(stage2_run):
    _, result = stage2_run
    run = result.run_dir
    for rel in ("checkpoints/last.pt", "checkpoints/best.pt", "checkpoints/epoch000.pt", "checkpoints/epoch001.pt",
                "reports/config_resolved.yaml", "reports/run_meta.json"):
        assert (run / rel).is_file(), rel
    train, val = read_jsonl(run / "reports/train_metrics.jsonl"), read_jsonl(run / "reports/val_metrics.jsonl")
    assert [r["epoch"] for r in train] == [0, 1] and [r["epoch"] for r in val] == [0, 1]
    for key in ("loss", "box", "cls", "dfl", "supcon", "cpe", "lr"):
        assert key in train[0], key
    assert all(np.isfinite(train[0][k]) for k in ("loss", "box", "cls", "dfl", "supcon", "cpe"))
    for key in ("val_loss", "val_cls", "ap50", "st_iou", "precision", "recall"):
        assert key in val[0], key
    lr = train[0]["lr"]  # layer-wise learning rates: encoder x0.1, backbone x1, fusion x2, head x2
    assert lr["encoder"] == pytest.approx(0.1 * lr["backbone"]) and lr["head"] == pytest.approx(2 * lr["backbone"])
    assert lr["fusion"] == pytest.approx(2 * lr["backbone"])
    from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint

    model, meta = load_refdet_checkpoint(result.best)
    assert meta["stage"] == 2 and meta["imgsz"] == 64 and "optimizer" not in meta
    assert torch.load(str(result.last), weights_only=True)["optimizer"]  # last.pt holds the resume state


def test_resume_gives_the_same_losses_as_an_uninterrupted_run(stage2_run):
    over, full = stage2_run
    with pytest.raises(_Stop):
        train_refdet(load_refdet_config(None, over), run_id="cut", progress=False, on_epoch=_stop_after_first)
    cut = full.run_dir.parent / "cut"
    assert [r["epoch"] for r in read_jsonl(cut / "reports/train_metrics.jsonl")] == [0]
    # resumed with a worker process building the batches: the same batches as the main process builds
    resumed = train_refdet(load_refdet_config(None, [*over, "workers=1"]), run_id="cut", resume=True, progress=False)
    assert _losses(resumed.run_dir) == _losses(full.run_dir)
    a, b = read_jsonl(full.run_dir / "reports/val_metrics.jsonl"), read_jsonl(cut / "reports/val_metrics.jsonl")
    assert [r["val_loss"] for r in a] == [r["val_loss"] for r in b]


def test_resume_refuses_a_changed_config_and_existing_runs(stage2_run):
    over, _ = stage2_run
    with pytest.raises(ConfigError, match="--resume with a changed config: imgsz"):
        train_refdet(load_refdet_config(None, [*over, "imgsz=96"]), run_id="full", resume=True, progress=False)
    with pytest.raises(ConfigError, match="already has checkpoints"):
        train_refdet(load_refdet_config(None, over), run_id="full", progress=False)


def test_stage3_fine_tunes_a_stage2_checkpoint_with_triplet(stage2_run):
    over, full = stage2_run
    s3 = [*over, "stage=3", f"weights={full.best}", "use_triplet=true", "negative_strategy=mixed", "epochs=1",
          "episode.episodes_per_epoch=1", "model.ref_size=56"]  # the checkpoint's model (ref_size 28) wins
    result = train_refdet(load_refdet_config(None, s3), run_id="s3", progress=False)
    assert "ref_size: 28" in (result.run_dir / "reports/config_resolved.yaml").read_text()
    rec = read_jsonl(result.run_dir / "reports/train_metrics.jsonl")[0]
    assert rec["stage"] == 3 and np.isfinite(rec["triplet"]) and np.isfinite(rec["supcon"])
    with pytest.raises(ConfigError, match="stage 3 fine-tunes a stage-2 model"):
        train_refdet(load_refdet_config(None, [*over, "stage=3"]), run_id="s3b", progress=False)


def test_stage1_has_no_contrastive_losses_and_freezes_the_encoder(tiny_run):
    from edgekit.train.fewshot.trainer import build_optimizer, init_model

    cfg = load_refdet_config(None, [*tiny_run, "stage=1", "epochs=1", "episode.episodes_per_epoch=1"])
    assert cfg.encoder_frozen and not cfg.contrastive
    result = train_refdet(cfg, run_id="s1", progress=False)
    rec = read_jsonl(result.run_dir / "reports/train_metrics.jsonl")[0]
    assert "supcon" not in rec and "cpe" not in rec and "encoder" not in rec["lr"]
    model, _ = init_model(cfg)
    model.encoder.requires_grad_(False)
    names = {g["name"] for g in build_optimizer(model, cfg).param_groups}
    assert names == {"backbone", "backbone_no_decay", "fusion", "fusion_no_decay", "head", "head_no_decay"}


def test_bad_inputs_are_one_line_errors_before_anything_is_written(tiny_run, tmp_path):
    with pytest.raises(DataError, match="is not a RefDet dataset"):
        train_refdet(load_refdet_config(None, [*tiny_run, f"data={tmp_path / 'nope'}"]), run_id="x", progress=False)
    with pytest.raises(ModelError, match="does not exist"):
        train_refdet(load_refdet_config(None, [*tiny_run, f"weights={tmp_path / 'none.pt'}"]), run_id="y",
                     progress=False)
    with pytest.raises(ModelError, match="model.encoder_weights"):
        train_refdet(load_refdet_config(None, [*tiny_run, "model.encoder_weights=auto",
                                               f"model.encoder_weights_dir={tmp_path / 'no'}"]), run_id="z", progress=False)
    with pytest.raises(ConfigError, match="n_way=9 but .* has 4 annotated targets"):
        train_refdet(load_refdet_config(None, [*tiny_run, "episode.n_way=9", "workers=1"]), run_id="w", progress=False)
    with pytest.raises(ConfigError, match="use_triplet is a stage-3 option"):
        load_refdet_config(None, [*tiny_run, "use_triplet=true"])
    assert not (tmp_path / "runs").exists()


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", "train", "refdet", *args], capture_output=True, text=True,
                          timeout=120)


def test_cli_flags_print_config_and_one_line_errors(fewshot_root, tmp_path):
    res = _cli("--data", str(fewshot_root), "--stage", "3", "--use-triplet", "--triplet-ratio", "0.4",
               "--negative-strategy", "background", "--save-interval", "2", "optim.lr0=0.002", "--print-config")
    assert res.returncode == 0, res.stderr
    for line in ("stage: 3", "use_triplet: true", "triplet_ratio: 0.4", "negative_strategy: background",
                 "save_interval: 2", "lr0: 0.002"):
        assert line in res.stdout, line
    res = _cli("--data", str(fewshot_root), "--stage", "3", f"project={tmp_path}")
    assert res.returncode == 1 and "stage 3 fine-tunes a stage-2 model" in res.stderr and "Traceback" not in res.stderr
    res = _cli("--data", str(tmp_path / "none"), f"project={tmp_path}")
    assert res.returncode == 1 and "is not a RefDet dataset" in res.stderr and len(res.stderr.strip().splitlines()) <= 2
    res = _cli("--data", str(fewshot_root), "--n-way", "3")
    assert res.returncode == 2 and "episode.n_way=3" in res.stderr


def test_predictor_sets_a_target_and_returns_frame_pixel_detections(stage2_run, fewshot_root):
    import cv2

    from edgekit.train.fewshot.checkpoint import load_refdet_checkpoint
    from edgekit.train.fewshot.predict import RefDetPredictor

    _, full = stage2_run
    model, meta = load_refdet_checkpoint(full.best)
    pred = RefDetPredictor(model, meta["imgsz"], conf=0.0, iou=0.5)
    sample = next((fewshot_root / "test" / "samples").iterdir())
    emb = pred.set_target([cv2.imread(str(p)) for p in sorted((sample / "object_images").glob("*.jpg"))])
    assert emb.shape == (1, model.embedding_dim)
    frame = np.random.default_rng(0).integers(0, 255, (96, 144, 3), dtype=np.uint8)
    dets = pred(frame)
    assert len(dets) > 0 and dets.boxes.shape[1] == 5 and np.all(dets.boxes[:, 4] == 0) and np.all(dets.class_ids == 0)
    xyxy = dets.xyxy
    assert xyxy[:, [0, 2]].min() >= 0 and xyxy[:, [0, 2]].max() <= 144 and xyxy[:, [1, 3]].max() <= 96


def test_docs_list_every_config_key():
    from edgekit.train.fewshot.config import config_table

    doc = (Path(__file__).resolve().parents[3] / "docs" / "refdet.md").read_text(encoding="utf-8")
    assert config_table() in doc, "docs/refdet.md's config table is stale: regenerate it (command in the doc)"
