"""NMM-EM's two-fold MNIST step, ours (JAX) against PyTorch on the same CPU, in one process.

The network and step of ``methods.resolve("nmm_em", dataset="mnist")``, written
again in PyTorch: Table 2's MNIST network with the preset's batch
normalisation (Conv(bias=False)-BatchNorm-ReLU, 2x2 max-pooling, C64 M C128 M
C256 F32, then a linear layer of 10 relevance scores), the two Sobel planes of
the image (edge-replicated border) as input, batches of 128, and Algorithm 1:
the EM step (eq. 7 on the original and the transformed view, the original's
posterior held constant, Adam 5e-5) then the KL step (eq. 8, posterior of the
original recomputed with the new parameters and held constant, no gradient
through it, Adam 1e-4). Only the original view's pass moves the running
statistics, as in ours. BOTH sides build the transformed view on the CPU inside
the timed step: the crop of 0.85 resized back (bilinear), one affine resampling
(rotation 15 degrees, scale 0.1, shift 0.1; bilinear, edge-replicated),
brightness 0.2 and contrast 0.4 with clipping, then Sobel on both views. The
PyTorch side draws its own random transformations (same distributions, not the
same draws): the cost is what is compared, not the trajectories.

Ours is one scanned epoch of ``--steps`` steps through the engine, as training
runs it; torch's is ``--steps`` steps of a Python loop, 2 intra-op threads.
They alternate ``--rounds`` times in this one process, and the medians of the
per-step wall and process CPU seconds are reported with the ratio ours/torch
(process CPU is the fair measure while another job shares the cores).

torch's OpenMP threads spin while they wait by default, which on cores shared
with another job burns process CPU without work (3.1 s a step here against
0.59 s); the script sets ``OMP_WAIT_POLICY=PASSIVE`` unless it is set, as
XLA's pool does not spin either (``OMP_WAIT_POLICY=ACTIVE`` measures the
default).

torch is never a dependency of the package. Install it, CPU-only, into a venv
of its own that also sees the repository's ``.venv`` (jax, deepclust_jax), and
run from the repository root:

  python3 -m venv /tmp/torchvenv
  /tmp/torchvenv/bin/pip install torch==2.13.0+cpu
  echo "import site; site.addsitedir('$PWD/.venv/lib/python3.11/site-packages')" \\
    > /tmp/torchvenv/lib/python3.11/site-packages/deepclust_venv.pth
  /tmp/torchvenv/bin/python experiments/nmm_em_torch.py --steps 4 --rounds 5
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

# Before torch loads OpenMP (see the module docstring).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from deepclust_jax import data
from deepclust_jax.models.nmm_em import ARCHITECTURES, parse_architecture
from nmm_em_speed import scanned_epoch  # this folder's, beside this script


class TorchRelevanceNet(nn.Module):
  """RelevanceNet(batch_norm=True) in PyTorch: every hidden layer Conv/Linear(bias=False)-BN-ReLU."""

  def __init__(self, architecture: str, in_channels: int, side: int, num_clusters: int):
    super().__init__()
    layers, c, flat = [], in_channels, None
    for kind, width in parse_architecture(architecture):
      if kind == "C":
        layers += [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU()]
        c = width
      elif kind == "M":
        layers.append(nn.MaxPool2d(2))
        side //= 2
      else:
        if flat is None:
          layers.append(nn.Flatten())
          flat = c * side * side
        layers += [nn.Linear(flat, width, bias=False), nn.BatchNorm1d(width), nn.ReLU()]
        flat = width
    layers.append(nn.Linear(flat, num_clusters))
    self.layers = nn.Sequential(*layers)

  def forward(self, x: torch.Tensor, move_stats: bool = True) -> torch.Tensor:
    # Momentum 0 keeps the running statistics (PyTorch weighs the new batch by it).
    for m in self.layers:
      if isinstance(m, nn.modules.batchnorm._BatchNorm):
        m.momentum = 0.1 if move_stats else 0.0
    return self.layers(x)


def sobel(gray: torch.Tensor) -> torch.Tensor:
  """(B, 1, H, W) -> (B, 2, H, W): ``augment.sobel``'s planes, edge-replicated border."""
  p = F.pad(gray, (1, 1, 1, 1), mode="replicate")
  d_w = p[..., :, 2:] - p[..., :, :-2]
  d_h = p[..., 2:, :] - p[..., :-2, :]
  vertical = d_w[..., :-2, :] + 2 * d_w[..., 1:-1, :] + d_w[..., 2:, :]
  horizontal = d_h[..., :, :-2] + 2 * d_h[..., :, 1:-1] + d_h[..., :, 2:]
  return torch.cat([vertical, horizontal], dim=1)


def augment(x: torch.Tensor, s, gen: torch.Generator) -> torch.Tensor:
  """``augment.augment`` for (B, 1, H, W) batches: crop, affine, brightness, contrast."""
  b, _, h, w = x.shape
  size = max(1, round(s.crop * h))
  top = torch.randint(0, h - size + 1, (b,), generator=gen)
  left = torch.randint(0, w - size + 1, (b,), generator=gen)
  rows = (top[:, None] + torch.arange(size))[:, :, None]
  cols = (left[:, None] + torch.arange(size))[:, None, :]
  crop = x[:, 0][torch.arange(b)[:, None, None], rows, cols][:, None]
  x = F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False)

  def uniform(lo, hi, n=b):
    return lo + (hi - lo) * torch.rand(n, generator=gen)

  angle = uniform(-math.radians(s.rotation), math.radians(s.rotation))
  scale = uniform(1 - s.scale, 1 + s.scale)
  shift = uniform(-s.shift, s.shift, (b, 2)) if s.shift else torch.zeros(b, 2)
  cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
  # Output pixel o reads the input at R(-angle)/s (o - c - t) + c, in [-1, 1] units.
  theta = torch.stack([torch.stack([cos, -sin, -(cos * shift[:, 1] - sin * shift[:, 0]) * 2], 1),
                       torch.stack([sin, cos, -(sin * shift[:, 1] + cos * shift[:, 0]) * 2], 1)], 1)
  grid = F.affine_grid(theta, list(x.shape), align_corners=False)
  x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
  x = (x + uniform(-s.brightness, s.brightness)[:, None, None, None]).clamp(0, 1)
  factor = uniform(1 - s.contrast, 1 + s.contrast)[:, None, None, None]
  mean = x.mean(dim=(2, 3), keepdim=True)
  return ((x - mean) * factor + mean).clamp(0, 1)


def normalize(a: torch.Tensor, running: list[torch.Tensor] | None, eps: float = 1e-5):
  """a* over the batch (biased variance); moves ``running`` (mean, var) when given."""
  mean, var = a.mean(0), a.var(0, unbiased=False)
  if running is not None:
    with torch.no_grad():
      running[0].mul_(0.9).add_(0.1 * mean)
      running[1].mul_(0.9).add_(0.1 * var)
  return (a - mean) * torch.rsqrt(var + eps)


def torch_step(net, opts, running, images, config, gen, temperature):
  """Algorithm 1 on one batch of (B, 1, 28, 28) images: EM step, then KL step."""
  x = sobel(images)
  x_tr = sobel(augment(images, config.strength(), gen))
  em_opt, kl_opt = opts
  a_star = normalize(net(x), running)
  a_star_tr = normalize(net(x_tr, move_stats=False), None)
  p = torch.softmax(a_star, -1).detach()
  n = a_star.shape[0]
  em = -(p * (F.logsigmoid(a_star / temperature) + F.logsigmoid(a_star_tr / temperature))).sum() / n
  em_opt.zero_grad(set_to_none=True)
  em.backward()
  em_opt.step()
  with torch.no_grad():
    log_p = torch.log_softmax(normalize(net(x, move_stats=False), None), -1)
  log_q = torch.log_softmax(normalize(net(x_tr, move_stats=False), None), -1)
  kl = (log_p.exp() * (log_p - log_q)).sum() / n
  kl_opt.zero_grad(set_to_none=True)
  kl.backward()
  kl_opt.step()
  return em.detach(), kl.detach()


def timed(fn):
  """(wall s, process CPU s) of ``fn()``."""
  tic, cpu = time.perf_counter(), time.process_time()
  fn()
  return time.perf_counter() - tic, time.process_time() - cpu


def main() -> None:
  parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  parser.add_argument("--data-dir", default="../shared/datasets")
  parser.add_argument("--steps", type=int, default=4)
  parser.add_argument("--rounds", type=int, default=5)
  parser.add_argument("--threads", type=int, default=2)
  args = parser.parse_args()
  torch.set_num_threads(args.threads)
  mnist = data.load("mnist", data_dir=args.data_dir)
  # Ours, as nmm_em_speed.py times it: one compiled scanned epoch.
  bench = scanned_epoch(mnist, args.steps)
  config, params, batches = bench.config, bench.params, bench.batches
  assert config.batch_norm and config.sobel and config.augment and config.consistency
  assert (config.architecture or "mnist") == "mnist"
  batch, steps = bench.phase.batch_size, args.steps
  n = batch * steps

  # Torch: the same network, data and step.
  torch.manual_seed(0)
  gen = torch.Generator().manual_seed(0)
  net = TorchRelevanceNet(ARCHITECTURES["mnist"], 2, 28, config.num_clusters).train()
  opts = (torch.optim.Adam(net.parameters(), lr=config.em_learning_rate, eps=1e-8),
          torch.optim.Adam(net.parameters(), lr=config.kl_learning_rate, eps=1e-8))
  running = [torch.zeros(config.num_clusters), torch.ones(config.num_clusters)]
  images = torch.from_numpy(np.asarray(mnist.x[:n])).reshape(n, 1, 28, 28)
  jax_params = sum(p.size for p in jax.tree.leaves(params))
  torch_params = sum(p.numel() for p in net.parameters())
  assert jax_params == torch_params, (jax_params, torch_params)
  order = torch.from_numpy(np.array(batches))

  def torch_epoch():
    for idx in order:
      torch_step(net, opts, running, images[idx], config, gen, config.temperature)

  torch_epoch()  # warm-up

  ours, theirs = [], []
  for r in range(args.rounds):
    ours.append(timed(lambda: bench.run(jax.random.key(3 + r))))
    theirs.append(timed(torch_epoch))
  med = {name: [statistics.median(t[i] for t in runs) / steps for i in (0, 1)]
         for name, runs in (("ours", ours), ("torch", theirs))}
  print(f"NMM-EM two-fold MNIST step (batch {batch}, augmentation and Sobel included), "
        f"{args.rounds} alternating rounds of {steps} steps, medians per step; "
        f"{config.num_clusters} clusters, {jax_params} parameters each side; "
        f"jax {jax.__version__}, torch {torch.__version__} with {torch.get_num_threads()} "
        f"threads, OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}")
  print("| | wall s / step | process CPU s / step |")
  print("|---|---|---|")
  for name in ("ours", "torch"):
    print(f"| {name} | {med[name][0]:.3f} | {med[name][1]:.3f} |")
  print(f"| ours / torch | {med['ours'][0] / med['torch'][0]:.2f} | "
        f"{med['ours'][1] / med['torch'][1]:.2f} |")
  print("per round, process CPU s / step, ours | torch: " + "; ".join(
      f"{o[1] / steps:.3f} | {t[1] / steps:.3f}" for o, t in zip(ours, theirs)))


if __name__ == "__main__":
  main()
