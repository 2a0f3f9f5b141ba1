#!/usr/bin/env bash
# Install `edgekit serve` as a systemd service on a Jetson (JetPack 5.1.x). Run as root from a
# checkout or an unpacked release: sudo jetson/install.sh [WHEEL_OR_REQUIREMENT]
# Creates the `edgekit` user, a venv over JetPack's TensorRT (--system-site-packages: TensorRT's
# Python bindings come from JetPack, never from pip), /etc/edgekit/{daemon.yaml,edgekit.env} (kept
# if present) and the unit; it does not start the service (edit daemon.yaml first).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
spec=${1:-"edgekit[trt,serve]"}
prefix=/opt/edgekit

[ "$(id -u)" = 0 ] || { echo "error: run as root (sudo $0)" >&2; exit 1; }
python3 -c 'import sys; assert sys.version_info[:2] >= (3, 8)' || { echo "error: needs Python >= 3.8" >&2; exit 1; }
python3 -c 'import tensorrt' 2>/dev/null || echo "warning: JetPack's python3-libnvinfer is missing: only --backend onnxruntime will work" >&2

id edgekit >/dev/null 2>&1 || useradd --system --home-dir /var/lib/edgekit --shell /usr/sbin/nologin --groups video edgekit
install -d -o edgekit -g edgekit /var/lib/edgekit /var/lib/edgekit/models /var/lib/edgekit/engines
install -d -m 0755 /etc/edgekit "$prefix"

[ -x "$prefix/venv/bin/python" ] || python3 -m venv --system-site-packages "$prefix/venv"
"$prefix/venv/bin/python" -m pip install --upgrade "numpy<1.24" "onnxruntime<1.20" "$spec"

[ -e /etc/edgekit/daemon.yaml ] || install -m 0644 "$here/daemon.yaml" /etc/edgekit/daemon.yaml
if [ ! -e /etc/edgekit/edgekit.env ]; then
  umask 077
  echo "EDGEKIT_TOKEN=$(python3 -c 'import secrets; print(secrets.token_hex(32))')" > /etc/edgekit/edgekit.env
  chown root:edgekit /etc/edgekit/edgekit.env
  chmod 0640 /etc/edgekit/edgekit.env
fi
install -m 0644 "$here/edgekit-serve.service" /etc/systemd/system/edgekit-serve.service
systemctl daemon-reload
echo "installed. next: put a bundle at /var/lib/edgekit/models/current, edit /etc/edgekit/daemon.yaml, then"
echo "  systemctl enable --now edgekit-serve && journalctl -fu edgekit-serve"
