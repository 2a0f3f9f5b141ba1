"""``edgekit bench`` and ``edgekit bench compare`` as a user runs them: real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


def _run(*args: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=300,
                          cwd=str(cwd), env=env)


def _one_line_error(res: subprocess.CompletedProcess, *needles: str) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    lines = [ln for ln in res.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), res.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def bench_run(small_bundle, tmp_path) -> Path:
    out = tmp_path / "run_a"
    res = _run("bench", str(small_bundle), "--iterations", "10", "--warmup", "2", "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stderr
    assert "| end to end |" in res.stdout
    return out


def test_bench_writes_json_markdown_and_plots_or_says_why_not(bench_run):
    names = sorted(p.name for p in bench_run.iterdir())
    data = json.loads((bench_run / "bench.json").read_text())
    assert {"bench.json", "bench.md"} <= set(names)
    try:
        import matplotlib  # noqa: F401

        assert {"latency_hist.png", "timeline.png"} <= set(names)
    except ImportError:
        assert any("matplotlib" in n for n in data["notes"])
    assert data["schema_version"] == 1 and data["latency"]["end_to_end"]["n"] == 10
    assert "| pipelined (queue 2) |" in (bench_run / "bench.md").read_text()


def test_json_flag_prints_the_report(small_bundle, tmp_path):
    res = _run("bench", "run", str(small_bundle), "--iterations", "3", "--warmup", "0", "--json", "--no-plots",
               "--no-progress", "--out", str(tmp_path / "o"))
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)["settings"]["iterations"] == 3


def test_rerun_replaces_its_own_output_but_never_foreign_files(small_bundle, bench_run):
    args = ("bench", str(small_bundle), "--iterations", "2", "--warmup", "0", "--no-progress", "--out", str(bench_run))
    assert _run(*args).returncode == 0
    (bench_run / "mine.txt").write_text("keep me")
    _one_line_error(_run(*args), "did not write", "mine.txt")
    assert (bench_run / "mine.txt").read_text() == "keep me"


def test_compare_prints_differences(small_bundle, bench_run, tmp_path):
    other = tmp_path / "run_b"
    assert _run("bench", str(small_bundle), "--iterations", "5", "--warmup", "0", "--out", str(other),
                "--no-progress", "--no-plots").returncode == 0
    res = _run("bench", "compare", str(bench_run / "bench.json"), str(other))
    assert res.returncode == 0, res.stderr
    assert "| end to end p50 ms |" in res.stdout and "%)" in res.stdout and "| parity |" in res.stdout


def _edit(src: Path, dst: Path, **changes) -> Path:
    data = json.loads((src / "bench.json").read_text())
    for dotted, value in changes.items():
        node = data
        *path, last = dotted.split("__")
        for key in path:
            node = node[key]
        node[last] = value
    dst.write_text(json.dumps(data))
    return dst


def test_compare_shows_energy_per_frame_from_the_jetson_power_section(bench_run, tmp_path):
    a = _edit(bench_run, tmp_path / "a.json", power={"available": True, "energy_per_frame_mj": 40.0})
    b = _edit(bench_run, tmp_path / "b.json", power={"available": False, "energy_per_frame_mj": None})
    c = _edit(bench_run, tmp_path / "c.json", power={"available": True, "energy_per_frame_mj": 30.0})
    res = _run("bench", "compare", str(a), str(b), str(c))
    assert res.returncode == 0, res.stderr
    row = next(ln for ln in res.stdout.splitlines() if ln.startswith("| energy per frame mJ"))
    assert row.split("|")[2:5] == [" 40 ", " - ", " 30 (-25.0%) "]


@pytest.mark.parametrize("change, needle", [
    ({"bundle__onnx_sha256": "0" * 64}, "different model (ONNX sha256)"),
    ({"settings__precision": "int8"}, "different precision"),
])
def test_compare_refuses_different_models_or_precisions_without_force(bench_run, tmp_path, change, needle):
    other = _edit(bench_run, tmp_path / "other.json", **change)
    _one_line_error(_run("bench", "compare", str(bench_run), str(other)), needle, "--force")
    res = _run("bench", "compare", "--force", str(bench_run), str(other))
    assert res.returncode == 0 and "| end to end p50 ms |" in res.stdout


def test_wrong_bundle_path(tmp_path):
    _one_line_error(_run("bench", str(tmp_path / "missing")), "does not exist")


def test_corrupt_onnx_is_named(small_bundle):
    (small_bundle / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    _one_line_error(_run("bench", str(small_bundle), "--iterations", "1"), "model.onnx")


def test_corrupt_onnx_with_a_matching_manifest_is_named(small_bundle):
    """Re-hashed so Bundle.open's checksum passes: the ONNX loader itself must refuse it in one line."""
    from edgekit.core.manifest import describe_files, load_manifest, write_manifest

    (small_bundle / "model.onnx").write_bytes(b"\x08\x07garbage" * 10)
    m = load_manifest(small_bundle)
    write_manifest(m.model_copy(update={"files": describe_files(small_bundle, list(m.files))}), small_bundle)
    _one_line_error(_run("bench", str(small_bundle), "--iterations", "1"), "model.onnx")


def test_empty_images_dir(small_bundle, tmp_path):
    (tmp_path / "empty").mkdir()
    _one_line_error(_run("bench", str(small_bundle), "--images", str(tmp_path / "empty")), "holds no images")


def test_missing_video(small_bundle, tmp_path):
    _one_line_error(_run("bench", str(small_bundle), "--video", str(tmp_path / "x.mp4")), "x.mp4")


@pytest.mark.parametrize("args, needle", [
    (("--iterations", "0"), "--iterations"),
    (("--iterations", "5", "--duration", "1"), "not both"),
    (("--host", "root@h"), "--device jetson"),
    (("--device", "jetson"), "--host"),
    (("--precision", "fp64"), "--precision"),
])
def test_usage_errors_exit_2(small_bundle, args, needle):
    res = _run("bench", str(small_bundle), *args)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr.splitlines()[-1]


def test_static_batch_model_refuses_batch_n(small_bundle):
    _one_line_error(_run("bench", str(small_bundle), "--iterations", "2", "--batch", "4"), "static batch", "--dynamic")


def test_dynamic_batch_model_times_batches(make_bundle):
    from edgekit.bench import run_bench

    bundle = make_bundle("dyn", dynamic=True)
    r = run_bench(bundle, {"iterations": 4, "warmup": 0, "batch": 3}, progress=False)
    assert r.batch.batch == 3 and r.batch.host.n == 4 and r.batch.images_per_s > 0


def test_dataset_with_other_classes_is_refused(small_bundle, tmp_path):
    cv2 = pytest.importorskip("cv2")
    (tmp_path / "d" / "images" / "val").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "d" / "images" / "val" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "d" / "data.yaml").write_text("val: images/val\nnames: {0: a, 1: b, 2: c}\n")
    _one_line_error(_run("bench", str(small_bundle), "--data", str(tmp_path / "d")), "3 classes", "2")


def test_jetson_handover_without_the_jetson_package_is_one_line(small_bundle):
    code = ("import sys; sys.modules['edgekit.jetson'] = None\n"  # as on an install without edgekit.jetson
            "from edgekit.cli.main import main\n"
            f"main(['bench', {str(small_bundle)!r}, '--device', 'jetson', '--host', 'root@127.0.0.1'])\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(REPO)))
    _one_line_error(res, "--device jetson is not available")


@pytest.mark.parametrize("settings", [
    {},
    {"backend": "tensorrt", "device": "jetson", "precision": "int8", "duration_s": 2.5, "warmup": 0, "warmup_s": 1.5},
    {"images": "/remote/imgs", "data": "/remote/ds", "batch": 4, "parity": False, "uint8_input": True,
     "iterations": 7, "pipeline_sessions": 2},
    {"tile": 640, "tile_overlap": 128, "iterations": 3},
    {"tile": 0},
])
def test_cli_args_reproduce_the_settings(settings, monkeypatch, tmp_path):
    """What the Jetson path runs remotely: BenchSettings -> argv -> the same BenchSettings."""
    from click.testing import CliRunner

    import edgekit.bench
    from edgekit.bench import BenchSettings
    from edgekit.cli.main import cli

    want = BenchSettings(**settings)
    seen = []

    def fake_run_bench(bundle, s, progress=True):
        seen.append(s)
        raise SystemExit(0)

    monkeypatch.setattr(edgekit.bench, "run_bench", fake_run_bench)
    res = CliRunner().invoke(cli, ["bench", str(tmp_path), *want.cli_args()])
    assert res.exit_code == 0, res.output
    expected = want.model_copy(update={"device": "cuda" if want.backend == "tensorrt" else "cpu"}
                               if want.device == "jetson" else {})
    if expected.iterations is None and expected.duration_s is None:
        expected = expected.model_copy(update={"iterations": 100})
    assert seen == [expected]


def test_sliced_bench_through_the_cli(make_bundle, tmp_path):
    bundle = make_bundle("tiled", dynamic=True, per_image=True)
    out = tmp_path / "sliced"
    res = _run("bench", str(bundle), "--tile", "32", "--tile-overlap", "8", "--iterations", "3", "--warmup", "0",
               "--no-plots", "--no-progress", "--out", str(out))
    assert res.returncode == 0, res.stderr
    report = json.loads((out / "bench.json").read_text())
    assert any("sliced inference: 32-px tiles, 8-px overlap" in n for n in report["notes"])
    _one_line_error(_run("bench", str(bundle), "--tile", "32", "--batch", "2"), "tile")


def test_out_inside_the_bundle_is_refused_before_measuring(small_bundle):
    _one_line_error(_run("bench", str(small_bundle), "--out", str(small_bundle / "results")), "inside the source")
    assert not (small_bundle / "results").exists()


def test_compare_of_a_missing_file_is_one_line(bench_run, tmp_path):
    _one_line_error(_run("bench", "compare", str(bench_run), str(tmp_path / "nope.json")), "nope.json", "does not exist")


def test_pipeline_sessions_run_the_pipelined_part_on_worker_sessions(small_bundle, tmp_path):
    """--pipeline-sessions 2: the ORT runner gets two single-threaded worker sessions (the pipelined FPS runs
    on them); 1 is refused (it adds nothing), and so is any other backend."""
    from edgekit.bench import BenchSettings, run_bench
    from edgekit.core.errors import ConfigError

    report = run_bench(small_bundle, {"iterations": 5, "warmup": 1, "max_warmup": 3, "parity": False,
                                      "pipeline_sessions": 2}, progress=False)
    assert report.throughput.pipelined_fps > 0 and report.settings.pipeline_sessions == 2
    res = _run("bench", str(small_bundle), "--pipeline-sessions", "1")
    assert res.returncode == 2 and "1 adds nothing" in res.stderr and "Traceback" not in res.stderr
    with pytest.raises(ValueError, match="pipeline_sessions 1 adds nothing"):
        BenchSettings(pipeline_sessions=1)
    with pytest.raises(ConfigError, match="onnxruntime option"):
        run_bench(small_bundle, BenchSettings(backend="tensorrt", device="cuda", pipeline_sessions=2), progress=False)
