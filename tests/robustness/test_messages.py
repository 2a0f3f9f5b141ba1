"""Messages: every hint works when followed, flags are named as typed, third-party text is translated.

The config reference exists and is generated; usage errors exit 2 naming the flag; a suggested
override is itself accepted; no nested "error: ...: error:"; no Ultralytics/torch advice; no
message cut mid-word; calibration reads the image types datasets do.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from edgekit.core.errors import ConfigError, DataError, foreign_message, shorten, translate
from tests.robustness.conftest import REPO, assert_one_line_error, run_cli


def _usage_error(res, flag_or_text: str) -> str:
    """Click's usage error: exit 2, no traceback, one ``Error:`` line naming ``flag_or_text``."""
    assert res.rc == 2, res.stdout + res.stderr
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and flag_or_text in errors[0], res.stderr
    return errors[0]


# -- the config reference ----------------------------------------------------------------------------------------
def test_committed_config_reference_is_the_generated_one() -> None:
    from edgekit.cli.config_reference import render_config_reference

    committed = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert committed == render_config_reference(), "regenerate: python -m edgekit.cli.config_reference docs/config.md"


def test_config_reference_lists_every_key() -> None:
    from edgekit.cli.config_reference import render_config_reference
    from edgekit.train.obb.config import ObbTrainConfig, StageConfig

    text = render_config_reference()
    for key in ["imgsz", "teacher.imgsz", "distillation.weight", "logging.wandb", *ObbTrainConfig.model_fields]:
        if key not in ("teacher", "distillation", "logging"):
            assert f"`{key}`" in text, key
    for key in StageConfig.model_fields:
        assert f"`stages.<name>.{key}`" in text
    for flag in ("`--imgsz` (`imgsz`)", "`--calib-size` (`calib_size`)", "`--no-parity-gate` (`parity_gate`)"):
        assert flag in text


def test_config_errors_point_at_the_reference_that_exists(tmp_path: Path) -> None:
    res = run_cli(["train", "obb", "data=/d", "batch=0", "--print-config"], tmp_path)
    line = assert_one_line_error(res, 1, ["batch"])
    assert "README" not in line and "docs/config.md" in line and (REPO / "docs" / "config.md").is_file()


def test_print_config_prints_the_resolved_yaml_and_it_loads_back(tmp_path: Path) -> None:
    res = run_cli(["train", "obb", "--print-config", "data=/d", "imgsz=320", "stages.a.epochs=3"], tmp_path)
    assert res.rc == 0 and not res.stderr.strip(), res.stderr
    printed = yaml.safe_load(res.stdout)
    assert printed["imgsz"] == 320 and printed["stages"][0]["epochs"] == 3 and printed["data"] == "/d"
    (tmp_path / "cfg.yaml").write_text(res.stdout)
    again = run_cli(["train", "obb", "--config", tmp_path / "cfg.yaml", "--print-config"], tmp_path)
    assert again.rc == 0 and again.stdout == res.stdout
    assert not (tmp_path / "runs").exists()


# -- usage errors and hints that work when followed ----------------------------------------------------------------
@pytest.mark.parametrize("args, flag, suggestion", [
    (["--epochs", "3"], "--epochs", "stages.a.epochs=3"),
    (["--epochs=3"], "--epochs", "stages.a.epochs=3"),
    (["--imgsz", "320"], "--imgsz", "imgsz=320"),
    (["--batch-size", "8"], "--batch-size", "batch=8"),
    (["epochs"], "'epochs'", "imgsz=320"),
])
def test_option_looking_overrides_are_usage_errors_whose_fix_is_accepted(tmp_path: Path, args, flag: str,
                                                                        suggestion: str) -> None:
    line = _usage_error(run_cli(["train", "obb", "data=/d", *args], tmp_path), flag)
    assert suggestion in line
    follow = run_cli(["train", "obb", "--print-config", "data=/d", suggestion], tmp_path)
    assert follow.rc == 0, follow.stderr


@pytest.mark.parametrize("override, named, hint", [
    ("epochs=10", "'epochs'", "stages.0.epochs"),
    ("lr0=0.1", "'lr0'", "stages.0.lr0"),
    ("imgz=320", "'imgz'", "imgsz"),
    # a typo of a key one level down: the stage key, not the nearest top-level name ('teacher')
    ("epoch=10", "'epoch'", "stages.0.epochs"),
])
def test_unknown_key_hint_is_an_existing_key(tmp_path: Path, override: str, named: str, hint: str) -> None:
    line = assert_one_line_error(run_cli(["train", "obb", "data=/d", override, "--print-config"], tmp_path), 1, [named])
    assert f"did you mean '{hint}'?" in line
    value = override.split("=", 1)[1]
    assert run_cli(["train", "obb", "--print-config", "data=/d", f"{hint}={value}"], tmp_path).rc == 0


@pytest.mark.parametrize("override, hint", [
    ("hsv_h=0.1", "ultralytics.hsv_h"),  # an Ultralytics train argument: its home is ultralytics.*
    ("warmup=2", "ultralytics.warmup_epochs"),  # close to one (edgekit has a distillation warm-up too)
    ("warmup_epochs=2", "ultralytics.warmup_epochs"),
])
def test_unknown_key_that_is_an_ultralytics_argument_names_its_home(tmp_path: Path, override: str, hint: str) -> None:
    line = assert_one_line_error(run_cli(["train", "obb", "data=/d", override, "--print-config"], tmp_path), 1,
                                 [override.split("=")[0]])
    assert f"'{hint}'" in line
    value = override.split("=", 1)[1]
    assert run_cli(["train", "obb", "--print-config", "data=/d", f"{hint}={value}"], tmp_path).rc == 0


def test_core_override_hint_is_accepted_by_the_train_config() -> None:
    from edgekit.core.config import parse_override
    from edgekit.train.obb.config import load_train_config

    with pytest.raises(ConfigError) as info:
        parse_override("epochs")
    example = re.search(r"e\.g\. (\S+)", info.value.format()).group(1)
    load_train_config(None, ["data=/d", example])


@pytest.mark.parametrize("size, fixes", [(100, ("imgsz=96", "imgsz=128")), (33, ("imgsz=32", "imgsz=64"))])
def test_imgsz_not_a_multiple_of_32_is_refused_with_the_fix(tmp_path: Path, size: int, fixes) -> None:
    line = assert_one_line_error(run_cli(["train", "obb", "data=/d", f"imgsz={size}", "--print-config"], tmp_path),
                                 1, ["imgsz", *fixes])
    assert "got 100; got" not in line


@pytest.mark.parametrize("args, flag", [
    (["--imgsz", "16"], "--imgsz"), (["--calib-size", "0"], "--calib-size"), (["--val-size", "0"], "--val-size"),
    (["--conf", "2"], "--conf"), (["--max-int8-drop", "-1"], "--max-int8-drop"),
])
def test_export_option_errors_name_the_flag_with_exit_2(tmp_path: Path, args, flag: str) -> None:
    line = _usage_error(run_cli(["export", tmp_path / "m.pt", *args], tmp_path), flag)
    assert "calib_size" not in line and "val_size" not in line and "max_int8_drop" not in line


# -- no nested "error:", no foreign advice, no word cut in half ------------------------------------------------------
def test_no_nested_error_prefix(tmp_path: Path) -> None:
    assert DataError("a.txt:3: error: bad line").format() == "a.txt:3: bad line"
    assert DataError("error: x", "fix").format() == "x; fix"
    src = tmp_path / "dota"
    (src / "images").mkdir(parents=True)
    (src / "labelTxt").mkdir()
    (src / "labelTxt" / "a.txt").write_text("1 2 3\n")
    res = run_cli(["data", "convert", "--from", "dota", "--to", "yolo", src, tmp_path / "out"], tmp_path)
    line = assert_one_line_error(res, 1, ["a.txt:1"])
    assert line.count("error:") == 1


FOREIGN = [
    ("Weights only load failed. This file can still be loaded, to do so you have two options, do those steps only "
     "if you trust the source of the checkpoint. \n\t(1) In PyTorch 2.6, we changed the default value of the "
     "`weights_only` argument in `torch.load` from `False` to `True`. Re-running `torch.load` with `weights_only` "
     "set to `False` will likely succeed, but it can result in arbitrary code execution. Do it only if you got the "
     "file from a trusted source.\n\t(2) Alternatively, to load with `weights_only=True` please check the recommended "
     "steps in the following error message.\n\tWeightsUnpickler error: Unsupported global: GLOBAL os.system",
     "Unsupported global: GLOBAL os.system"),
    ("ERROR ❌️ m.pt appears to be an Ultralytics YOLOv5 model originally trained with "
     "https://github.com/ultralytics/yolov5.\nThis model is NOT forwards compatible with YOLOv8.\nRecommend fixes are "
     "to train a new model using the latest 'ultralytics' package or to run a command with an official Ultralytics "
     "model, i.e. 'yolo predict model=yolo26n.pt'", "appears to be an Ultralytics YOLOv5 model"),
    ("ERROR x.pt is corrupt. Please retry with weights_only=False.", "x.pt is corrupt"),
]


@pytest.mark.parametrize("text, kept", FOREIGN)
def test_foreign_advice_is_filtered(text: str, kept: str) -> None:
    message = translate(RuntimeError(text), "m.pt", DataError, "pass an edgekit checkpoint").format()
    assert kept in message and message.startswith("m.pt: ")
    for advice in ("weights_only", "yolo26n.pt", "Recommend", "trusted source", "❌"):
        assert advice not in message


def test_real_torch_weights_only_error_is_translated(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    path = tmp_path / "odd.pt"
    torch.save({"x": Path("not-allowed")}, str(path))  # a global weights_only refuses
    with pytest.raises(Exception) as info:
        torch.load(str(path), weights_only=True)
    message = foreign_message(info.value)
    assert "weights_only" not in message and "trusted" not in message and len(message) <= 203


def test_long_messages_are_cut_at_a_word_boundary() -> None:
    text = " ".join(f"word{i:03d}" for i in range(100))
    cut = shorten(text, 200)
    assert len(cut) <= 203 and cut.endswith("...")
    assert cut[:-3].split()[-1] in text.split()  # the last word is whole
    assert shorten("short text") == "short text"


# -- calibration reads what datasets hold ----------------------------------------------------------------------------
def test_calibration_accepts_every_dataset_image_type(tmp_path: Path) -> None:
    from edgekit.calib.dataset import CalibrationSet
    from edgekit.core.image_files import IMAGE_SUFFIXES
    from edgekit.core.letterbox import LetterboxSpec
    from edgekit.data import layout
    from tests.robustness._data_fixtures import write_image

    assert layout.IMAGE_SUFFIXES is IMAGE_SUFFIXES  # one list
    for i, suffix in enumerate((".webp", ".tif", ".bmp", ".png", ".jpg", ".tiff", ".jpeg", ".WEBP")):
        write_image(tmp_path / f"c{i}{suffix}", 40, 30, seed=i)
    calib = CalibrationSet.from_dir(tmp_path, LetterboxSpec(imgsz=32), size=8)
    assert len(calib) == 8
    assert next(calib.batches(8)).shape == (8, 3, 32, 32)


def test_calib_data_without_images_does_not_ask_for_the_flag_again(tmp_path: Path, obb_pt: Path) -> None:
    empty = tmp_path / "calib"
    empty.mkdir()
    (empty / "notes.txt").write_text("no images here")
    res = run_cli(["export", obb_pt, "--imgsz", "64", "--int8", "--calib-data", empty, "--out", tmp_path / "b"],
                  tmp_path)
    line = assert_one_line_error(res, 1, [str(empty), ".webp"])
    assert "pass --calib-data" not in line


# -- the demo suggests only its own flags --------------------------------------------------------------------------
def test_demo_errors_suggest_only_demo_flags(tmp_path: Path) -> None:
    from edgekit.cli.demo_cmd import DEMO_FLAGS, demo_error

    err = demo_error(ConfigError(f"run {tmp_path}/runs/demo already has checkpoints", "pass --resume, or a new --run-id"),
                     tmp_path)
    flags = re.findall(r"--[a-z][a-z0-9-]*", err.format())
    assert flags and set(flags) <= set(DEMO_FLAGS) and "--out" in flags
    kept = DataError("--out x is a file", "pass --out a directory path")
    assert demo_error(kept, tmp_path) is kept


# -- third-party errors at the stage boundary ------------------------------------------------------------------------
def test_errors_raised_inside_ultralytics_are_translated_naming_the_users_data(tmp_path: Path, monkeypatch) -> None:
    pytest.importorskip("ultralytics")
    from ultralytics.utils.checks import check_yaml

    from edgekit.core.errors import raised_inside
    from edgekit.train.obb.config import load_train_config
    from edgekit.train.obb.preflight import translate_stage_error

    generated = tmp_path / "runs" / "x" / "reports" / "data.yaml"
    with pytest.raises(Exception) as info:
        check_yaml(str(tmp_path / "nope_model.yaml"))
    assert raised_inside(info.value)
    cfg = load_train_config(None, [f"data={tmp_path / 'mine'}"])
    err = translate_stage_error(info.value, cfg, generated)
    assert err is not None and "reports/data.yaml" not in err.format() and "Traceback" not in err.format()
    bug = ValueError(f"{generated} is odd")  # raised by edgekit's own code: stays a traceback
    assert not raised_inside(bug) and translate_stage_error(bug, cfg, None) is None
    dataset = translate_stage_error(RuntimeError(f"Dataset '{generated}' images not found"), cfg, generated)
    assert str(tmp_path / "mine") in dataset.format() and str(generated) not in dataset.format()
    monkeypatch.setenv("EDGEKIT_TRACEBACK", "1")
    assert not raised_inside(info.value)


@pytest.mark.parametrize("exc, kind, named", [
    (OSError(28, "No space left on device"), "DataError", "project="),
    (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "DeviceError", "batch="),
])
def test_disk_full_and_out_of_memory_are_one_line_with_the_fix(tmp_path: Path, exc, kind: str, named: str) -> None:
    from edgekit.train.obb.config import load_train_config
    from edgekit.train.obb.preflight import translate_stage_error

    err = translate_stage_error(exc, load_train_config(None, [f"data={tmp_path}"]), None)
    assert type(err).__name__ == kind and named in err.format() and "\n" not in err.format()
