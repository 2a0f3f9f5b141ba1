"""benchmarks/distill_gain.py: the run plan, per-run datasets, the commands, and the mean ± std / paired-gain table."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "distill_gain.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("distill_gain", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["distill_gain"] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("distill_gain", None)


def test_plan_pairs_every_variant_with_its_random_control_and_one_none_baseline(bench, tmp_path) -> None:
    args = bench.parse_args(["--work", str(tmp_path)])
    jobs = bench.plan_jobs(args)
    ids = [j.run_id for j in jobs]
    variants = args.variants.split(",")
    assert len(variants) == 5 and {j.size for j in jobs} == {100}
    assert len(ids) == len(set(ids)) == 3 + 2 * 3 * len(variants)
    for arm in ("random", "trained"):
        assert {(j.variant, j.seed) for j in jobs if j.arm == arm} == {(v, s) for v in variants for s in (0, 1, 2)}
    assert all(j.needs_teacher == (j.arm == "trained") for j in jobs)
    # start order: the teacher-free runs (none, then the random controls) first, the trained ones last
    assert [j.arm for j in jobs] == ["none"] * 3 + ["random"] * 15 + ["trained"] * 15
    only = bench.plan_jobs(bench.parse_args(["--work", str(tmp_path), "--random-variants", "backbone"]))
    assert {j.variant for j in only if j.arm == "random"} == {"backbone"}
    with pytest.raises(SystemExit):
        bench.parse_args(["--work", str(tmp_path), "--variants", "nope"])


def test_every_variant_validates_against_the_distill_config_and_hooks_real_student_layers(bench) -> None:
    from ultralytics.nn.tasks import OBBModel

    from edgekit.train.obb.config import DistillConfig
    from edgekit.train.obb.distill import probe_channels

    model = OBBModel("yolov8n-obb.yaml", nc=7, verbose=False)
    for name, v in bench.VARIANTS.items():
        cfg = DistillConfig(weight=v["weight"], **v["distillation"])  # StrictModel: a misspelt key fails here
        assert cfg.weight > 0 and v["why"], name
        assert all(0 <= i < 22 for i in cfg.layers), name  # 22 is the OBB head
        assert len(probe_channels(model, cfg.layers)) == len(cfg.layers)
    assert bench.VARIANTS["backbone"]["distillation"]["layers"] == [6, 9]


def test_trained_runs_split_evenly_over_the_gpus_when_the_teacher_is_saved(bench, tmp_path) -> None:
    args = bench.parse_args(["--work", str(tmp_path), "--devices", "0,1"])
    jobs = bench.plan_jobs(args)
    sched = bench.Scheduler(args, jobs, tmp_path, tmp_path)
    sched.teacher_device = "0"  # teacher training: every teacher-free run goes to GPU 1
    running = object()
    for j in jobs[:18]:
        j.device, j.proc = sched.pick_device(j, 5.0), running
    assert {j.device for j in jobs[:18]} == {"1"}  # none + 15 random controls, all at once
    assert sched.blocked(jobs[-1], 10.0) == "teacher"
    sched.teacher_device, sched.teacher_path = None, tmp_path / "t.safetensors"
    assert sched.blocked(jobs[-1], 244.0) is None and sched.blocked(jobs[-1], args.deadline_s + 1) == "deadline"
    for j in jobs[18:]:
        j.device = sched.pick_device(j, 244.0)
        j.proc = running if j.device else None
    on = [j.device for j in jobs[18:]]
    # GPU 1 takes 2 (its cap: 20 runs), GPU 0 its share of 8, and 5 wait for GPU 1, not all on GPU 0
    assert (on.count("0"), on.count("1"), on.count(None)) == (8, 2, 5)
    for j in jobs[:6]:
        j.rc = 0  # teacher-free runs end on GPU 1
    assert sched.pick_device(jobs[-1], 280.0) == "1"
    for j in jobs[6:18]:
        j.device = None
    assert sched.pick_device(jobs[-1], args.balance_until_s + 1) == "1"  # after it: anywhere free


def test_student_commands_differ_only_in_the_distillation_arm(bench, tmp_path) -> None:
    args = bench.parse_args(["--work", str(tmp_path)])
    teacher = tmp_path / "t.safetensors"
    cmds = {}
    for arm in ("none", "random", "trained"):
        job = bench.Job(arm, 100, 1, "-" if arm == "none" else "bg-equal", f"{arm}-x", arm == "trained", device="1")
        cmds[arm] = bench.student_command(args, job, tmp_path / "d", teacher, tmp_path / "c.json")
    assert "distillation.enabled=false" in cmds["none"] and not any("teacher." in c for c in cmds["none"])
    assert f"teacher.weights={teacher}" in cmds["trained"] and "teacher.weights=random" in cmds["random"]
    shared = set(cmds["none"]) - {"distillation.enabled=false", "--run-id", "none-x"}
    assert shared <= set(cmds["trained"]) and "device=0" in shared and "seed=1" in shared
    none_cfg = bench.student_config(args, bench.Job("none", 100, 0, "-", "n", False))
    assert "distillation" not in none_cfg
    # the variant's settings travel in the config file; stages, epochs and augmentation are the same
    cfg = bench.student_config(args, bench.Job("trained", 100, 0, "bg-equal", "t", True))
    assert cfg["distillation"] == {"weight": 2.0, "bg_weight": 1.0}
    assert {k: v for k, v in cfg.items() if k != "distillation"} == none_cfg
    # 100 images are listed 3x (--epoch-images 300): 21 epochs of 300 entries, as in round 2
    assert bench.repeats(args, 100) == 3 and none_cfg["stages"][0]["epochs"] == 21


def test_dataset_view_takes_the_first_images_and_every_val_image(bench, tmp_path) -> None:
    import yaml

    from edgekit.data.synth.obb import generate_obb_dataset

    root = generate_obb_dataset(tmp_path / "src", n_train=3, n_val=2, imgsz=128, progress=False, difficulty="hard")
    view = bench.dataset_view(root, tmp_path / "view", 2)
    assert sorted(p.name for p in (view / "images" / "train").iterdir()) == ["train_000000.jpg", "train_000001.jpg"]
    assert len(list((view / "labels" / "val").iterdir())) == 2
    data = yaml.safe_load((view / "data.yaml").read_text())
    assert Path(data["path"]) == view and len(data["names"]) == 7
    src, dst = root / "images" / "val" / "val_000001.jpg", view / "images" / "val" / "val_000001.jpg"
    assert dst.read_bytes() == src.read_bytes()
    rep = bench.dataset_view(root, tmp_path / "rep", 2, repeat=3)
    names = sorted(p.name for p in (rep / "labels" / "train").iterdir())
    assert names == ["train_000000.txt", "train_000000_r1.txt", "train_000000_r2.txt",
                     "train_000001.txt", "train_000001_r1.txt", "train_000001_r2.txt"]
    assert len(list((rep / "images" / "val").iterdir())) == 2
    assert (rep / "labels" / "train" / "train_000001_r2.txt").read_text() == (
        root / "labels" / "train" / "train_000001.txt").read_text()


def _job(bench, arm, size, seed, map50, variant="base"):
    job = bench.Job(arm, size, seed, "-" if arm == "none" else variant, f"{arm}-{size}-{seed}-{variant}",
                    arm == "trained")
    job.result = ({"map50": map50, "map50_95": map50 / 2, "dino_loss": 0.5, "cls_loss": 1.0}
                  if map50 is not None else {"error": "rc 1"})
    return job


def test_table_is_mean_std_with_paired_gains_and_the_verdict(bench, tmp_path) -> None:
    jobs = [_job(bench, "none", 100, s, v) for s, v in enumerate((0.30, 0.34, 0.32))]
    jobs += [_job(bench, "random", 100, s, v) for s, v in enumerate((0.31, 0.33, 0.33))]
    jobs += [_job(bench, "trained", 100, s, v) for s, v in enumerate((0.36, 0.38, 0.37))]
    jobs += [_job(bench, "trained", 100, 0, None, variant="w6")]
    rows = bench.summarise(jobs)
    by = {(r["arm"], r["variant"]): r for r in rows}
    assert by[("none", "-")]["map50"] == {"mean": 0.32, "std": 0.02, "n": 3}
    assert by[("trained", "base")]["gain_map50"]["mean"] == pytest.approx(0.05, abs=1e-4)
    assert by[("random", "base")]["gain_map50"]["mean"] == pytest.approx(0.0033, abs=1e-4)
    assert by[("trained", "base")]["losses"]["cls_loss"]["mean"] == 1.0
    assert by[("trained", "w6")]["failed"] == ["trained-100-0-w6"] and by[("trained", "w6")]["map50"]["n"] == 0
    assert bench.verdict(rows).startswith("MET")
    worse = [_job(bench, "trained", 100, s, v) if j.arm == "trained" else j
             for s, (j, v) in enumerate(zip(jobs[6:9], (0.31, 0.35, 0.33)))]
    assert bench.verdict(bench.summarise(jobs[:6] + worse)).startswith("NOT met")
    # the winning variant's own random control decides: a gain without one is not checkable
    other = [_job(bench, "trained", 100, s, v, variant="bg-equal") for s, v in enumerate((0.40, 0.41, 0.42))]
    assert bench.verdict(bench.summarise(jobs[:9] + other)).startswith("NOT CHECKABLE (no random")
    strong = [_job(bench, "random", 100, s, v, variant="bg-equal") for s, v in enumerate((0.40, 0.41, 0.42))]
    assert bench.verdict(bench.summarise(jobs[:9] + other + strong)).startswith("NOT met")
    result = {"device": "cpu", "device_slug": "cpu", "config": {"tag": "round3", "imgsz": 640, "batch": 32,
              "samples": 6400, "n_val": 300, "seeds": "0,1,2"}, "rows": rows, "verdict": bench.verdict(rows),
              "teacher": {}, "wall_s": 1.0, "versions": {}}
    md = bench.write_results(result, tmp_path).read_text()
    assert tmp_path.joinpath("distill_gain_cpu_round3.json").is_file()
    assert "| 100 | trained | base | 2 | 37.0 ± 1.0 | 18.5 ± 0.5 | 5.0 ± 1.0 |" in md and "`w6`: weight 6" in md


def test_signal_montage_is_one_small_labelled_image(bench, tmp_path) -> None:
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    for name in ("random-a.png", "trained-a.png"):
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (700, 2800, 3), dtype=np.uint8))
    out = bench.signal_montage(tmp_path, ["random-a.png", "trained-a.png"], tmp_path / "m.jpg")
    img = cv2.imread(str(out))
    assert img.shape == (640, 1280, 3) and out.stat().st_size < 2_000_000
    assert bench.signal_montage(tmp_path, [], tmp_path / "n.jpg") is None
