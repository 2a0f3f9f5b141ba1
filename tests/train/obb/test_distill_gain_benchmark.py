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


def test_plan_has_every_arm_size_seed_and_extra_weights_only_at_the_smallest_size(bench, tmp_path) -> None:
    jobs = bench.plan_jobs(bench.parse_args(["--work", str(tmp_path)]))
    ids = [j.run_id for j in jobs]
    assert len(ids) == len(set(ids)) == 6 + 9 + 9  # none 2x3; random/trained: (100: w2, w6; 300: w2) x 3 seeds
    assert {(j.arm, j.size, j.weight) for j in jobs if j.arm == "trained"} == {
        ("trained", 100, 2.0), ("trained", 100, 6.0), ("trained", 300, 2.0)}
    assert all(j.needs_teacher == (j.arm == "trained") for j in jobs)
    # primary runs (weight 2 at every size) first: teacher-free ones, then trained; the extra weight 6 last
    assert {(j.arm, j.weight, j.extra) for j in jobs[:12]} == {("none", 0.0, False), ("random", 2.0, False)}
    assert [(j.arm, j.weight) for j in jobs[12:18]] == [("trained", 2.0)] * 6
    assert [(j.arm, j.weight, j.extra) for j in jobs[18:]] == [("random", 6.0, True)] * 3 + [("trained", 6.0, True)] * 3


def test_extra_weights_wait_for_the_primary_runs_and_give_up_after_their_deadline(bench, tmp_path) -> None:
    args = bench.parse_args(["--work", str(tmp_path)])
    jobs = bench.plan_jobs(args)
    sched = bench.Scheduler(args, jobs, tmp_path, tmp_path)
    extra_random = next(j for j in jobs if j.extra and not j.needs_teacher)
    trained = next(j for j in jobs if j.needs_teacher and not j.extra)
    assert sched.blocked(trained, 10.0) == "teacher"
    assert sched.blocked(extra_random, 10.0) == "primary"  # none/random primaries not started yet
    for j in jobs:
        if not j.extra and not j.needs_teacher:
            j.rc = 0  # every teacher-free primary ran
    assert sched.blocked(extra_random, 10.0) is None  # the trained primaries cannot start yet: no reason to wait
    sched.teacher_path = tmp_path / "t.safetensors"
    assert sched.blocked(extra_random, 10.0) == "primary" and sched.blocked(trained, 10.0) is None
    assert sched.blocked(extra_random, args.extras_by_s + 1) == "extras"
    assert sched.blocked(trained, args.deadline_s + 1) == "deadline"


def test_student_commands_differ_only_in_the_distillation_arm(bench, tmp_path) -> None:
    args = bench.parse_args(["--work", str(tmp_path)])
    teacher = tmp_path / "t.safetensors"
    cmds = {}
    for arm in ("none", "random", "trained"):
        job = bench.Job(arm, 100, 1, 2.0, f"{arm}-x", needs_teacher=arm == "trained", device="1")
        cmds[arm] = bench.student_command(args, job, tmp_path / "d", teacher, tmp_path / "c.json")
    assert "distillation.enabled=false" in cmds["none"] and not any("teacher." in c for c in cmds["none"])
    assert f"teacher.weights={teacher}" in cmds["trained"] and "teacher.weights=random" in cmds["random"]
    shared = set(cmds["none"]) - {"distillation.enabled=false", "--run-id", "none-x"}
    assert shared <= set(cmds["trained"]) and "device=0" in shared and "seed=1" in shared
    cfg = bench.student_config(args, bench.Job("none", 100, 0, 0.0, "n", False))
    # 100 images are listed 3x, so both sizes train 21 epochs of 300 entries: the same images seen, same epochs
    assert bench.repeats(args, 100) == 3 and bench.repeats(args, 300) == 1
    assert cfg["stages"][0]["epochs"] == 21 and bench.student_config(args, bench.Job("none", 300, 0, 0.0, "n", False)
                                                                     )["stages"][0]["epochs"] == 21


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


def _job(bench, arm, size, seed, map50, weight=2.0):
    job = bench.Job(arm, size, seed, 0.0 if arm == "none" else weight, f"{arm}-{size}-{seed}-{weight}", arm == "trained")
    job.result = {"map50": map50, "map50_95": map50 / 2, "dino_loss": 0.5} if map50 is not None else {"error": "rc 1"}
    return job


def test_table_is_mean_std_with_paired_gains_and_the_verdict(bench) -> None:
    jobs = [_job(bench, "none", 100, s, v) for s, v in enumerate((0.30, 0.34, 0.32))]
    jobs += [_job(bench, "random", 100, s, v) for s, v in enumerate((0.31, 0.33, 0.33))]
    jobs += [_job(bench, "trained", 100, s, v) for s, v in enumerate((0.36, 0.38, 0.37))]
    jobs += [_job(bench, "trained", 100, 0, None, weight=6.0)]
    rows = bench.summarise(jobs)
    by = {(r["arm"], r["weight"]): r for r in rows}
    assert by[("none", 0.0)]["map50"] == {"mean": 0.32, "std": 0.02, "n": 3}
    assert by[("trained", 2.0)]["gain_map50"]["mean"] == pytest.approx(0.05, abs=1e-4)
    assert by[("random", 2.0)]["gain_map50"]["mean"] == pytest.approx(0.0033, abs=1e-4)
    assert by[("trained", 6.0)]["failed"] == ["trained-100-0-6.0"] and by[("trained", 6.0)]["map50"]["n"] == 0
    assert bench.verdict(rows).startswith("MET")
    worse = [_job(bench, "trained", 100, s, v) if j.arm == "trained" else j
             for s, (j, v) in enumerate(zip(jobs[6:9], (0.31, 0.35, 0.33)))]
    assert bench.verdict(bench.summarise(jobs[:6] + worse)).startswith("NOT met")
