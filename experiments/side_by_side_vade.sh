#!/usr/bin/env bash
# VaDE / DGG joint-epoch speed, side by side in ONE run on this CPU (issue 11, item 6): the
# public PyTorch VaDE (github.com/GuHongyang/VaDE-pytorch) and the DGG authors' released code
# (github.com/ngoc-nguyen-0/DGG, mnist/DGG.py, N_s = 3) against this project's `vade` and `dgg`
# joint epochs, same data (MNIST 70,000 x 784 in [0,1]), model (784-500-500-2000-10) and batch
# (100), interleaved rounds. experiments/side_by_side_vade.py does the timing and documents
# what one epoch is on each side and what its PyTorch worker changes at run time.
#
# Run from the project root:
#   VADE_PYTORCH_MIRROR=<git clone or bare mirror of GuHongyang/VaDE-pytorch> \
#   DGG_MIRROR=<git clone or bare mirror of ngoc-nguyen-0/DGG> \
#     bash experiments/side_by_side_vade.sh [--steps 200] [--rounds 4] [--which vade dgg]
# env: PEERS_DIR (scratch outside the project, default /tmp/peers: the exported copies, the
#      PyTorch venv torchvenv/ made once, a few minutes, and the logs), DEEPCLUST_PYTHON
#      (default .venv/bin/python), DATA_DIR (default ../shared/datasets, holding mnist/).
# Either mirror may be left unset: that side is then skipped. The peers' code is exported
# from the mirrors into PEERS_DIR and imported from there; nothing of it enters the project.
set -euo pipefail
PEERS=${PEERS_DIR:-/tmp/peers}; VENV=$PEERS/torchvenv; LOGS=$PEERS/logs
PY=${DEEPCLUST_PYTHON:-.venv/bin/python}; DATA=${DATA_DIR:-../shared/datasets}
mkdir -p "$PEERS" "$LOGS"
if ! "$VENV/bin/python" -c "import torch, sklearn, scipy, tqdm, matplotlib, ipdb" 2>/dev/null; then
  echo "[setup] PyTorch (CPU) venv in $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q torch --index-url https://download.pytorch.org/whl/cpu >&2
  "$VENV/bin/pip" install -q numpy scipy scikit-learn tqdm matplotlib ipdb >&2
fi
export_repo() {  # mirror, destination, paths...; (the DGG mirror lacks the w_*.out blobs)
  local mirror=$1 dest=$2; shift 2
  [ -d "$mirror/.git" ] && mirror=$mirror/.git
  git --git-dir="$mirror" rev-parse -q --verify HEAD >/dev/null || { echo "no git mirror at $mirror" >&2; exit 3; }
  rm -rf "$dest"; mkdir -p "$dest"
  { git --git-dir="$mirror" archive HEAD -- "$@" 2>/dev/null || true; } | tar -x -C "$dest"
  for f in "$@"; do [ -f "$dest/$f" ] || { echo "export lacks $f" >&2; exit 3; }; done
  echo "[setup] $dest from $(git --git-dir="$mirror" rev-parse HEAD)" >&2
}
args=(--torch-python "$VENV/bin/python" --data-dir "$DATA" --scratch "$PEERS")
if [ -n "${VADE_PYTORCH_MIRROR:-}" ]; then
  export_repo "$VADE_PYTORCH_MIRROR" "$PEERS/vade-pytorch" dataloader.py model.py main.py README.md
  args+=(--vade-pytorch "$PEERS/vade-pytorch")
fi
if [ -n "${DGG_MIRROR:-}" ]; then
  export_repo "$DGG_MIRROR" "$PEERS/dgg" mnist/DGG.py mnist/Siamesev0.py mnist/Form_data_using_Siamese.py README.md
  args+=(--dgg "$PEERS/dgg")
fi
echo "[setup] $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores; load average $(cut -d' ' -f1-3 /proc/loadavg)" >&2
"$PY" experiments/side_by_side_vade.py "${args[@]}" "$@" 2>&1 | tee "$LOGS/side_by_side_vade.log"
