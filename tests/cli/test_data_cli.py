"""`edgekit data ...`: help on every subcommand, check output and exit codes (CliRunner and a real
subprocess), convert, and synth commands passing their options to the generators."""

from __future__ import annotations

import json
import subprocess
import sys
import types
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from edgekit.cli.main import cli
from edgekit.core.errors import DataError
from tests.data import defect_sets as ds

SUBCOMMANDS = [["data"], ["data", "synth"], ["data", "synth", "obb"], ["data", "synth", "refdet"],
               ["data", "check"], ["data", "convert"], ["data", "tile"]]


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args))


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=" ".join)
def test_help_on_every_subcommand(args) -> None:
    result = invoke(*args, "--help")
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and args[-1] in result.output


def test_check_clean_exits_0_with_summary(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    result = invoke("data", "check", str(root))
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines() == [f"{root} (yolo-obb): checked 7 files, 0 errors, 0 warnings"]


def test_check_defects_exits_1_and_prints_one_line_per_problem(tmp_path: Path) -> None:
    root, planted = ds.dota_defects(tmp_path / "dota")
    result = invoke("data", "check", str(root), "--format", "dota")
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == len(planted) + 1
    expected = {f"{root / rel}:{line}: {severity}:" for rel, line, _, severity in planted}
    assert {" ".join(line.split()[:2]) for line in lines[:-1]} == expected
    assert lines[-1].endswith(f"{sum(p[3] == 'error' for p in planted)} errors, 1 warnings")


def test_check_warnings_only_exits_0(tmp_path: Path) -> None:
    root = ds.yolo_obb_clean(tmp_path / "ds")
    ds.write_image(root / "images/train/background.jpg")
    result = invoke("data", "check", str(root))
    assert result.exit_code == 0, result.output
    assert "background.jpg:0: warning: no label file" in result.output


def test_check_json(tmp_path: Path) -> None:
    root, planted = ds.refdet_defects(tmp_path / "refdet")
    result = invoke("data", "check", str(root), "--json")
    assert result.exit_code == 1
    report = json.loads(result.output)
    assert report["format"] == "refdet" and report["ok"] is False
    assert {(i["code"], i["line"]) for i in report["issues"]} == {(p[2], p[1]) for p in planted}


def test_check_classes_option(tmp_path: Path) -> None:
    root = ds.dota_clean(tmp_path / "dota")
    result = invoke("data", "check", str(root), "--classes", "plane")
    assert result.exit_code == 1 and "unknown class 'ship'" in result.output
    assert invoke("data", "check", str(root), "--classes", "plane,ship").exit_code == 0


def test_check_missing_path_is_a_user_error(tmp_path: Path) -> None:
    result = invoke("data", "check", str(tmp_path / "nope"))
    assert isinstance(result.exception, DataError)


def _subprocess(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgekit", *args], capture_output=True, text=True, timeout=120)


def test_check_as_a_real_process_exit_codes(tmp_path: Path) -> None:
    clean = ds.coco_clean(tmp_path / "clean")
    ok = _subprocess("data", "check", str(clean))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 errors, 0 warnings" in ok.stdout
    broken, planted = ds.coco_defects(tmp_path / "broken")
    bad = _subprocess("data", "check", str(broken), "--format", "coco")
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{broken / 'annotations/bad_json.json'}:5: error: invalid JSON" in bad.stdout
    assert f"{broken / 'annotations/out_of_range.json'}:6: error: annotation 2: bbox" in bad.stdout


def test_convert_writes_a_checked_dataset(tmp_path: Path) -> None:
    src = ds.dota_clean(tmp_path / "dota")
    out = tmp_path / "yolo"
    result = invoke("data", "convert", "--from", "dota", "--to", "yolo-obb", str(src), str(out), "--classes", "plane")
    assert result.exit_code == 0, result.output
    assert "val points at the train images" in result.output
    assert f"wrote yolo-obb dataset {out} (1 classes; train: 2 images / 2 objects)" in result.output
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == {0: "plane"}
    assert invoke("data", "check", str(out)).exit_code == 0
    again = invoke("data", "convert", "--from", "dota", "--to", "yolo-obb", str(src), str(out))
    assert isinstance(again.exception, DataError)


@pytest.mark.parametrize("args", [
    ["--from", "yolo", "--to", "yolo-obb"],
    ["--from", "dota", "--to", "dota"],
    ["--to", "yolo"],
])
def test_convert_rejects_bad_options_as_usage_errors(tmp_path: Path, args) -> None:
    result = invoke("data", "convert", *args, str(tmp_path), str(tmp_path / "out"))
    assert result.exit_code == 2


@pytest.fixture
def fake_generators(monkeypatch):
    """Stand-ins for the synth modules that record what the commands passed them."""
    calls = {}

    def record(name):
        def generate(out, **kwargs):
            calls[name] = (Path(out), kwargs)
            return Path(out)
        return generate

    package = types.ModuleType("edgekit.data.synth")
    obb = types.ModuleType("edgekit.data.synth.obb")
    obb.generate_obb_dataset = record("obb")
    refdet = types.ModuleType("edgekit.data.synth.refdet")
    refdet.generate_refdet_dataset = record("refdet")
    for module in (package, obb, refdet):
        monkeypatch.setitem(sys.modules, module.__name__, module)
    return calls


def test_synth_commands_pass_options_through(tmp_path: Path, fake_generators) -> None:
    result = invoke("data", "synth", "obb", "--out", str(tmp_path / "o"), "--n-train", "3", "--n-val", "2",
                    "--imgsz", "96", "--seed", "7")
    assert result.exit_code == 0, result.output
    assert fake_generators["obb"] == (tmp_path / "o", {"n_train": 3, "n_val": 2, "imgsz": 96, "seed": 7,
                                                        "difficulty": "standard", "workers": 0})
    result = invoke("data", "synth", "refdet", "--out", str(tmp_path / "r"), "--n-train", "2", "--n-test", "1",
                    "--frames", "5", "--imgsz", "64", "--fps", "4", "--seed", "1", "--workers", "3")
    assert result.exit_code == 0, result.output
    assert fake_generators["refdet"] == (tmp_path / "r", {"n_train": 2, "n_test": 1, "frames": 5, "imgsz": 64,
                                                          "fps": 4, "seed": 1, "workers": 3})


@pytest.mark.parametrize("args", [["obb", "--n-train", "0"], ["refdet", "--frames", "0"], ["obb"],
                                  ["refdet", "--workers", "-1"]])
def test_synth_validates_options(tmp_path: Path, args, fake_generators) -> None:
    extra = [] if args == ["obb"] else ["--out", str(tmp_path / "x")]
    assert invoke("data", "synth", *args, *extra).exit_code == 2
    assert not fake_generators


@pytest.mark.parametrize("kind, args", [
    ("obb", ["--n-train", "2", "--n-val", "1", "--imgsz", "64"]),
    ("refdet", ["--n-train", "1", "--n-test", "1", "--frames", "4", "--imgsz", "64", "--fps", "4"]),
])
def test_real_synth_output_passes_check(tmp_path: Path, kind: str, args) -> None:
    pytest.importorskip(f"edgekit.data.synth.{kind}")
    out = tmp_path / kind
    result = invoke("data", "synth", kind, "--out", str(out), *args)
    assert result.exit_code == 0, result.output
    check = invoke("data", "check", str(out))
    assert check.exit_code == 0, check.output
    assert "0 errors, 0 warnings" in check.output


@pytest.mark.parametrize("kind", ["obb", "refdet"])
@pytest.mark.parametrize("out, message", [
    ("afile", "afile is a file"),
    ("afile/sub", "afile/sub cannot be created"),
    ("foreign", "is not empty and edgekit did not write it (e.g. 'notes.txt')"),
])
def test_synth_bad_out_is_one_line_exit_1_and_touches_nothing(tmp_path: Path, kind: str, out: str,
                                                              message: str) -> None:
    pytest.importorskip(f"edgekit.data.synth.{kind}")
    (tmp_path / "afile").write_text("keep")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign/notes.txt").write_text("keep")
    res = _subprocess("data", "synth", kind, "--out", str(tmp_path / out), "--n-train", "1", "--imgsz", "64")
    assert res.returncode == 1, res.stdout + res.stderr
    assert res.stderr.strip().splitlines() == [res.stderr.strip()] and message in res.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "foreign"]
    assert [p.name for p in (tmp_path / "foreign").iterdir()] == ["notes.txt"]


def test_synth_may_replace_its_own_earlier_output(tmp_path: Path) -> None:
    pytest.importorskip("edgekit.data.synth.obb")
    args = ["data", "synth", "obb", "--out", str(tmp_path / "ds"), "--n-val", "1", "--imgsz", "64"]
    assert invoke(*args, "--n-train", "1").exit_code == 0
    again = invoke(*args, "--n-train", "2")
    assert again.exit_code == 0, again.output
    assert len(list((tmp_path / "ds/images/train").iterdir())) == 2
