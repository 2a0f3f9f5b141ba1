"""`edgekit demo`, the README's main job, end to end as a user runs it (quick profile)."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def test_demo_quick_runs_every_stage_and_writes_a_summary(tmp_path):
    env = {**os.environ, "YOLO_OFFLINE": "1", "WANDB_MODE": "disabled"}
    res = subprocess.run([sys.executable, "-m", "edgekit", "demo", "--profile", "quick", "--out", str(tmp_path / "d")],
                         capture_output=True, text=True, timeout=900, env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "edgekit demo: results" in res.stdout
    summary = json.loads((tmp_path / "d" / "demo_summary.json").read_text())
    assert [s["stage"] for s in summary["stages"]] == ["synth", "check", "train", "export", "bench", "serve",
                                                       "refdet synth", "refdet train 2", "refdet train 3",
                                                       "refdet eval", "refdet export", "refdet bench"]
    bundle = tmp_path / "d" / "runs" / "demo" / "bundle"
    for name in ("manifest.json", "model.onnx", "model.int8.qdq.onnx", "onnx_parity.json", "export_report.json"):
        assert (bundle / name).is_file(), name
    assert summary["metrics"]["ONNX parity (torch vs ORT)"].startswith("pass")
    for precision in ("fp32", "int8"):  # the demo ends with `edgekit bench` of its bundle
        assert json.loads((tmp_path / "d" / "bench" / precision / "bench.json").read_text())["schema_version"] == 1
    assert not summary["metrics"]["serve /metrics"].startswith("0 frames")  # then `edgekit serve` for a few seconds
    # then the few-shot part: RefDet trained, evaluated, exported to two graphs and benched
    assert summary["metrics"]["RefDet golden parity (both graphs, ORT)"] == "passed"
    assert json.loads((tmp_path / "d" / "refdet" / "bench" / "bench.json").read_text())["bundle"]["task"] == "refdet"


def test_demo_bad_out_fails_in_one_line_before_any_work(tmp_path):
    (tmp_path / "afile").write_text("keep")
    for out in ("afile", "afile/sub"):
        res = subprocess.run([sys.executable, "-m", "edgekit", "demo", "--profile", "quick", "--out", str(tmp_path / out)],
                             capture_output=True, text=True, timeout=120, cwd=tmp_path)
        assert res.returncode == 1, res.stderr[-3000:]
        assert res.stderr.strip().splitlines() == [f"error: --out {tmp_path / out} "
                                                   + ("is a file" if out == "afile" else f"cannot be created: {tmp_path / 'afile'} is a file")
                                                   + "; pass --out a directory path"]
        assert "[synth]" not in res.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile"]
