"""Synthetic OBB difficulties: standard is the original output byte for byte; easy/hard give valid labels;
hard has smaller, denser objects and its look-alike classes."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from edgekit.core.errors import ConfigError
from edgekit.data.synth import OBB_CLASS_NAMES, generate_obb_dataset, render_obb_scene
from edgekit.data.synth.difficulty import render_difficulty_scene
from edgekit.data.synth.shapes import HARD_CLASS_NAMES

# sha256 of a 4 + 2 image, 128 px, seed 3 dataset (labels and JPEGs) and of four raw scenes, written by
# the generator before difficulties existed: the default must keep producing exactly these bytes.
STANDARD_TREE_SHA = "f981cf9b4e971fc567c7f19100ee43dcba5960665a230b510f6df99a8f0b41bd"
STANDARD_SCENES_SHA = "bbde25fff794a0597e96291e862389ea7a53656364cf546b08e618d3b0abbc58"


def _tree_sha(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name not in ("data.yaml", ".edgekit-output.json"):
            h.update(p.relative_to(root).as_posix().encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_standard_is_todays_output_byte_for_byte(tmp_path: Path) -> None:
    default = generate_obb_dataset(tmp_path / "a", n_train=4, n_val=2, imgsz=128, seed=3, progress=False)
    named = generate_obb_dataset(tmp_path / "b", n_train=4, n_val=2, imgsz=128, seed=3, progress=False,
                                 difficulty="standard")
    parallel = generate_obb_dataset(tmp_path / "c", n_train=4, n_val=2, imgsz=128, seed=3, progress=False, workers=2)
    assert _tree_sha(default) == _tree_sha(named) == _tree_sha(parallel) == STANDARD_TREE_SHA
    h = hashlib.sha256()
    for s in range(4):
        scene = render_difficulty_scene(np.random.default_rng([3, 0, s]), 128, "standard")
        assert np.array_equal(scene.image, render_obb_scene(np.random.default_rng([3, 0, s]), 128).image)
        h.update(scene.image.tobytes())
    assert h.hexdigest() == STANDARD_SCENES_SHA


@pytest.mark.parametrize("difficulty, names", [("easy", OBB_CLASS_NAMES), ("hard", HARD_CLASS_NAMES)])
def test_each_difficulty_writes_valid_labels_ultralytics_accepts(tmp_path: Path, difficulty, names) -> None:
    from ultralytics.data.utils import verify_image_label

    root = generate_obb_dataset(tmp_path / difficulty, n_train=3, n_val=2, imgsz=192, seed=1, progress=False,
                                difficulty=difficulty)
    assert yaml.safe_load((root / "data.yaml").read_text())["names"] == dict(enumerate(names))
    n_rows = 0
    for img in sorted((root / "images").rglob("*.jpg")):
        label = root / "labels" / img.parent.name / f"{img.stem}.txt"
        rows = [r.split() for r in label.read_text().splitlines()]
        n_rows += len(rows)
        for row in rows:
            corners = np.array(row[1:], float).reshape(4, 2)
            assert 0 <= int(row[0]) < len(names) and corners.min() >= 0 and corners.max() <= 1
        out = verify_image_label((str(img), str(label), "", False, len(names), 0, 0, False))
        assert out[0] is not None and out[8] == 0, out[-1]
    assert n_rows > 0
    again = generate_obb_dataset(tmp_path / "again", n_train=3, n_val=2, imgsz=192, seed=1, progress=False,
                                 difficulty=difficulty)
    assert _tree_sha(again) == _tree_sha(root)


def _stats(difficulty: str, imgsz: int = 320, n: int = 30):
    counts, sizes, classes = [], [], set()
    for seed in range(n):
        scene = render_difficulty_scene(np.random.default_rng(seed), imgsz, difficulty)
        counts.append(len(scene.objects))
        sizes += [np.sqrt(o.length * o.width) / imgsz for o in scene.objects]
        classes |= {o.class_id for o in scene.objects}
    return float(np.mean(counts)), float(np.median(sizes)), classes


def test_hard_has_smaller_denser_objects_and_the_look_alikes() -> None:
    easy, standard, hard = _stats("easy"), _stats("standard"), _stats("hard")
    assert hard[0] > 2 * standard[0] > 2 * easy[0]  # denser
    assert hard[1] < 0.4 * standard[1] and easy[1] >= standard[1]  # much smaller (round 2: ~12-75 px at 640)
    assert hard[2] == set(range(len(HARD_CLASS_NAMES))) and standard[2] == set(range(len(OBB_CLASS_NAMES)))


def test_scene_side_draws_a_crop_of_a_bigger_scene() -> None:
    big = [render_difficulty_scene(np.random.default_rng(s), 320, "hard", scene_side=640) for s in range(20)]
    own = [render_difficulty_scene(np.random.default_rng(s), 320, "hard") for s in range(20)]
    assert np.mean([len(s.objects) for s in big]) < 0.5 * np.mean([len(s.objects) for s in own])
    assert (np.median([o.length for s in big for o in s.objects])
            > 1.5 * np.median([o.length for s in own for o in s.objects]))


def test_bad_difficulty_and_frame_size_combination_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="difficulty"):
        generate_obb_dataset(tmp_path / "x", n_train=1, n_val=1, imgsz=128, difficulty="insane", progress=False)
    with pytest.raises(ConfigError, match="frame_size"):
        generate_obb_dataset(tmp_path / "y", n_train=1, n_val=1, frame_size=512, difficulty="hard", progress=False)


def test_cli_difficulty_option(tmp_path: Path) -> None:
    from edgekit.cli.main import cli

    res = CliRunner().invoke(cli, ["data", "synth", "obb", "--out", str(tmp_path / "d"), "--n-train", "2",
                                   "--n-val", "1", "--imgsz", "128", "--difficulty", "hard"])
    assert res.exit_code == 0, res.output
    assert "hard" in res.output and len(yaml.safe_load((tmp_path / "d" / "data.yaml").read_text())["names"]) == 7
    bad = CliRunner().invoke(cli, ["data", "synth", "obb", "--out", str(tmp_path / "e"), "--difficulty", "nope"])
    assert bad.exit_code == 2


def test_hard_decoys_are_class_outlines_without_markings_clear_of_the_objects() -> None:
    from edgekit.data.synth.difficulty import PROFILES, _draw_body_only, _place_decoys
    from edgekit.data.synth.shapes import ObjectSpec, draw_object

    rng = np.random.default_rng(0)
    ground = np.full((640, 640, 3), 100.0, np.float32)
    obj = ObjectSpec(2, 320.0, 320.0, 30.0, 15.0, 0.3, (200.0, 200.0, 200.0), (20.0, 20.0, 20.0))
    decoys = _place_decoys(rng, ground, 40, 640.0, PROFILES["hard"], [obj])
    assert 25 <= len(decoys) <= 40 and {d.class_id for d in decoys} == set(range(len(HARD_CLASS_NAMES)))
    assert all(np.hypot(d.cx - 320, d.cy - 320) > 0.7 * (d.radius() + obj.radius()) for d in decoys)
    # faded towards the grey ground: the body is closer to it than the usual contrasting colour (>= 70 apart)
    assert np.median([abs(np.mean(d.body) - 100.0) for d in decoys]) < 60
    marked, plain = ground.copy(), ground.copy()
    draw_object(marked, obj)
    _draw_body_only(plain, obj)
    differ = np.abs(marked - plain).max(-1) > 1
    assert 0 < differ.sum() < 0.5 * (np.abs(plain - ground).max(-1) > 1).sum()  # only the markings differ


def test_scene_side_dataset_option(tmp_path: Path) -> None:
    root = generate_obb_dataset(tmp_path / "d", n_train=2, n_val=1, imgsz=128, progress=False, difficulty="hard",
                                scene_side=640)
    assert len(list((root / "images" / "train").iterdir())) == 2
    with pytest.raises(ConfigError):
        generate_obb_dataset(tmp_path / "e", n_train=2, n_val=1, imgsz=128, progress=False, scene_side=640)
