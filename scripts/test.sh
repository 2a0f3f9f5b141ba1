#!/usr/bin/env bash
# The README's test command: installs what the tests need (pinned by constraints.txt), then runs
# lint, import-boundary contracts, the Python 3.8 check of the device subset, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

echo "== install (constraints.txt) =="
"$PY" -m pip install -q -c constraints.txt -e ".[all]"

echo "== ruff =="
"$PY" -m ruff check edgekit tests benchmarks

echo "== import boundaries (import-linter) =="
lint-imports --no-cache

echo "== Python 3.8 compatibility of the device subset (vermin) =="
# core, deploy, bench, jetson, cli and calib's TensorRT part run on JetPack 5 (Python 3.8).
device_paths=()
for p in edgekit/core edgekit/deploy edgekit/bench edgekit/jetson edgekit/cli \
         edgekit/calib/cache.py edgekit/calib/trt_calibrator.py edgekit/calib/dataset.py; do
  [ -e "$p" ] && device_paths+=("$p")
done
"$PY" -m vermin -q -t=3.8- --violations --eval-annotations --no-tips "${device_paths[@]}"

echo "== pytest =="
"$PY" -m pytest -q -p no:cacheprovider --timeout=900 "$@"
