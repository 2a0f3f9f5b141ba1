"""A fake Jetson for the loopback tests: the executables JetPack puts on PATH, printing real formats.

Each fake appends its argv to ``$EDGEKIT_JETSON_ROOT/calls.log`` so tests check what edgekit ran.
State lives in files under that root (``nvpmodel.mode``, ``no_sudo``), reset per test.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

NV_TEGRA_RELEASE = ("# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, EABI: aarch64, "
                    "DATE: Tue Aug  1 19:57:35 UTC 2023\n")
MODEL = "NVIDIA Jetson Xavier NX Developer Kit\0"
FAKE_VDD_IN_MW = 5000  # constant, so energy per frame is exactly 5 W x window / frames

_RECORD = 'printf "%s" "$(basename "$0")" >> "$EDGEKIT_JETSON_ROOT/calls.log"; ' \
          'for a in "$@"; do printf " %s" "$a" >> "$EDGEKIT_JETSON_ROOT/calls.log"; done; ' \
          'echo >> "$EDGEKIT_JETSON_ROOT/calls.log"\n'

FAKES = {
    # JetPack 5 line shape; the real tool keeps writing until killed or `tegrastats --stop`.
    "tegrastats": _RECORD + r'''
R="$EDGEKIT_JETSON_ROOT"
if [ "$1" = "--stop" ]; then kill "$(cat "$R/tegrastats.running" 2>/dev/null)" 2>/dev/null; exit 0; fi
interval=1000; log=""
while [ $# -gt 0 ]; do
  case $1 in --interval) interval=$2; shift;; --logfile) log=$2; shift;; esac; shift
done
echo $$ > "$R/tegrastats.running"
sec=$(awk "BEGIN {print $interval / 1000}")
while :; do
  line="$(date '+%m-%d-%Y %H:%M:%S') RAM 1933/6854MB (lfb 3x4MB) SWAP 0/3427MB (cached 0MB) CPU [2%@1190,1%@1190,0%@1190,0%@1190,0%@1190,0%@1190] EMC_FREQ 0%@1600 GR3D_FREQ 40%@[1109] VDD_IN @P@mW/@P@mW VDD_CPU_GPU_CV 444mW/444mW VDD_SOC 1209mW/1209mW"
  if [ -n "$log" ]; then echo "$line" >> "$log"; else echo "$line"; fi
  sleep "$sec"
done
'''.replace("@P@", str(FAKE_VDD_IN_MW)),
    "nvpmodel": _RECORD + r'''
R="$EDGEKIT_JETSON_ROOT"
[ -f "$R/nvpmodel.mode" ] || echo 2 > "$R/nvpmodel.mode"
case $1 in
  -q) id=$(cat "$R/nvpmodel.mode")
      case $id in 0) n=15W_2CORE;; 1) n=15W_4CORE;; 2) n=15W_6CORE;; 3) n=10W_2CORE;; 4) n=10W_4CORE;;
                  5) n=10W_DESKTOP;; 6) n=20W_2CORE;; 7) n=20W_4CORE;; 8) n=20W_6CORE;; *) n=UNKNOWN;; esac
      echo "NV Fan Mode:quiet"; echo "NV Power Mode: MODE_$n"; echo "$id";;
  -m) [ "$(id -u)" = 0 ] || { echo "NVPM ERROR: requires root" >&2; exit 1; }
      case $2 in [0-8]) echo "$2" > "$R/nvpmodel.mode";; *) echo "NVPM ERROR: invalid mode $2" >&2; exit 1;; esac;;
esac
''',
    "jetson_clocks": _RECORD + r'''
case $1 in
  --store) echo "stored clocks" > "$2";;
  --restore) [ -f "$2" ] || { echo "$2 not found" >&2; exit 1; };;
esac
''',
    # Passwordless sudo unless the test created $R/no_sudo (then: what sudo -n prints).
    "sudo": _RECORD + r'''
if [ -e "$EDGEKIT_JETSON_ROOT/no_sudo" ]; then echo "sudo: a password is required" >&2; exit 1; fi
[ "$1" = "-n" ] && shift
exec "$@"
''',
    "edgekit-old": '#!/bin/sh\necho "edgekit, version 0.0.1"\n',
}

# `edgekit bench` stand-in (until the bench stage lands): writes bench.json's timed windows, as
# the real command does, and prints progress on stderr.
STANDIN = r'''
import json, os, sys, time
args = sys.argv[1:]
if args[:1] != ["bench"]:
    os.execv(sys.executable, [sys.executable, "-m", "edgekit", *args])
out = args[args.index("--out") + 1]
os.makedirs(out)
n = int(args[args.index("--iterations") + 1]) if "--iterations" in args else 10
windows = {}
for phase in ("sequential", "pipelined"):
    t0 = time.time()
    for i in range(n):
        time.sleep(0.05)
        if "--no-progress" not in args:
            sys.stderr.write("\r%s %d/%d" % (phase, i + 1, n)); sys.stderr.flush()
    windows[phase] = {"frames": n, "start_unix": t0, "end_unix": time.time(), "seconds": time.time() - t0}
sys.stderr.write("\n")
json.dump({"edgekit_version": "standin", "argv": args, "throughput": windows, "notes": []},
          open(os.path.join(out, "bench.json"), "w"))
open(os.path.join(out, "bench.md"), "w").write("# bench (stand-in)\n")
print("done")
'''


def write_fakes(bin_dir: Path, python: str) -> None:
    bin_dir.mkdir(parents=True, exist_ok=True)
    scripts = dict(FAKES)
    scripts["edgekit"] = f'#!/bin/sh\nexec {python} -m edgekit "$@"\n'
    scripts["edgekit-standin"] = f"#!{python}\n" + STANDIN
    for name, body in scripts.items():
        path = bin_dir / name
        path.write_text(body if body.startswith("#!") else "#!/bin/sh\n" + body)
        path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def write_device_root(root: Path) -> None:
    (root / "etc").mkdir(parents=True, exist_ok=True)
    (root / "proc" / "device-tree").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "nv_tegra_release").write_text(NV_TEGRA_RELEASE)
    (root / "proc" / "device-tree" / "model").write_text(MODEL)


def reset_state(root: Path, site: Path) -> None:
    for name in ("calls.log", "no_sudo", "nvpmodel.mode", "tegrastats.running"):
        p = root / name
        if p.exists():
            p.unlink()
    trt = site / "tensorrt"
    if trt.exists():
        for f in trt.iterdir():
            f.unlink()
        trt.rmdir()
    os.makedirs(str(site), exist_ok=True)


def calls(root: Path):
    p = root / "calls.log"
    return p.read_text().splitlines() if p.exists() else []
