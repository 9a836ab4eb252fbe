#!/usr/bin/env bash
# DEC autoencoder-pretraining epoch, side by side in ONE run on this CPU: DEC's own Keras code
# (github.com/XifengGuo/DEC-keras, DEC.py's MNIST pretraining) against this project's
# `deepclust fit ae_kmeans --set recipe=dec`, same data (MNIST, 70,000 x 784, pixels /255 in
# [0,1]) and recipe (d-500-500-2000-10, ReLU hidden, linear code and output, MSE, SGD lr 1
# momentum 0.9, batch 256, VarianceScaling(1/3, fan_in, uniform) init), interleaved
# (official, ours) in ROUNDS so that drift of a shared machine hits both alike.
#
# Run from the project root:
#   DEC_MIRROR=<path> bash experiments/side_by_side_dec.sh [E=3] [ROUNDS=2]
#   E: pretraining epochs per run and side (>= 2; epoch 1 is dropped on both sides);
#   DEC_MIRROR: a git clone or bare mirror of github.com/XifengGuo/DEC-keras (required).
# env: DEEPCLUST (default: deepclust on PATH, else .venv/bin/deepclust), PEERS_DIR (scratch
#      outside the project, default /tmp/peers; the TensorFlow 2.21 venv $PEERS_DIR/venv is
#      shared with ../shared/peers/side_by_side.sh and made once, a few minutes), DATA_DIR
#      (default ../shared/datasets, holding mnist/*.gz IDX files), SIDES (default
#      "official ours ours_bf16": ours with float32 and with bfloat16 matmul operands,
#      --set matmul_dtype=...; e.g. SIDES=official times DEC's side alone), CPUS (optional taskset
#      list, e.g. 0-7, pinning both sides to the same cores).
# DEC's code is exported from the mirror into $PEERS_DIR/DEC-keras and patched there at run
# time by experiments/side_by_side_dec_patch.py (it lists each edit and why: tf_keras imports
# for TF 2.21, SGD's `lr` renamed, MNIST from the local IDX files, no per-epoch KMeans
# callback, stop after pretraining, epoch timing); nothing of DEC's code enters the project.
# Seconds per epoch:
#   official = median over epochs 2..E of a Keras callback's wall time from on_epoch_begin to
#              on_epoch_end of DEC's autoencoder.fit() (epoch 1, holding tf.function tracing,
#              dropped);
#   ours     = median over epochs 2..E of the differences of history.jsonl's cumulative
#              "seconds" between consecutive records of phase "pretrain" (epoch 1, holding
#              XLA compilation, is not a difference, so it drops out); scoring and checkpoints
#              are off in between (--eval-every/--checkpoint-every 1000).
# Output: the CPU and thread settings, per round each side's seconds per epoch, the medians
# over rounds, and the lines `ours/official = X.XX` and `ours bfloat16/official = X.XX`
# (below 1: ours is faster).
set -euo pipefail
E=${1:-3}; ROUNDS=${2:-2}
[ "$E" -ge 2 ] || { echo "E must be >= 2 (epoch 1 is dropped)" >&2; exit 2; }
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$HERE/.."
PEERS=${PEERS_DIR:-/tmp/peers}; VENV=$PEERS/venv; COPY=$PEERS/DEC-keras; LOGS=$PEERS/logs/dec
DATA=${DATA_DIR:-../shared/datasets}
MNIST=$(cd "$DATA/mnist" && pwd)
SIDES=${SIDES:-official ours ours_bf16}
MIRROR=${DEC_MIRROR:?set DEC_MIRROR to a git clone or bare mirror of github.com/XifengGuo/DEC-keras}
[ -d "$MIRROR/.git" ] && MIRROR=$MIRROR/.git   # a working clone rather than a bare mirror
DC=${DEEPCLUST:-$(command -v deepclust || echo .venv/bin/deepclust)}
PIN=(); [ -n "${CPUS:-}" ] && PIN=(taskset -c "$CPUS")
case " $SIDES " in *" ours"*)
  [ -x "$DC" ] || { echo "no deepclust at $DC (install the project or set DEEPCLUST)" >&2; exit 2; } ;;
esac
git --git-dir="$MIRROR" rev-parse -q --verify HEAD >/dev/null || { echo "no git mirror at $MIRROR" >&2; exit 3; }
mkdir -p "$PEERS" "$LOGS"
if ! "$VENV/bin/python" -c "import tensorflow, tf_keras, sklearn, h5py" 2>/dev/null; then
  echo "[setup] TensorFlow 2.21 venv in $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q tensorflow-cpu==2.21.0 scikit-learn scipy h5py >&2
  "$VENV/bin/pip" install -q --no-deps tf-keras==2.21.0 >&2
fi
rm -rf "$COPY"; mkdir -p "$COPY"
git --git-dir="$MIRROR" archive HEAD -- DEC.py datasets.py metrics.py README.md LICENSE | tar -x -C "$COPY"
echo "[setup] $COPY from DEC-keras $(git --git-dir="$MIRROR" rev-parse HEAD)" >&2
"$VENV/bin/python" "$HERE/side_by_side_dec_patch.py" "$COPY" >&2
export TF_USE_LEGACY_KERAS=1 TF_CPP_MIN_LOG_LEVEL=3 PYTHONUNBUFFERED=1

echo "cpu: $(lscpu | sed -n 's/^Model name: *//p' | head -1), $(nproc) cpus usable${CPUS:+ (taskset -c $CPUS)}, load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "threads: OMP_NUM_THREADS=${OMP_NUM_THREADS:-unset} XLA_FLAGS=${XLA_FLAGS:-unset}" \
     "TF_NUM_INTRAOP_THREADS=${TF_NUM_INTRAOP_THREADS:-unset} TF_NUM_INTEROP_THREADS=${TF_NUM_INTEROP_THREADS:-unset}" \
     "$("$VENV/bin/python" -c 'import tensorflow as tf; t = tf.config.threading; print("tf %s intra_op=%d inter_op=%d (0 = TF picks, all cores)" % (tf.__version__, t.get_intra_op_parallelism_threads(), t.get_inter_op_parallelism_threads()))' 2>/dev/null)"

med_official() { python3 - "$1" <<'PY'
import re, statistics, sys
t = [float(s) for s in re.findall(r"\[epoch_time\] \d+ ([0-9.]+)", open(sys.argv[1]).read())]
print("%.3f" % statistics.median(t[1:]) if len(t) >= 2 else "nan")
PY
}
med_ours() { python3 - "$1" <<'PY'
import json, statistics, sys
try:
    rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
except OSError:
    rows = []
rows = [r for r in rows if r.get("phase") == "pretrain"]
rows = [r for r in rows if r.get("chunk") == rows[0].get("chunk")] if rows else rows
t = [b["seconds"] - a["seconds"] for a, b in zip(rows, rows[1:])]
print("%.3f" % statistics.median(t) if t else "nan")
PY
}
complain() { [ "$1" != nan ] || { echo "[$2 failed or printed no epoch times; its log: $3]" >&2; tail -n 15 "$3" >&2; }; }
official() {  # round -> seconds per epoch
  local log=$LOGS/official_$1.log save=$LOGS/official_$1 v
  rm -rf "$save"; mkdir -p "$save"
  ( cd "$COPY" && MNIST_IDX_DIR=$MNIST DEC_PRETRAIN_ONLY=1 "${PIN[@]}" "$VENV/bin/python" DEC.py \
      --dataset mnist --pretrain_epochs "$E" --save_dir "$save" ) >"$log" 2>&1 || true
  v=$(med_official "$log"); complain "$v" official "$log"; echo "$v"
}
ours() {  # round, matmul dtype -> seconds per epoch
  local log=$LOGS/ours_$2_$1.log run=$LOGS/ours_$2_$1 v
  rm -rf "$run"
  "${PIN[@]}" "$DC" fit ae_kmeans --dataset mnist --data-dir "$DATA" --set recipe=dec \
      --set pretrain_epochs="$E" --set matmul_dtype="$2" --eval-every 1000 \
      --checkpoint-every 1000 --quiet --out "$run" >"$log" 2>&1 || true
  v=$(med_ours "$run/history.jsonl"); complain "$v" ours "$log"; echo "$v"
}

all_off=""; all_our=""; all_bf16=""
for r in $(seq "$ROUNDS"); do
  for side in $SIDES; do
    case $side in
      official) v=$(official "$r"); all_off+=" $v"
                echo "round $r official DEC-keras pretrain, $E epochs: $v s/epoch" ;;
      ours)     v=$(ours "$r" float32); all_our+=" $v"
                echo "round $r ours     ae_kmeans pretrain, $E epochs: $v s/epoch" ;;
      ours_bf16) v=$(ours "$r" bfloat16); all_bf16+=" $v"
                echo "round $r ours, matmul_dtype=bfloat16, $E epochs: $v s/epoch" ;;
      *) echo "unknown side $side in SIDES" >&2; exit 2 ;;
    esac
  done
done
python3 - "$all_off" "$all_our" "$all_bf16" <<'PY'
import math, statistics, sys
def med(s):
    v = [float(x) for x in s.split()]
    return statistics.median(v) if v and not any(math.isnan(x) for x in v) else float("nan")
off, our, bf16 = med(sys.argv[1]), med(sys.argv[2]), med(sys.argv[3])
print("median over rounds: official %.3f s/epoch, ours %.3f s/epoch, ours bfloat16 %.3f s/epoch"
      % (off, our, bf16))
print("ours/official = %.2f" % (our / off))
print("ours bfloat16/official = %.2f" % (bf16 / off))
PY
