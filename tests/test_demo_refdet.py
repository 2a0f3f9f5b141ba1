"""The demo's RefDet part on its own (quick profile): every stage runs and lands in the summary.

The whole demo (OBB and RefDet) is tests/test_demo.py; this one checks the RefDet part in ~20 s.
"""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")


def test_refdet_part_runs_every_stage(tmp_path, monkeypatch):
    from edgekit.demo import DemoSummary
    from edgekit.demo_refdet import RUN_IDS, run_refdet_part

    monkeypatch.setenv("YOLO_OFFLINE", "1")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared CPU: see tests/train/fewshot/test_e2e.py
    try:
        summary = DemoSummary(out_dir=tmp_path)
        bundle = run_refdet_part(summary, tmp_path, profile="quick", seed=0)
    finally:
        torch.set_num_threads(threads)
    assert [r[0] for r in summary.rows] == ["refdet synth", "refdet train 2", "refdet train 3", "refdet eval",
                                            "refdet export", "refdet bench"]
    for run_id in RUN_IDS:
        assert (tmp_path / "runs" / run_id / "checkpoints" / "best.pt").is_file()
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["task"] == "refdet" and {"reference_encoder", "fp32", "int8_qdq"} <= set(manifest["models"])
    doc = json.loads((tmp_path / "refdet" / "eval" / "eval.json").read_text())
    assert len(doc["per_video"]) == 2 and doc["overall"]["n_gt"] > 0
    assert json.loads((tmp_path / "refdet" / "bench" / "bench.json").read_text())["parity"]["status"] == "passed"
    m = summary.metrics
    assert m["RefDet golden parity (both graphs, ORT)"] == "passed"
    assert m["RefDet ONNX parity (torch vs ORT)"].count("pass") == 2 and "FAIL" not in m["RefDet ONNX parity (torch vs ORT)"]
    assert " / " in m["RefDet mAP50 / ST-IoU (torch, unseen targets)"]
    assert "RefDet" in summary.render()


def test_a_rerun_removes_the_earlier_demos_refdet_runs_only(tmp_path):
    from edgekit.core.outdir import write_marker
    from edgekit.demo import WRITER, _prepare_out
    from edgekit.demo_refdet import RUN_IDS
    from edgekit.train.run import WRITER as TRAIN_WRITER

    out = tmp_path / "d"
    out.mkdir()
    write_marker(out, WRITER)
    for run_id in RUN_IDS:
        (out / "runs" / run_id / "checkpoints").mkdir(parents=True)
        write_marker(out / "runs" / run_id, TRAIN_WRITER)
    (out / "runs" / "mine").mkdir()  # not a demo run: left alone
    _prepare_out(out)
    assert sorted(p.name for p in (out / "runs").iterdir()) == ["mine"]
