#!/usr/bin/env bash
# The README's test command: installs what the tests need (pinned by constraints.txt), then runs
# lint, import-boundary contracts, the Python 3.8 check of the device subset, and the test suite.
set -euo pipefail
cd "$(dirname "$0")/.."
export YOLO_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
PY=${PYTHON:-python3}

echo "== install (constraints.txt) =="
"$PY" -m pip install -q -c constraints.txt -e ".[all]"

echo "== system packages the tests drive for real (sshd + rsync for the Jetson path) =="
# The remote-device tests start their own sshd on 127.0.0.1; without these they would skip.
if [ ! -x /usr/sbin/sshd ] || ! command -v rsync >/dev/null || ! command -v ssh >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssh-server openssh-client rsync) \
      >/dev/null || echo "warning: could not install openssh-server/rsync: the loopback-sshd tests will skip"
  else
    echo "warning: openssh-server/rsync missing and not root: the loopback-sshd tests will skip"
  fi
fi

echo "== system packages for the daemon tests (headless Chromium for the live page, a real RTSP server) =="
if ! command -v chromium >/dev/null || [ ! -x /usr/sbin/mosquitto ] || [ ! -e /usr/lib/x86_64-linux-gnu/girepository-1.0/GstRtspServer-1.0.typelib ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium mosquitto gir1.2-gst-rtsp-server-1.0 \
        python3-gi gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav) \
      >/dev/null || echo "warning: could not install chromium/gstreamer: the live-page and RTSP tests will skip"
  else
    echo "warning: chromium/gst-rtsp-server missing and not root: the live-page and RTSP tests will skip"
  fi
fi

echo "== ruff =="
"$PY" -m ruff check edgekit tests benchmarks

echo "== import boundaries (import-linter) =="
lint-imports --no-cache

echo "== Python 3.8 compatibility of the device subset (vermin) =="
# core, deploy, bench, jetson, cli and calib's TensorRT part run on JetPack 5 (Python 3.8).
device_paths=()
for p in edgekit/core edgekit/deploy edgekit/bench edgekit/jetson edgekit/cli \
         edgekit/calib/__init__.py edgekit/calib/cache.py edgekit/calib/dataset.py edgekit/calib/qdq.py edgekit/calib/qdq_check.py \
         tests/jetson; do
  [ -e "$p" ] && device_paths+=("$p")
done
vermin -q -t=3.8- --violations --eval-annotations --no-tips "${device_paths[@]}"

echo "== the device subset on a real Python 3.8 with numpy<1.24 (as on JetPack 5), then numpy 1.24 =="
# vermin is static; this also runs the device-side tests under the interpreter the Jetson has.
# TensorRT 8.5's trt.nptype needs np.bool, which numpy 1.24 removed (docs/tensorrt.md, section 2):
# the second pass shows the device code does not depend on numpy < 1.24 where it need not.
PY38=""
# pyenv's shim named python3.8 exists even when it cannot run, so each candidate must really start.
for c in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.8*/bin/python3.8 "$(command -v python3.8 || true)"; do
  if [ -n "$c" ] && "$c" -c 'import sys; assert sys.version_info[:2] == (3, 8)' 2>/dev/null; then
    PY38=$c
    break
  fi
done
if [ -n "$PY38" ]; then
  venv=${EDGEKIT_PY38_VENV:-$HOME/.cache/edgekit-py38}
  [ -x "$venv/bin/python" ] || "$PY38" -m venv "$venv"
  # onnxruntime/onnx: the last lines with cp38 wheels, standing in for JetPack's own builds.
  "$venv/bin/python" -m pip install -q "numpy<1.24" "pydantic>=2.5,<2.11" pyyaml click tqdm \
      "opencv-python-headless<4.11" "onnxruntime<1.20" "onnx<1.18" "polygraphy==0.49.26" pytest pytest-timeout \
      "fastapi>=0.110,<0.125" "uvicorn>=0.29,<0.34" "websockets>=12,<14" prometheus-client httpx "paho-mqtt>=2,<3" python-multipart
  device_tests=()
  # tests/jetson: parsing and command lines (the loopback-sshd tests already run a Python 3.8 device).
  for t in tests/core tests/cli/test_root.py tests/cli/test_engine_cli.py tests/deploy tests/bench \
           tests/jetson/test_ssh.py tests/jetson/test_tegrastats.py tests/jetson/test_power.py \
           tests/jetson/test_device.py tests/calib/test_cache.py tests/daemon; do
    [ -e "$t" ] && device_tests+=("$t")
  done
  # Host-cache computation (ORT activation histograms) runs on the host, not the device: excluded.
  PYTHONPATH="$PWD" "$venv/bin/python" -m pytest -q -p no:cacheprovider -k "not onnxruntime_ranges" \
      "${device_tests[@]}"

  # The fake Jetson behind the loopback sshd (tests/jetson): Python 3.8, numpy<1.24, no torch.
  device_venv=${EDGEKIT_PY38_DEVICE_VENV:-$HOME/.cache/edgekit-py38-device}
  [ -x "$device_venv/bin/python" ] || "$PY38" -m venv "$device_venv"
  "$device_venv/bin/python" -m pip install -q "numpy<1.24" "pydantic>=2.5,<2.11" pyyaml click tqdm \
      "opencv-python-headless<4.11" "onnxruntime<1.20"

  # Second pass: the same packages, numpy 1.24 (what an unpinned pip gives on Python 3.8).
  venv124=${EDGEKIT_PY38_NP124_VENV:-$HOME/.cache/edgekit-py38-np124}
  [ -x "$venv124/bin/python" ] || "$PY38" -m venv "$venv124"
  "$venv/bin/python" -m pip freeze --exclude-editable | grep -v -i '^numpy==' > "$venv124/requirements.txt"
  "$venv124/bin/python" -m pip install -q "numpy>=1.24,<1.25" -r "$venv124/requirements.txt"
  "$venv124/bin/python" -c 'import numpy; assert numpy.__version__.startswith("1.24"), numpy.__version__'
  np124_tests=()
  for t in tests/core tests/deploy; do
    [ -e "$t" ] && np124_tests+=("$t")
  done
  PYTHONPATH="$PWD" "$venv124/bin/python" -m pytest -q -p no:cacheprovider -k "not onnxruntime_ranges" \
      "${np124_tests[@]}"
else
  echo "no python3.8 on this machine: skipped (the static vermin check above still ran)"
fi

echo "== pytest =="
"$PY" -m pytest -q -p no:cacheprovider --timeout=900 "$@"
