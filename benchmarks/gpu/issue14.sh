#!/usr/bin/env bash
# Distillation-gain study in one call (the lead's GPU run: <= 7.5 min on 2 H200s, hard stop at 440 s):
#   hard synthetic data -> teacher pretraining (benchmarks/teacher_pretrain.py, first GPU, ~230 s, scenes
#   streamed from 6 processes) while the 12 no-distillation and random-teacher primary students run on the
#   other GPU -> the 6 trained-teacher primary students over every GPU (~240-360 s) -> the extra weight only
#   if it can start by 265 s -> results table (benchmarks/distill_gain.py). Plan: docs/distillation.md.
# Usage: bash benchmarks/gpu/issue14.sh OUT_DIR [extra distill_gain.py args, e.g. --smoke-cpu]
# OUT_DIR receives at most 7 files: gpus.txt, distill_gain.log, distill_gain_<device>.{json,md},
# teacher_pretrain.json, issue14_signal_maps.tar.gz and issue14_bundle.tar.gz (logs and reports).
set -uo pipefail
out=${1:?usage: issue14.sh OUT_DIR [distill_gain.py args]}
shift
mkdir -p "$out"
export YOLO_OFFLINE=1 WANDB_MODE=disabled PYTHONUNBUFFERED=1
work=$(mktemp -d "${TMPDIR:-/tmp}/issue14.XXXXXX")
extra=("$@")
if command -v nvidia-smi >/dev/null 2>&1 && [[ " $* " != *" --smoke-cpu "* ]]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$out/gpus.txt" 2>&1
  ngpu=$(nvidia-smi -L | wc -l)
  devices=$(seq -s, 0 $((ngpu - 1)))
  extra=(--devices "$devices" "${extra[@]}")
else
  echo "no GPU (or --smoke-cpu): CPU smoke run" > "$out/gpus.txt"
fi
echo "cores: $(nproc)  work: $work" >> "$out/gpus.txt"
# hard stop a little under the call's limit; distill_gain.py itself stops starting runs at --deadline-s
timeout -k 10 "${ISSUE14_TIMEOUT:-440}" python benchmarks/distill_gain.py --work "$work" --results "$work/results" \
  "${extra[@]}" > "$out/distill_gain.log" 2>&1
echo "distill_gain exit code: $?" >> "$out/distill_gain.log"
# Learnability of each difficulty (synth_learnability.py), only if the study left time: one run per GPU.
if [[ " $* " != *" --smoke-cpu "* ]] && [ -n "${devices:-}" ] && [ "$SECONDS" -lt 330 ]; then
  left=$(( ${ISSUE14_TIMEOUT:-440} - SECONDS - 5 ))
  i=0; ngpu=${ngpu:-1}
  for d in easy standard hard; do
    timeout -k 5 "$left" python benchmarks/synth_learnability.py --difficulty "$d" --device $((i % ngpu)) \
      --imgsz 640 --n-train 300 --n-val 60 --epochs 20 --batch 32 --workers 8 \
      --out "$work/results/synth_learnability_$d.json" > "$work/logs/synth_learnability_$d.log" 2>&1 &
    i=$((i + 1))
  done
  wait
fi
cp "$work"/results/distill_gain_*.json "$work"/results/distill_gain_*.md "$out/" 2>/dev/null
cp "$work/teacher/teacher_pretrain.json" "$out/" 2>/dev/null
# The signal maps in their own archive: a call returns files of at most 16 MiB, and run 2's single
# bundle (maps + every run's logs and reports) was 38 MB, so nothing of it came back.
( cd "$work" && tar czf "$out/issue14_signal_maps.tar.gz" $(ls -d runs/*/signal_maps 2>/dev/null) 2>/dev/null )
( cd "$work" && tar czf "$out/issue14_bundle.tar.gz" results logs teacher/teacher_pretrain.json \
    $(ls -d runs/*/reports 2>/dev/null) 2>/dev/null )
for f in "$out"/issue14_*.tar.gz; do
  [ "$(stat -c %s "$f")" -le 16000000 ] || echo "WARNING: $f is over the 16 MiB a call returns" >&2
done
tail -n 30 "$out/distill_gain.log"
ls -la "$out"
