#!/usr/bin/env bash
# The GPU runs behind benchmarks/results/distill_*: distillation overhead per train step (full
# and reduced teacher resolution), and a 2-GPU DDP smoke run of `edgekit train obb device=0,1`.
# Usage on a CUDA host with the train extra installed: bash benchmarks/gpu/run_distill_suite.sh OUT_DIR
set -uo pipefail
out=${1:?usage: run_distill_suite.sh OUT_DIR}
mkdir -p "$out"
export YOLO_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpus.txt"
teacher_w=${TEACHER_WEIGHTS:-random}   # no DINOv3 weights can be fetched offline: timing needs none

for t in 640 320; do
  python benchmarks/distill_overhead.py --device 0 --imgsz 640 --batch 16 --steps 50 --warmup 10 \
      --teacher-weights "$teacher_w" --teacher-imgsz $t --variants eager,stream,graph,stream-graph \
      --out "$out" 2>&1 | tail -n 30
done
echo "== GPU tests (teacher CUDA graph / side stream vs eager) =="
python -m pytest tests/train/obb/test_obb_teacher_cuda.py -m gpu -q -p no:cacheprovider 2>&1 | tail -n 15
[ "${SKIP_DDP:-0}" = 1 ] && exit 0

ngpu=$(nvidia-smi -L | wc -l)
if [ "$ngpu" -ge 2 ]; then
  echo "== DDP smoke: edgekit train obb device=0,1 =="
  python -m edgekit data synth obb --out /tmp/ddp_data --n-train 256 --n-val 64 --imgsz 320 --seed 0
  ( time python -m edgekit train obb data=/tmp/ddp_data imgsz=320 batch=32 device=0,1 workers=4 \
      teacher.weights=random logging.wandb=disabled project=/tmp/ddp_runs stages.0.epochs=1 stages.1.epochs=2 \
      --run-id ddp2 ) > "$out/ddp_train.log" 2>&1
  echo "ddp exit code: $?" | tee -a "$out/ddp_train.log"
  tail -n 25 "$out/ddp_train.log"
  cp /tmp/ddp_runs/ddp2/reports/run_meta.json "$out/ddp_run_meta.json" 2>/dev/null
  cp /tmp/ddp_runs/ddp2/reports/val_metrics.jsonl "$out/ddp_val_metrics.jsonl" 2>/dev/null
else
  echo "only $ngpu GPU: DDP smoke skipped"
fi
