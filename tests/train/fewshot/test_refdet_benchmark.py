"""benchmarks/refdet_gpu.py end to end on CPU (--smoke-cpu): synth, stage 2 + 3, 3-shot eval, complexity, JSON + MD."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "refdet_gpu.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("refdet_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_recipe_is_a_valid_config_for_both_stages(bench, tmp_path):
    from edgekit.train.fewshot.config import load_refdet_config

    args = bench.parse_args(["--device", "0"])
    for stage in (2, 3):
        cfg = load_refdet_config(None, bench.recipe(args, tmp_path, stage, 100.0, weights="w.pt"))
        assert cfg.stage == stage and cfg.max_time_s == 100.0 and cfg.model.ref_size == 112
    assert cfg.use_triplet and cfg.triplet_ratio == 0.3


@pytest.mark.slow
def test_smoke_cpu_writes_json_and_markdown(bench, tmp_path):
    assert bench.main(["--smoke-cpu", "--out", str(tmp_path), "--data-dir", str(tmp_path / "work")]) == 0
    result = json.loads((tmp_path / "refdet_gpu_cpu-smoke.json").read_text())
    assert {"stage2", "stage3", "final", "complexity"} <= set(result)
    assert 0.0 <= result["final"]["ap50"] <= 1.0 and result["stage2"]["test"]["videos"] == 2
    assert result["final"]["stage"] in ("stage2", "stage3") and result["encoder_pretrain"]["steps"] >= 1
    assert "model.encoder_weights=auto" in result["stage2"]["overrides"]
    assert (tmp_path / "refdet_gpu_cpu-smoke.log").is_file()
    c = result["complexity"]
    assert c["gflops_yolov8n_640"] == pytest.approx(8.7, abs=0.3)  # Ultralytics' published yolov8n figure
    assert c["nx_est_fps_640"] > 0 and (tmp_path / "refdet_gpu_cpu-smoke.md").is_file()


def test_pretrained_encoder_loads_through_the_product_resolver(bench, tmp_path):
    """The pretraining step's file is what `model.encoder_weights=auto` finds and loads, tensor for tensor."""
    import torch
    from safetensors.torch import load_file

    from benchmarks.refdet_encoder_pretrain import pretrain_encoder
    from edgekit.data.synth.refdet import generate_refdet_dataset
    from edgekit.train.fewshot.model import RefDetModel, RefDetModelConfig

    root = generate_refdet_dataset(tmp_path / "d", n_train=3, n_test=2, frames=6, imgsz=64, progress=False)
    cfg = RefDetModelConfig(encoder_weights="random", ref_size=28, encoder_kwargs={"depth": 1})
    stats = pretrain_encoder(cfg, root / "train", root / "test", tmp_path / "dinov2", "cpu", 0.5, ids=3)
    assert stats["steps"] >= 1 and stats["train_identities"] == 3 and stats["val_identities"] == 2
    assert 0.0 <= stats["val_top1_pretrained"] <= 1.0
    model = RefDetModel(cfg.model_copy(update={"encoder_weights": "auto", "encoder_weights_dir": str(tmp_path / "dinov2")}))
    saved = load_file(stats["weights"])
    assert set(saved) == set(model.encoder.state_dict())
    assert all(torch.equal(v, saved[k]) for k, v in model.encoder.state_dict().items())


def test_retrieval_top1_counts_crops_matched_to_their_own_references():
    import numpy as np
    import torch

    from benchmarks.refdet_encoder_pretrain import retrieval_top1

    labels = np.array([0, 0, 0, 1, 1, 1])
    is_ref = np.array([True, True, False, True, True, False])

    class OneHot:  # identity 0's crop looks like identity 1: one of two crops right
        def feature(self, x):
            return torch.eye(2)[torch.tensor([0, 0, 1, 1, 1, 1])[:len(x)]]

    assert retrieval_top1(OneHot(), (np.zeros((6, 3, 2, 2), np.uint8), labels, is_ref), torch.device("cpu")) == 0.5
