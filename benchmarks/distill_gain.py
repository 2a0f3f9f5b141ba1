"""Does distillation from a teacher that knows the domain help a small student when labels are scarce?

Students (yolov8n-obb from scratch, ``edgekit train obb``) on 100 labelled *hard* synthetic images
(``data synth obb --difficulty hard``), three arms with the same data, seeds and budget:

* ``none``     - no distillation (plain Ultralytics training), the one baseline every variant is paired with,
* ``random``   - distillation from a randomly initialised ``vit_small_patch16_dinov3`` (the control),
* ``trained``  - distillation from that architecture pretrained on synthetic scenes
  (``benchmarks/teacher_pretrain.py``, started here on the first GPU, or ``--teacher PATH``).

The distilled arms run once per named **variant** (``VARIANTS``: a distillation weight and DistillConfig
overrides: layers, object/background balance, warmup), each with its own random-teacher control
(``--random-variants``), so "trained >= +3 points and random < +3" is checkable for whichever variant wins.
Every run sees the same number of training images (``--samples``; small sets are listed repeatedly up to
``--epoch-images`` entries, so every run has the same epochs), validation only at the end, on a held-out
hard val set (never seen by the teacher: its scenes come from another seed stream). mAP50 and mAP50-95 are
reported as mean ± std over the seeds, with the paired per-seed gain over ``none``. Runs are scheduled over
every GPU at once, several per GPU: the teacher-free ones (none, random controls) while the teacher trains
on the first GPU, the trained-teacher ones, balanced over the GPUs, when it is saved. The last-epoch signal
map of the first seed of every distilled run is kept, with a small montage of them.
Results: ``<results>/distill_gain_<device>[_<tag>].json`` and ``.md``.

GPU (via benchmarks/gpu/issue14.sh, which also bundles logs)::

    python benchmarks/distill_gain.py --devices 0,1 --work /tmp/dg --results OUT/results --tag round3

CPU smoke test (< 3 min)::

    python benchmarks/distill_gain.py --smoke-cpu --work /tmp/dg_smoke --results /tmp/dg_smoke/results
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence

os.environ.setdefault("YOLO_OFFLINE", "1")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
RESULTS = HERE / "results"
ARCH = "vit_small_patch16_dinov3"
TINY_KWARGS = "{embed_dim: 32, depth: 2, num_heads: 2}"


# The named variants of the distilled arms: a distillation weight and DistillConfig overrides (anything
# else keeps its default: layers [15, 18, 21] = the neck outputs P3/P4/P5 feeding the OBB head,
# warmup_epochs 1, obj_weight 1, bg_weight 0.25). "base" is round 2's best arm (w 2: -2.5 ± 2.9 mAP50 at
# 100 images, random teacher -7.8, w 6 worse in both arms). Each variant changes one knob of "base" and
# tests one reason why distillation could cost detection accuracy here:
VARIANTS: Dict[str, Dict] = {
    "base": {"weight": 2.0, "distillation": {},
             "why": "round 2's arm: neck P3/P4/P5, bg 0.25, 1-epoch warmup"},
    "w6": {"weight": 6.0, "distillation": {}, "why": "round 2's heavier weight"},
    "w1": {"weight": 1.0, "distillation": {}, "why": "weights: half of base"},
    "w0.5": {"weight": 0.5, "distillation": {},
             "why": "weights: w 6 cost more than w 2 in both arms; is a light touch a gain or just less loss?"},
    # yolov8n-obb: 6 = backbone C2f at stride 16 (the teacher's own 40x40 grid at 640 px, no resampling),
    # 9 = SPPF at stride 32. Hypothesis: the neck outputs are the head's direct inputs, so pulling them to a
    # stride-16 ViT token fights the box/class gradients; the backbone can take the teacher's semantics and
    # leave the neck free to serve the head.
    "backbone": {"weight": 2.0, "distillation": {"layers": [6, 9]},
                 "why": "layers: backbone P4 C2f + SPPF instead of the neck"},
    # Hypothesis: P3 (stride 8, 64 channels) carries the 12-75 px objects and is squeezed to the teacher's
    # stride-16 grid; distilling P4/P5 only leaves the small-object level alone.
    "neck-p4p5": {"weight": 2.0, "distillation": {"layers": [18, 21]}, "why": "layers: neck P4/P5, not P3"},
    "neck-p5": {"weight": 2.0, "distillation": {"layers": [21]}, "why": "layers: the deepest neck output only"},
    # Hypothesis: what the teacher knows and the labels do not say is which look-alike decoys are *not*
    # objects; decoys are background cells, weighted 0.25 in base.
    "bg-equal": {"weight": 2.0, "distillation": {"bg_weight": 1.0}, "why": "obj/bg balance: background as much as objects"},
    "fg-only": {"weight": 2.0, "distillation": {"bg_weight": 0.0}, "why": "obj/bg balance: objects only"},
    # Hypothesis: the random projectors' early gradients disrupt the detector before it has found objects;
    # a ramp over the first third of training lets detection lead.
    "warmup7": {"weight": 2.0, "distillation": {"warmup_epochs": 7.0},
                "why": "warmup: ramp over 7 of 21 epochs (base: 1)"},
    "warmup3": {"weight": 2.0, "distillation": {"warmup_epochs": 3.0}, "why": "warmup: ramp over 3 epochs"},
}
DEFAULT_VARIANTS = "w0.5,backbone,neck-p4p5,bg-equal,warmup7"


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--devices", default="0", help="comma list of CUDA indices, or cpu")
    p.add_argument("--per-device", type=int, default=20,
                   help="student runs at once on one device (at most; ~5-7 GB of GPU memory each)")
    p.add_argument("--sizes", default="100", help="labelled training images per student")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help=f"distilled-arm variants, of: {', '.join(VARIANTS)}")
    p.add_argument("--random-variants", default="all",
                   help="variants that also get the random-teacher control: all, none, or a comma list")
    p.add_argument("--arms", default="none,random,trained")
    p.add_argument("--samples", type=int, default=6400, help="training images seen per run (epochs = samples / "
                                                               "epoch entries)")
    p.add_argument("--epoch-images", type=int, default=300, help="entries per epoch: smaller sets are listed "
                                                                  "repeatedly up to this (round 2: 300)")
    p.add_argument("--n-val", type=int, default=300)
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--workers", type=int, default=2, help="dataloader workers per run")
    p.add_argument("--gen-workers", type=int, default=max(1, (os.cpu_count() or 2) - 2))
    p.add_argument("--teacher", type=Path, default=None, help="an existing teacher file (skips pretraining)")
    p.add_argument("--pretrain-seconds", type=float, default=240.0)
    p.add_argument("--teacher-by-s", type=float, default=240.0,
                   help="teacher training ends this many seconds after the start at the latest (its budget shrinks)")
    p.add_argument("--pretrain-images", type=int, default=8000, help="unique teacher scenes (streamed, reused)")
    p.add_argument("--pretrain-workers", type=int, default=6, help="teacher scene-rendering processes")
    p.add_argument("--pretrain-args", default="", help="extra arguments for teacher_pretrain.py")
    p.add_argument("--deadline-s", type=float, default=330.0, help="no run starts after this many seconds")
    p.add_argument("--balance-until-s", type=float, default=300.0,
                   help="until then a device starts at most its even share of the trained-teacher runs")
    p.add_argument("--kill-s", type=float, default=505.0, help="runs still going after this many seconds are stopped")
    p.add_argument("--tag", default="", help="results file suffix: distill_gain_<device>_<tag>.*")
    p.add_argument("--work", type=Path, required=True, help="datasets, runs and logs go here")
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--smoke-cpu", action="store_true", help="tiny everything on CPU, < 3 min")
    if p.parse_args(argv).smoke_cpu:  # smoke defaults; options given explicitly still win
        p.set_defaults(devices="cpu", per_device=6, sizes="2", seeds="0", samples=8,
                       epoch_images=4, n_val=4, imgsz=128, batch=4, workers=0, pretrain_seconds=4.0,
                       pretrain_images=32, gen_workers=2, pretrain_workers=2, arms="none,random,trained")
    args = p.parse_args(argv)
    unknown = [v for v in args.variants.split(",") + args.random_variants.split(",")
               if v not in VARIANTS and v not in ("all", "none")]
    if unknown:
        p.error(f"unknown variant {unknown[0]!r}: pick from {', '.join(VARIANTS)}")
    return args


@dataclass
class Job:
    """One student run: its arm, size, seed, variant (distilled arms), and process state."""

    arm: str
    size: int
    seed: int
    variant: str
    run_id: str
    needs_teacher: bool
    device: Optional[str] = None
    proc: Optional[subprocess.Popen] = None
    started: float = 0.0
    ended: float = 0.0
    rc: Optional[int] = None
    result: Dict = field(default_factory=dict)

    @property
    def weight(self) -> float:
        return 0.0 if self.arm == "none" else float(VARIANTS[self.variant]["weight"])


def plan_jobs(args) -> List[Job]:
    """Every (arm, size, variant, seed) run in start order: none, the random controls, then trained (the
    teacher-free runs fill the second GPU while the teacher trains on the first)."""
    sizes = [int(s) for s in args.sizes.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    variants = args.variants.split(",")
    controls = {"all": variants, "none": []}.get(args.random_variants, args.random_variants.split(","))
    jobs = []
    for arm in args.arms.split(","):
        arm_variants = ["-"] if arm == "none" else controls if arm == "random" else variants
        for size in sizes:
            for v in arm_variants:
                for seed in seeds:
                    rid = f"{arm}-n{size}-s{seed}" + ("" if arm == "none" else f"-{v}")
                    jobs.append(Job(arm, size, seed, v, rid, needs_teacher=arm == "trained"))
    return jobs


# -- data --------------------------------------------------------------------------------------------
def make_data(args) -> Path:
    from edgekit.data.synth.obb import generate_obb_dataset

    return generate_obb_dataset(args.work / "data" / "hard", n_train=max(int(s) for s in args.sizes.split(",")),
                                n_val=args.n_val, imgsz=args.imgsz, seed=0, progress=False, difficulty="hard",
                                workers=args.gen_workers)


def repeats(args, size: int) -> int:
    """How often a run's images are listed in its dataset view: small sets are repeated up to
    ``--epoch-images`` (and the largest size), so every run has the same epochs of the same length (the first
    version's 100-image runs had 3x the epochs, and Ultralytics' per-epoch overhead made them 1.4x slower)."""
    return max(1, round(max([args.epoch_images] + [int(s) for s in args.sizes.split(",")]) / size))


def dataset_view(root: Path, dest: Path, n_train: int, repeat: int = 1) -> Path:
    """A dataset of the first ``n_train`` train images (each listed ``repeat`` times) and every val image,
    hard-linked (own label caches)."""
    from edgekit.data.layout import DatasetLayout

    src = DatasetLayout.load(root)
    view = DatasetLayout.create(dest, src.names)
    for split in ("train", "val"):
        images = src.image_paths(split)[: n_train if split == "train" else None]
        for r in range(repeat if split == "train" else 1):
            tag = f"_r{r}" if r else ""
            for img in images:
                for s, d in ((img, view.image_dir(split) / f"{img.stem}{tag}{img.suffix}"),
                             (src.label_path(img), view.label_dir(split) / f"{img.stem}{tag}.txt")):
                    try:
                        os.link(s, d)
                    except OSError:
                        shutil.copyfile(s, d)
    view.write_data_yaml()
    return dest


# -- one student run -----------------------------------------------------------------------------------
def student_config(args, job: Job) -> Dict:
    epochs = max(1, round(args.samples / (job.size * repeats(args, job.size))))
    cfg = {"stages": [{"name": "main", "epochs": epochs, "freeze": 0, "lr0": 0.01, "distill_scale": 1.0}],
           # nbs=batch: step every batch; cache=ram: decode each JPEG once (each entry is read ~21x)
           "ultralytics": {"nbs": args.batch, "warmup_epochs": 0, "scale": 0.25, "cache": "ram"},
           "logging": {"wandb": "disabled", "signal_maps_every": epochs}}
    if job.arm != "none":
        cfg["distillation"] = {"weight": job.weight, **VARIANTS[job.variant]["distillation"]}
    return cfg


def student_command(args, job: Job, data: Path, teacher: Optional[Path], config: Path) -> List[str]:
    device = "cpu" if job.device == "cpu" else "0"  # each run sees one GPU (CUDA_VISIBLE_DEVICES)
    cmd = [sys.executable, "-m", "edgekit", "train", "obb", "--config", str(config), "--run-id", job.run_id,
           f"data={data}", f"imgsz={args.imgsz}", f"batch={args.batch}", f"device={device}",
           f"workers={args.workers}", f"seed={job.seed}", "optimizer=SGD", "val=false",
           f"project={args.work / 'runs'}", f"distillation.enabled={str(job.arm != 'none').lower()}"]
    if job.arm != "none":  # the variant's distillation settings are in the config file
        cmd += [f"teacher.name={ARCH}", f"teacher.weights={teacher if job.arm == 'trained' else 'random'}",
                "teacher.dtype=bf16" if device != "cpu" else "teacher.dtype=fp32"]
        if args.smoke_cpu:
            cmd.append(f"teacher.model_kwargs={TINY_KWARGS}")
    if device == "cpu":
        cmd.append("amp=false")
    return cmd


LOSS_KEYS = ("dino_loss", "obj_distill_loss", "bg_distill_loss", "box_loss", "cls_loss", "dfl_loss", "angle_loss")


def read_run(run_dir: Path) -> Dict:
    """Final (best checkpoint) val metrics and the last epoch's detection and distillation losses of a run."""
    from edgekit.train.run import read_jsonl

    finals = [r for r in read_jsonl(run_dir / "reports" / "val_metrics.jsonl") if r.get("final")]
    train = read_jsonl(run_dir / "reports" / "train_metrics.jsonl")
    out: Dict = {}
    if finals:
        out["map50"] = float(finals[-1]["metrics/mAP50(B)"])
        out["map50_95"] = float(finals[-1]["metrics/mAP50-95(B)"])
    if train:
        last = train[-1]
        out.update({k: round(float(last[f"train/{k}"]), 4) for k in LOSS_KEYS if f"train/{k}" in last})
        out["epochs"] = int(last["epoch"]) + 1
    maps = sorted((run_dir / "signal_maps").glob("*.png")) if (run_dir / "signal_maps").is_dir() else []
    if maps:
        out["signal_map"] = str(maps[-1])
    return out


# -- scheduling ----------------------------------------------------------------------------------------
class Scheduler:
    """Starts jobs on devices with free slots; the teacher holds the first device while it trains."""

    def __init__(self, args, jobs: List[Job], data: Path, log_dir: Path) -> None:
        self.args, self.jobs, self.data, self.log_dir = args, jobs, data, log_dir
        self.devices = args.devices.split(",")
        self.teacher_path: Optional[Path] = args.teacher
        self.teacher_proc: Optional[subprocess.Popen] = None
        self.teacher_device: Optional[str] = None
        self.t0 = time.time()
        self.events: List[str] = []

    def log(self, msg: str) -> None:
        line = f"[{time.time() - self.t0:7.1f}s] {msg}"
        self.events.append(line)
        print(line, flush=True)

    def env_for(self, device: str) -> Dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", WANDB_MODE="disabled", OMP_NUM_THREADS="2")
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
        if device != "cpu":
            env["CUDA_VISIBLE_DEVICES"] = device
        return env

    def start_teacher(self) -> None:
        if self.teacher_path is not None:
            return
        self.teacher_device = self.devices[0]
        out = self.args.work / "teacher"
        cmd = [sys.executable, str(HERE / "teacher_pretrain.py"), "--out", str(out)]
        if self.args.smoke_cpu:
            cmd += ["--smoke-cpu", "--seconds", str(self.args.pretrain_seconds)]
        else:
            cmd += ["--device", "cuda:0", "--seconds", str(self.args.pretrain_seconds),
                    "--stop-at", str(self.t0 + self.args.teacher_by_s),
                    "--n-images", str(self.args.pretrain_images), "--scene-side", str(self.args.imgsz),
                    "--canvas", str(self.args.imgsz // 2), "--workers", str(self.args.pretrain_workers)]
        cmd += self.args.pretrain_args.split()
        with open(self.log_dir / "teacher_pretrain.log", "w") as log:  # the child keeps its own handle
            self.teacher_proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                                 env=self.env_for(self.teacher_device))
        self.log(f"teacher pretraining started on device {self.teacher_device}: {' '.join(cmd)}")

    def poll_teacher(self) -> None:
        if self.teacher_proc is None or self.teacher_proc.poll() is None:
            return
        rc = self.teacher_proc.returncode
        self.teacher_proc = None
        self.teacher_device = None
        path = self.args.work / "teacher" / "timm" / f"{ARCH}.safetensors"
        if rc == 0 and path.is_file():
            self.teacher_path = path
            self.log(f"teacher ready: {path}")
        else:
            self.log(f"teacher pretraining FAILED (rc {rc}); trained-teacher runs are skipped")
            for j in self.jobs:
                if j.needs_teacher and j.proc is None:
                    j.rc, j.result = -1, {"error": "teacher pretraining failed"}

    def free_slots(self, device: str) -> int:
        if device == self.teacher_device and len(self.devices) > 1:
            return 0
        busy = sum(1 for j in self.jobs if j.device == device and j.proc is not None and j.rc is None)
        return self.args.per_device - busy

    def launch(self, job: Job, device: str) -> None:
        job.device = device
        data = dataset_view(self.data, self.args.work / "views" / job.run_id, job.size, repeats(self.args, job.size))
        config = self.args.work / "configs" / f"{job.run_id}.json"
        config.parent.mkdir(parents=True, exist_ok=True)
        config.write_text(json.dumps(student_config(self.args, job)))
        cmd = student_command(self.args, job, data, self.teacher_path, config)
        with open(self.log_dir / f"{job.run_id}.log", "w") as log:
            job.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=self.env_for(device), cwd=str(REPO))
        job.started = time.time()
        self.log(f"start {job.run_id} on {device}")

    def pick_device(self, job: Job, elapsed: float = 0.0) -> Optional[str]:
        """Where ``job`` starts: a device with a free slot that has started the fewest jobs of its kind
        (teacher-free or trained), then the emptiest; None: wait.

        Until ``--balance-until-s`` a device starts at most its even share of the trained runs: they all
        become startable when the teacher is saved, while the second GPU is still full of teacher-free runs;
        without the share they would all land on the freed first GPU and leave the second idle later. The
        ``--per-device`` cap bounds a GPU's memory while its teacher-free and trained runs overlap."""
        free = [d for d in self.devices if self.free_slots(d) > 0]

        def started(d: str) -> int:
            return sum(1 for j in self.jobs if j.device == d and j.needs_teacher == job.needs_teacher)

        if job.needs_teacher and elapsed < self.args.balance_until_s:
            share = -(-sum(1 for j in self.jobs if j.needs_teacher == job.needs_teacher) // len(self.devices))
            free = [d for d in free if started(d) < share]
        return min(free, key=lambda d: (started(d), -self.free_slots(d))) if free else None

    def blocked(self, job: Job, elapsed: float) -> Optional[str]:
        """Why ``job`` cannot start now: "deadline" (never will), "teacher" (not yet), or None."""
        if elapsed > self.args.deadline_s:
            return "deadline"
        if job.needs_teacher and self.teacher_path is None:
            return "teacher"
        return None

    def step(self) -> bool:
        """One scheduling pass; False when nothing is left to wait for."""
        self.poll_teacher()
        for job in self.jobs:
            if job.proc is not None and job.rc is None and job.proc.poll() is not None:
                job.rc, job.ended = job.proc.returncode, time.time()
                job.result = read_run(self.args.work / "runs" / job.run_id) if job.rc == 0 else {"error": f"rc {job.rc}"}
                self.log(f"done  {job.run_id} rc={job.rc} in {job.ended - job.started:.0f}s {job.result.get('map50')}")
        elapsed = time.time() - self.t0
        kill = elapsed > self.args.kill_s
        for job in self.jobs:
            if job.proc is None and job.rc is None:
                why = self.blocked(job, elapsed)
                if why == "deadline":
                    job.rc, job.result = -2, {"error": "not started before the deadline"}
                if why:
                    continue
                device = self.pick_device(job, elapsed)
                if device is not None:
                    self.launch(job, device)
            elif kill and job.rc is None and job.proc is not None:
                job.proc.terminate()
        if kill and self.teacher_proc is not None:
            self.teacher_proc.terminate()
        return self.teacher_proc is not None or any(j.rc is None for j in self.jobs)

    def run(self) -> None:
        self.start_teacher()
        while self.step():
            time.sleep(0.5)


# -- results -----------------------------------------------------------------------------------------------
def _mean_std(values: List[float]) -> Dict:
    if not values:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": round(statistics.fmean(values), 4), "std": round(statistics.stdev(values), 4) if len(values) > 1
            else 0.0, "n": len(values)}


def summarise(jobs: List[Job]) -> List[Dict]:
    """One row per (size, arm, variant): mean ± std over seeds, the paired gain over ``none``, and the
    mean last-epoch losses."""
    base = {(j.size, j.seed): j.result for j in jobs if j.arm == "none" and "map50" in j.result}
    rows = []
    for key in dict.fromkeys((j.size, j.arm, j.variant) for j in jobs):
        group = [j for j in jobs if (j.size, j.arm, j.variant) == key]
        done = [j for j in group if "map50" in j.result]
        row = {"size": key[0], "arm": key[1], "variant": key[2], "weight": group[0].weight,
               "map50": _mean_std([j.result["map50"] for j in done]),
               "map50_95": _mean_std([j.result["map50_95"] for j in done]),
               "per_seed": {j.seed: {k: j.result.get(k) for k in ("map50", "map50_95", *LOSS_KEYS)} for j in group},
               "losses": {k: _mean_std([j.result[k] for j in done if k in j.result]) for k in LOSS_KEYS},
               "failed": [j.run_id for j in group if "map50" not in j.result]}
        if key[1] != "none":
            paired = [(j, base[(j.size, j.seed)]) for j in done if (j.size, j.seed) in base]
            row["gain_map50"] = _mean_std([j.result["map50"] - b["map50"] for j, b in paired])
            row["gain_map50_95"] = _mean_std([j.result["map50_95"] - b["map50_95"] for j, b in paired])
            row["dino_loss"] = row["losses"]["dino_loss"]
        rows.append(row)
    return rows


def verdict(rows: List[Dict]) -> str:
    """The issue's target at the smallest size: the best trained variant beats none by >= 3 mAP50 points and
    the random teacher *with the same variant* does not; the best is picked on the val set it is scored on."""
    small = min(r["size"] for r in rows)
    trained = [r for r in rows if r["size"] == small and r["arm"] == "trained" and r["gain_map50"]["mean"] is not None]
    if not trained:
        return "no trained-teacher result"
    t = max(trained, key=lambda r: r["gain_map50"]["mean"])
    r = next((x for x in rows if x["size"] == small and x["arm"] == "random" and x["variant"] == t["variant"]
              and x["gain_map50"]["mean"] is not None), None)
    n = len({x["variant"] for x in trained})
    picked = f", the best of {n} variants tried, picked on the same val set it is scored on" if n > 1 else ""
    gain = t["gain_map50"]["mean"]
    if r is None:
        state = "NOT CHECKABLE (no random-teacher control of this variant)" if gain >= 0.03 else "NOT met"
    else:
        state = "MET" if gain >= 0.03 and r["gain_map50"]["mean"] < 0.03 else "NOT met"
    return (f"{state}: at {small} images the trained teacher ({t['variant']}, w={t['weight']:g}) gives "
            f"{100 * gain:+.1f} ± {100 * t['gain_map50']['std']:.1f} mAP50 points{picked} over no distillation "
            f"(n={t['gain_map50']['n']} paired seeds); the random teacher with the same variant gives "
            + (f"{100 * r['gain_map50']['mean']:+.1f} ± {100 * r['gain_map50']['std']:.1f}" if r else "n/a")
            + " (target: >= +3.0 for trained, < +3.0 for random)")


def _fmt(ms: Dict, scale: float = 100.0, digits: int = 1) -> str:
    return "n/a" if ms["mean"] is None else f"{scale * ms['mean']:.{digits}f} ± {scale * ms['std']:.{digits}f}"


def results_stem(result: Dict) -> str:
    tag = result["config"].get("tag") or ""
    return f"distill_gain_{result['device_slug']}" + (f"_{tag}" if tag else "")


def write_results(result: Dict, out: Path) -> Path:
    from edgekit.core.atomic import write_json_atomic, write_text_atomic

    stem = results_stem(result)
    write_json_atomic(out / f"{stem}.json", result)
    c = result["config"]
    md = ["# Distillation gain: students on scarce hard synthetic labels, with vs without a trained teacher", "",
          f"Device: {result['device']}; yolov8n-obb from scratch at {c['imgsz']} px, batch {c['batch']}, "
          f"{c['samples']} training images seen per run, one stage (SGD lr0 0.01, no warmup); val: "
          f"{c['n_val']} held-out hard images. Seeds {c['seeds']}. Teacher: {ARCH} "
          f"(trained: {(result.get('teacher') or {}).get('weights', {}).get('timm', 'n/a')}). Every distilled "
          "row is paired per seed with the same `none` runs.", "",
          "| train images | arm | variant | weight | mAP50 (%) | mAP50-95 (%) | gain mAP50 (pts, paired) | "
          "gain mAP50-95 | final distill loss (obj / bg) | final cls / box loss |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        gain = _fmt(r["gain_map50"]) if "gain_map50" in r else "-"
        gain95 = _fmt(r["gain_map50_95"]) if "gain_map50_95" in r else "-"
        ls = r.get("losses") or {}
        loss = "-" if r["arm"] == "none" else (f"{_fmt(ls['dino_loss'], 1.0, 3)} ({_fmt(ls['obj_distill_loss'], 1.0, 2)}"
                                               f" / {_fmt(ls['bg_distill_loss'], 1.0, 2)})")
        det = f"{_fmt(ls['cls_loss'], 1.0, 2)} / {_fmt(ls['box_loss'], 1.0, 2)}" if "cls_loss" in ls else "-"
        v, w = ("-", "-") if r["arm"] == "none" else (r["variant"], f"{r['weight']:g}")
        md.append(f"| {r['size']} | {r['arm']} | {v} | {w} | {_fmt(r['map50'])} | {_fmt(r['map50_95'])} | {gain} | "
                  f"{gain95} | {loss} | {det} |")
    md += ["", f"**{result['verdict']}**", "", "Variants (DistillConfig overrides of the distilled arms):", ""]
    for name in dict.fromkeys(r["variant"] for r in result["rows"] if r["arm"] != "none"):
        v = VARIANTS[name]
        md.append(f"* `{name}`: weight {v['weight']:g}, {json.dumps(v['distillation']) or '{}'}; {v['why']}")
    md.append("")
    t = result.get("teacher") or {}
    if t.get("val_patch_metrics"):
        tr, v, r0 = t["train"], t["val_patch_metrics"], t["random_init_patch_metrics"]
        md += [f"Teacher pretraining: {tr['images_per_s']} img/s, {tr['steps']} steps in {tr['train_s']} s over "
               f"{tr.get('unique_scenes')} unique {c['imgsz']} px scenes ({tr.get('views_per_scene')} augmented views "
               f"each; first scenes after {tr.get('waited_for_first_scenes_s')} s); held-out whole-scene patch presence "
               f"F1 {v['presence_f1']} at p >= 0.5, {v.get('presence_f1_best')} at p >= {v.get('best_threshold')} "
               f"(random init {r0['presence_f1']} / {r0.get('presence_f1_best')}), centre-patch class accuracy "
               f"{v['centre_class_acc']} (random init {r0['centre_class_acc']}); both layouts load through the "
               f"resolver, max feature difference vs the trained model {t['loading']['max_abs_diff_vs_trained']}.", ""]
    if result.get("signal_maps"):
        md += [f"Signal maps (last epoch, first seed, per distilled arm/variant): `{stem}_signal_maps/`, "
               f"montage `{result.get('signal_montage')}`.", ""]
    failed = [x for r in result["rows"] for x in r["failed"]]
    if failed:
        md += [f"Runs without a result: {', '.join(failed)}", ""]
    md += [f"Wall time {result['wall_s']} s. Versions: " + ", ".join(f"{k} {v}" for k, v in result["versions"].items()), ""]
    return write_text_atomic(out / f"{stem}.md", "\n".join(md))


def copy_signal_maps(jobs: List[Job], out: Path) -> List[str]:
    """The first seed's last-epoch signal map of every distilled (arm, variant), copied into ``out``."""
    kept = []
    first = min((x.seed for x in jobs), default=0)
    for j in jobs:
        src = j.result.get("signal_map")
        if j.seed == first and src:
            dest = out / f"{j.run_id}.png"
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, dest)
            kept.append(dest.name)
    return kept


def signal_montage(folder: Path, names: List[str], dest: Path, row_height: int = 320) -> Optional[Path]:
    """The kept signal maps, each scaled to ``row_height`` px high and labelled, stacked into one JPEG
    (a few hundred KB: the full-size PNGs of every run did not fit in what a GPU call returns)."""
    if not names:
        return None
    import cv2
    import numpy as np

    rows = []
    for name in names:
        img = cv2.imread(str(folder / name))
        if img is None:
            continue
        img = cv2.resize(img, (max(1, round(img.shape[1] * row_height / img.shape[0])), row_height),
                         interpolation=cv2.INTER_AREA)
        cv2.putText(img, Path(name).stem, (6, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 255, 255), 2)
        rows.append(img)
    if not rows:
        return None
    width = max(r.shape[1] for r in rows)
    canvas = np.vstack([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])
    ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        return None
    from edgekit.core.atomic import write_bytes_atomic

    return write_bytes_atomic(dest, buf.tobytes())


def device_info(args) -> Dict[str, str]:
    import torch

    if args.devices == "cpu" or not torch.cuda.is_available():
        return {"device": platform.processor() or "cpu", "device_slug": "cpu-smoke" if args.smoke_cpu else "cpu"}
    name = torch.cuda.get_device_name(0)
    n = len(args.devices.split(","))
    return {"device": f"{n}x {name}", "device_slug": name.lower().replace(" ", "-") + f"x{n}"}


def versions() -> Dict[str, str]:
    import timm
    import torch
    import ultralytics

    return {"python": platform.python_version(), "torch": torch.__version__, "ultralytics": ultralytics.__version__,
            "timm": timm.__version__}


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = parse_args(argv)
    t0 = time.time()
    log_dir = args.work / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    data = make_data(args)
    print(f"hard dataset ready in {time.time() - t0:.1f}s: {data}", flush=True)
    jobs = plan_jobs(args)
    sched = Scheduler(args, jobs, data, log_dir)
    sched.t0 = t0
    sched.run()
    teacher_json = args.work / "teacher" / "teacher_pretrain.json"
    teacher = json.loads(teacher_json.read_text()) if teacher_json.is_file() else {"weights": str(args.teacher)}
    rows = summarise(jobs)
    info = device_info(args)
    result = {"benchmark": "distill_gain", **info, "config": {k: str(v) for k, v in vars(args).items()},
              "variants": {v: VARIANTS[v] for v in dict.fromkeys(j.variant for j in jobs if j.arm != "none")},
              "rows": rows, "verdict": verdict(rows), "teacher": teacher}
    stem = results_stem(result)
    maps_dir = args.results / f"{stem}_signal_maps"
    result["signal_maps"] = copy_signal_maps(jobs, maps_dir)
    montage = signal_montage(maps_dir, result["signal_maps"], args.results / f"{stem}_signal_maps.jpg")
    result["signal_montage"] = montage.name if montage else None
    result.update({"runs": [{"run_id": j.run_id, "variant": j.variant, "device": j.device, "rc": j.rc,
                             "wall_s": round(j.ended - j.started, 1) if j.ended else None, **j.result} for j in jobs],
                   "events": sched.events, "wall_s": round(time.time() - t0, 1), "versions": versions()})
    path = write_results(result, args.results)
    print(path.read_text(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
