"""VaDE-pytorch's own ``main.py``, whole (pretraining, GMM start, 300 joint epochs), on this CPU.

The accuracy half of the side by side (``side_by_side_vade.py`` is the speed
half): does github.com/GuHongyang/VaDE-pytorch reach its README's MNIST curve
(about 94 by joint epoch 150) when run here, from a given seed? Their
``main.py`` runs unchanged from a checkout outside the project, under a PyTorch
interpreter; what is changed at run time is only what CPU, local data and
current libraries need:

* ``.cuda()`` is the identity and ``nn.DataParallel`` a plain wrapper holding
  ``.module`` (``main.py`` wraps the model for 4 GPUs and calls
  ``vade.module``); MNIST comes from the local IDX files through a stand-in
  ``torchvision.datasets.MNIST`` (both from ``side_by_side_vade.py``);
* ``sklearn.utils.linear_assignment_`` (removed from scikit-learn) is
  SciPy's ``linear_sum_assignment``; ``ipdb`` is an empty module; ``TSNE``,
  constructed and never used, is not built;
* ``tensorboardX.SummaryWriter`` writes the scalars ``main.py`` logs each
  epoch (``loss``, ``acc``, ``lr``) as JSON lines to ``--out``;
* ``torch.manual_seed(seed)`` and ``np.random.seed(seed)`` before
  ``main.py`` (the scikit-learn GMM draws from NumPy's global generator).

Their loss is in their units: it includes ``-log sum_k pi_k`` of their raw
mixing weights (``experiments/results/vade_dgg.md``).

Command (the PyTorch venv of ``side_by_side_vade.sh``; a working directory per
seed, since ``pre_train`` caches ``./pretrain_model.pk`` there):
  cd SCRATCH/seed0 && PYTHONPATH=PROJECT/experiments TORCH_PYTHON \
      PROJECT/experiments/peer_vade_pytorch.py --checkout VADE_PYTORCH_CHECKOUT \
      --mnist-dir PROJECT/../shared/datasets/mnist --seed 0 --out acc.jsonl
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import types

import numpy as np

from side_by_side_vade import _cpu_only_torch, _local_torchvision


def _stand_ins(out: str) -> None:
  import torch
  from scipy.optimize import linear_sum_assignment

  class DataParallel(torch.nn.Module):
    def __init__(self, module, device_ids=None):
      super().__init__()
      self.module = module

  torch.nn.DataParallel = DataParallel

  assignment = types.ModuleType("sklearn.utils.linear_assignment_")
  assignment.linear_assignment = lambda cost: np.stack(linear_sum_assignment(cost), 1)

  class SummaryWriter:
    def __init__(self, *args, **kwargs):
      self.file = open(out, "a", buffering=1)

    def add_scalar(self, tag, value, step):
      # ``step`` is main.py's 0-based epoch index, the x axis of its README's figures.
      self.file.write(json.dumps({"epoch": step, tag: float(value)}) + "\n")

  board = types.ModuleType("tensorboardX")
  board.SummaryWriter = SummaryWriter
  sys.modules.update({"sklearn.utils.linear_assignment_": assignment,
                      "tensorboardX": board, "ipdb": types.ModuleType("ipdb")})
  import sklearn.manifold
  sklearn.manifold.TSNE = lambda *args, **kwargs: None


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--checkout", required=True, help="a copy of GuHongyang/VaDE-pytorch")
  parser.add_argument("--mnist-dir", required=True, help="the four MNIST IDX .gz files")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--threads", type=int, default=2)
  parser.add_argument("--out", default="acc.jsonl", help="their per-epoch scalars")
  args = parser.parse_args()
  import torch
  torch.manual_seed(args.seed)
  np.random.seed(args.seed)
  _cpu_only_torch(args.threads)
  _local_torchvision(args.mnist_dir)
  _stand_ins(args.out)
  sys.path.insert(0, args.checkout)
  sys.argv = ["main.py"]
  runpy.run_path(f"{args.checkout}/main.py", run_name="__main__")


if __name__ == "__main__":
  main()
