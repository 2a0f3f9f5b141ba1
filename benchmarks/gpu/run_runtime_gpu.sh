#!/usr/bin/env bash
# The GPU run behind benchmarks/results/runtime_gpu_*: the torch runner's GPU path (decode on the GPU,
# CUDA-graph slots, pipelined) vs the CUDA-graph forward and Ultralytics predict, plus the -m gpu tests
# of that path. One command, < 10 min on an H200 (most of it training a yolov8n-obb on synthetic
# scenes, ~12 epochs at 640). Usage from the repository root, on a CUDA host with the train extra:
#   bash benchmarks/gpu/run_runtime_gpu.sh [OUT_DIR]          # the GPU side-by-side
#   RUNTIME_WEIGHTS=w.pt RUNTIME_SKIP_TESTS=1 bash benchmarks/gpu/run_runtime_gpu.sh [OUT_DIR]   # quiet rerun
#   bash benchmarks/gpu/run_runtime_gpu.sh [OUT_DIR] cpu2     # the CPU one, pinned to 2 quiet cores (separate call)
set -uo pipefail
out=${1:-benchmarks/results}
mode=${2:-gpu}
mkdir -p "$out"
export YOLO_OFFLINE=1 WANDB_MODE=disabled MLFLOW_TRACKING_URI=file:/tmp/edgekit-mlruns PYTHONUNBUFFERED=1 \
       PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
if [ "$mode" = cpu2 ]; then
  echo "== CPU side-by-side on cores 0,1 (ONNX Runtime; trains its own yolov8n-obb on the CPU first) =="
  # train (and export) on all cores first: the script caches both under its --work directory
  python benchmarks/vs_ultralytics.py --frames 8 --rounds 1 --out /tmp/vsu-warm > /tmp/vsu-warm.log 2>&1 || tail -n 20 /tmp/vsu-warm.log
  taskset -c 0,1 python benchmarks/vs_ultralytics.py --frames 200 --rounds 4 --out "$out" 2>&1 | tail -n 25
  exit 0
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
echo "== GPU tests: graph slots + GPU decode == eager decode, pipeline order =="
[ -n "${RUNTIME_SKIP_TESTS:-}" ] || python -m pytest -m gpu -q -p no:cacheprovider --tb=short tests/deploy/test_torch_decode.py tests/deploy/test_triton_kernels.py tests/deploy/test_torch_fast.py 2>&1 | tail -n 40
echo "== runtime benchmark =="
# RUNTIME_WEIGHTS=path/last.pt measures an existing model (a quiet rerun without the training); otherwise
# the script trains one and its weights are copied to OUT_DIR for such a rerun.
weights=()
[ -n "${RUNTIME_WEIGHTS:-}" ] && weights=(--weights "$RUNTIME_WEIGHTS")
python benchmarks/runtime_gpu.py --frames 200 --rounds 4 --slots "${RUNTIME_SLOTS:-3}" ${RUNTIME_COMPILE:+--compile} "${weights[@]}" --out "$out" \
  2>&1 | grep -v "^round " | tail -n 40
[ -z "${RUNTIME_WEIGHTS:-}" ] && cp /tmp/edgekit-runtime-gpu/train/weights/last.pt "$out/runtime_gpu_weights.pt" 2>/dev/null
exit 0
