#!/usr/bin/env bash
# Issue 28: Table 1 at a real budget. Trains the eight decoder variants (and a
# second seed of segnet-basic, bilinear-interpolation and fcn-basic) with one
# recipe, one run after another, each resumable; run it again after an
# interruption and it continues where it stopped:
#   nohup runs/table1.sh >> runs/table1/train.log 2>&1 &
#
# The recipe is the one that produced the shipped SegNet-Basic, shortened:
#   stage 1: 180x240, flips, poly schedule after a one-epoch warm-up,
#            $STAGE1_EPOCHS epochs (default 40; the shipped model had 60, and
#            its val mIoU moved 1.4 points between epochs 40 and 60);
#   stage 2: 360x480 from stage 1's weights, lr 0.01 poly after a one-epoch
#            warm-up, $STAGE2_EPOCHS epochs (default 10), validated at
#            360x480 every 2 epochs so the curve shows whether it is flat;
#   batch-norm statistics recomputed before every validation (train's default).
# The fcn-* rows train stage 1 at lr 0.05: at 0.1 fcn-basic diverged at the end
# of the warm-up (benchmarks/table1.py, learning_rate); their decoders have no
# batch norm. Stage 2 is lr 0.01 for every row.
#
# Each run trains from a snapshot of one commit (git archive) in its own folder
# beside the checkout, so work-tree edits never reach a running job. A run
# that has started records its commit in runs/table1/<run>/commit and keeps it
# (a resume replays bit for bit); a run not started yet takes $TABLE1_COMMIT
# (default HEAD), so runs started after the fast convolutions land use them.
# Before a session ends: stop the job (kill -INT, it saves its checkpoint),
# commit runs/table1/, and start the script again in the next session.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
DATA=$(cd "${NPSEGNET_CAMVID:-$REPO/../shared/camvid}" && pwd)
OUT=$REPO/runs/table1
STAGE1_EPOCHS=${STAGE1_EPOCHS:-40}
STAGE2_EPOCHS=${STAGE2_EPOCHS:-10}
THREADS=${THREADS:-2}
COMMIT=$(git -C "$REPO" rev-parse --short "${TABLE1_COMMIT:-HEAD}")
mkdir -p "$OUT/weights"
echo -10 > /proc/self/autogroup 2>/dev/null || true

RUNS="segnet-basic:0 bilinear-interpolation:0 fcn-basic:0 \
segnet-basic-encoder-addition:0 segnet-basic-single-channel-decoder:0 \
fcn-basic-no-addition:0 fcn-basic-no-dim-reduction:0 \
fcn-basic-no-addition-no-dim-reduction:0 \
segnet-basic:1 bilinear-interpolation:1 fcn-basic:1"

last_epoch() {
  python -c "import json,sys;print(json.load(open(sys.argv[1]))[-1]['epoch'])" \
    "$1/history.json" 2>/dev/null || echo 0
}

snapshot() {  # the folder holding the package of commit $1
  local snap
  snap=$(cd "$REPO/.." && pwd)/snap_table1_$1
  if [ ! -d "$snap/npsegnet" ]; then
    mkdir -p "$snap" && git -C "$REPO" archive "$1" npsegnet | tar -x -C "$snap"
  fi
  echo "$snap"
}

stage() {  # stage DIR EPOCHS SNAP ARGS...: train DIR to EPOCHS, resuming
  local dir=$1 epochs=$2 snap=$3
  shift 3
  [ "$(last_epoch "$dir")" = "$epochs" ] && return 0
  local resume=""
  [ -f "$dir/latest.npz" ] && resume="--resume"
  # the log is committed: it names the data and run folders as the checkout
  # sees them, not by this machine's absolute paths
  (cd "$snap" && env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE PYTHONPATH="$snap" \
    python -m npsegnet train --data "$DATA" --flip --lr-schedule poly \
    --warmup-epochs 1 --epochs "$epochs" --no-progress --threads "$THREADS" \
    --out "$dir" $resume "$@") 2>&1 \
    | sed -u -e "s#$DATA#\$NPSEGNET_CAMVID#g" -e "s#$REPO/##g"
}

for run in $RUNS; do
  model=${run%%:*}
  seed=${run##*:}
  dir=$OUT/$model-s$seed
  mkdir -p "$dir"
  [ -f "$dir/commit" ] || echo "$COMMIT" > "$dir/commit"
  snap=$(snapshot "$(cat "$dir/commit")")
  lr1=0.1
  case $model in fcn-*) lr1=0.05 ;; esac
  echo "== $model seed $seed ($(cat "$dir/commit")) $(date -u +%FT%TZ)"
  stage "$dir/stage1" "$STAGE1_EPOCHS" "$snap" --model "$model" --seed "$seed" \
    --scale 0.5 --lr "$lr1" --val-every 10 --no-figures
  stage "$dir/stage2" "$STAGE2_EPOCHS" "$snap" --model "$model" --seed "$seed" \
    --scale 1.0 --lr 0.01 --val-every 2 --no-figures \
    --init-weights "$dir/stage1/model.npz"
  # the committed weights: float32 model only, no optimizer state
  name=$model.npz
  [ "$seed" = 0 ] || name=$model-seed$seed.npz
  cp "$dir/stage2/model.npz" "$OUT/weights/$name"
  # the checkpoints are not needed once a run's weights are out
  rm -f "$dir"/stage*/latest.npz "$dir"/stage*/best.npz
done
echo "table1 training done $(date -u +%FT%TZ)"
