#!/usr/bin/env bash
# The experiment rows that need an accelerator, side by side on one GPU.
#
# smoke: every workload for two epochs at once, as concurrent processes on the
#   one GPU (under CUDA MPS where the machine allows it), run directories under
#   runs/smoke/, nothing recorded in experiments/results/, printing seconds per
#   epoch.
# main: first the device check (experiments/gpu_parity.py: the CPU against the
#   GPU on short fixed workloads, then the GPU's vmapped runs against one at a
#   time; at most 6 minutes, printed to OUT_DIR/logs/gpu_parity*.txt), then
#   the rows one process at a time, ordered by value (the MNIST two-fold
#   NMM-EM row, Table 3's headline, first), each given the session's remaining
#   time (LIMIT_S in all, default 720) as `--time-limit`: a 15-minute lease
#   finishes the first rows instead of cutting every row short. A row that does
#   not finish stops at an epoch end, checkpointed, and is recorded with the
#   epochs each phase trained; the same command run again resumes it.
#   experiments/results/ and the run directories' logs are packed into
#   OUT_DIR/results.tgz.
# pretraining: the rows of experiments/configs/pretraining.py that the 2 CPU
#   cores have not run (each costs them hours), one process at a time as in
#   main, most valuable first: MNIST sdae (it may change MNIST's best recipe),
#   then MNIST dec with bfloat16 products (whether they keep the float32 row's
#   91.7), then MNIST dec again in float32, each AE + k-means row followed by
#   its AE + GMM row from the same autoencoders.
#
# Usage, from the project root:
#   bash experiments/accelerator_session.sh smoke|main|pretraining DATA_DIR OUT_DIR [LIMIT_S]
#
# Used on 2026-12-04 on one NVIDIA H200 (jax 0.11.2, CUDA 13) lent for 15 minutes,
# as of commit 75c9647, with every row a concurrent process: sixteen rows shared
# the GPU and none finished (experiments/results/{nmm_em,vade_dgg,edgam}.md). At
# that session's shared rate a two-fold MNIST epoch took 5.8 s, so the 250-epoch
# row needs about 25 minutes shared and fewer alone: hence one row at a time.
set -u
mode=$1 data=$2 out=$3 limit=${4:-420}
mkdir -p "$out/logs"
export XLA_PYTHON_CLIENT_PREALLOCATE=false PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2 \
  JAX_COMPILATION_CACHE_DIR=/tmp/jax_cache

# MPS lets kernels of different processes run at once; without it they take turns.
if command -v nvidia-cuda-mps-control >/dev/null \
    && nvidia-cuda-mps-control -d 2>"$out/logs/mps.log"; then
  if python3 -c "import jax, jax.numpy as jnp; print(jnp.ones(3).sum(), jax.devices())" \
      >>"$out/logs/mps.log" 2>&1; then
    echo "MPS on"
  else
    echo quit | nvidia-cuda-mps-control; echo "MPS refused by JAX: off"
  fi
else
  echo "MPS not available"
fi

job() {  # job NAME SECONDS COMMAND...: COMMAND in the background, killed past SECONDS + 90
  local name=$1 seconds=$2; shift 2
  ( timeout -s INT $((seconds + 90)) "$@" >"$out/logs/$name.log" 2>&1
    echo "$name exit $? after $SECONDS s" >>"$out/logs/exits.log" ) &
}

repro() {  # repro NAME ROWS SECONDS CONFIG ARGS...: reproduce.py over ROWS rows, SECONDS in all
  local name=$1 rows=$2 seconds=$3 config=$4; shift 4
  job "$name" "$seconds" python3 experiments/reproduce.py "experiments/configs/$config.py" \
    --data-dir "$data" --quiet --time-limit $((seconds / rows)) "$@"
}

fit() {  # fit NAME METHOD DATASET ARGS...: a two-epoch smoke run of one workload
  local name=$1 method=$2 dataset=$3; shift 3
  job "$name" 120 python3 -m deepclust_jax.cli fit "$method" --dataset "$dataset" \
    --data-dir "$data" --out "runs/smoke/$name" --eval-every 1 --quiet --time-limit 60 "$@"
}

deadline=$((SECONDS + limit))
row() {  # row CONFIG LABEL ARGS...: one row, in the foreground, with the time left
  local config=$1 label=$2; shift 2
  local left=$((deadline - SECONDS - 30))
  if [ "$left" -lt 60 ]; then echo "no time left for $label"; return; fi
  local name; name=$(echo "$label" | tr -c 'A-Za-z0-9\n' _)
  timeout -s INT $((left + 60)) python3 experiments/reproduce.py \
    "experiments/configs/$config.py" --data-dir "$data" --quiet --time-limit "$left" \
    --rows "$label" "$@" >"$out/logs/$name.log" 2>&1
  echo "$label exit $? at $SECONDS s" >>"$out/logs/exits.log"
}

case $mode in
smoke)
  fit nmm_twofold_mnist nmm_em mnist --epochs 2
  fit nmm_em_fmnist nmm_em fashion_mnist --epochs 2 --set consistency=false
  fit nmm_twofold_usps nmm_em usps --epochs 2
  fit vade_mnist vade mnist --epochs 2 --set pretrain_epochs=1 --set gamma_epochs=1
  fit dgg20_mnist dgg mnist --epochs 2 --set num_neighbours=20 --set pretrain_epochs=1 \
    --set gamma_epochs=1 --set siamese_epochs=1
  fit edgam_mnist edgam mnist --runs 10 --epochs 2 --set pretrain_epochs=1
  fit edgam_fmnist edgam fashion_mnist --runs 10 --epochs 2 --set pretrain_epochs=1
  fit aecm_mnist aecm mnist --runs 10 --init p --epochs 2 --set pretrain_epochs=1 \
    --set cm_epochs=0
  ;;
main)
  # Results only a GPU gave are explained, or not, by these two comparisons.
  timeout -s INT 240 python3 experiments/gpu_parity.py --data-dir "$data" \
    >"$out/logs/gpu_parity.txt" 2>&1
  timeout -s INT 120 python3 experiments/gpu_parity.py --data-dir "$data" --chunked \
    >"$out/logs/gpu_parity_chunked.txt" 2>&1
  # NMM-EM, Table 3's MNIST row: two-fold, then EM only (batch-normalised presets).
  row nmm_em "NMM-EM two-fold mnist" --runs 2
  row nmm_em "NMM-EM em mnist" --runs 2
  # VaDE and DGG: the shared MNIST start, then the rows that start from it.
  row vade_dgg "VAE mnist"
  row vade_dgg "VaDE mnist"
  row vade_dgg "DGG N_s=3 mnist"
  # EDGaM (from its start row) beside AE-CM^p and AE + k-means at 50 + 100 epochs.
  for label in "start mnist" "EDGaM mnist" "AE-CM^p mnist" "AE+k-means mnist"; do
    row edgam "$label full 50+100"
  done
  ;;
pretraining)
  for label in "mnist sdae" "mnist dec bfloat16" "mnist dec"; do
    row pretraining "AE+k-means $label" --runs 3
    row pretraining "AE+GMM $label" --runs 3  # from the row above's autoencoders
  done
  ;;
esac
wait
echo quit | nvidia-cuda-mps-control 2>/dev/null

# Seconds per epoch and the last scores of every run directory, for the log.
python3 - <<'EOF'
import json, pathlib
for h in sorted(pathlib.Path("runs").glob("**/history.jsonl")):
  rows = [json.loads(l) for l in h.read_text().splitlines() if l.strip()]
  phases = {}
  for r in rows:
    phases.setdefault(r["phase"], []).append(r)
  parts = []
  for name, rs in phases.items():
    t = [r["seconds"] for r in rs]
    per = (t[-1] - t[0]) / (len(t) - 1) if len(t) > 1 else float("nan")
    parts.append(f"{name} {len(rs)} ep {per:.2f} s/ep")
  scored = [r for r in rows if "metrics" in r]
  acc = scored[-1]["metrics"]["acc"] if scored else []
  print(h.parent, "|", "; ".join(parts), "| acc", [round(a, 3) for a in acc][:10])
EOF
tar czf "$out/results.tgz" experiments/results \
  $(find runs -name history.jsonl -o -name summary.md -o -name config.json \
      -o -name metrics.jsonl | sort) 2>/dev/null
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv >"$out/logs/gpu.txt" 2>&1
(cd "$out" && tar czf logs.tgz logs)
