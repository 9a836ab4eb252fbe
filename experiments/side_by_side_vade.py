"""VaDE and DGG joint epochs, side by side with the public PyTorch code, on one CPU.

Issue 11, item 6: our VaDE joint epoch against github.com/GuHongyang/VaDE-pytorch
and our DGG epoch with N_s = 3 against the DGG authors' released code
(github.com/ngoc-nguyen-0/DGG, ``mnist/DGG.py``), in ONE process tree, same
CPU, same data (MNIST, 70,000 x 784 in [0, 1]), same model (784-500-500-2000-10
encoder, mirrored decoder, 10 clusters) and batch (100 anchors), interleaved
(theirs, ours, theirs, ours...) so that the drift of a shared machine hits both
alike. Each row is the median over rounds after one warm-up epoch per side.

The peers' code is never copied here: ``--vade-pytorch`` and ``--dgg`` name
checkouts outside the project (``experiments/side_by_side_vade.sh`` exports
them from git mirrors), imported by a worker process that this script starts
under a separate PyTorch interpreter (``--torch-python``), fed one "epoch"
command at a time over a pipe. What the worker changes at run time, and why
(nothing is edited in their files):

* ``torch.Tensor.cuda`` and ``torch.nn.Module.cuda`` return ``self``: both
  codes call ``.cuda()`` unconditionally (DGG: ``gen_x``, ``compute_weight``,
  ``train``; VaDE-pytorch: ``pre_train``); the machine has no GPU;
* VaDE-pytorch's ``dataloader.py`` imports ``torchvision.datasets.MNIST``
  (``download=True``); a stand-in module of that name reads the same four local
  IDX files (``--mnist-dir``) into the ``.data`` / ``.targets`` tensors it
  uses, so their ``get_mnist`` runs unchanged (DataLoader, shuffle,
  ``num_workers=4``, x = pixels / 255, train then test);
* DGG's ``training_p`` reads neighbour tables made by its Siamese scripts and
  VaDE's pretrained weights ``mnist/pretrained_weight/w_*.out``, which the git
  mirror lacks (missing blobs); the worker builds the same objects that
  ``training_p`` hands to ``train``: the (70000, 784, 1 + N_s) array of each
  anchor and its neighbours (the same random neighbour table as ours, see
  below), their ``VAE`` built from random ``w_init`` tensors of the released
  files' shapes, ``GMM_Model`` and ``Classifer``, ``Adam(lr=2e-3,
  weight_decay=1e-4)``, ``StepLR(10, 0.9)``, and calls their ``train`` with
  ``epoch_num=1``. Pretraining, k-means and the classifier's pretraining are
  skipped: they do not change the cost of a joint step;
* VaDE-pytorch's ``main.py`` is a script; the worker calls their
  ``get_mnist(batch_size=100)``, ``VaDE`` and ``ELBO_Loss`` with the optimiser
  and schedule of ``main.py`` (``Adam(2e-3)``, ``StepLR(10, 0.95)``) and runs
  the lines of its batch loop (loss, zero_grad, backward, step, loss to host);
  pretraining is skipped (random weights), and so is the per-epoch prediction
  pass over the data that follows the batch loop in ``main.py``.

What one "epoch" is:

* VaDE, theirs: 700 batches of 100 samples from their DataLoader (4 worker
  processes started per epoch, as in ``main.py``); per step the encoder, one
  sample of z, the decoder, the ELBO against the mixture, backward, Adam.
* VaDE, ours: the compiled engine epoch of the ``joint`` phase of method
  ``vade`` (config defaults for MNIST: batch 100), 700 steps.
* DGG, theirs: their ``train`` for one epoch: 700 batches of 100 anchors, each
  with its N_s = 3 neighbours (so 400 rows of 784 per step); per step a forward
  pass of the 400 rows for the neighbours' prior ``pc``, the training forward
  and backward on 400 rows (all reconstructing their anchor), Adam, and a
  forward pass and reconstruction of the 100 anchors for the log.
* DGG, ours: the compiled ``joint`` epoch of method ``dgg`` with
  ``num_neighbours=3``: batches of 100 anchors x (1 + 3) rows, the stored
  neighbours gathered on the device, 700 steps.

Only a prefix of ``--steps`` steps of each epoch is measured and scaled to the
700 steps of a full epoch. Theirs: the time to the first batch (DataLoader
start) is counted once, the rest scaled. Ours: the engine epoch over the first
``steps x 100`` samples (bench_engine.py's pattern; its neighbour table is drawn
within those samples). Neighbours: a random table (numpy seed 0), as the kNN
graph's content does not change the cost; the DGG Siamese phases are not timed.
Float32 on both sides. Ours: XLA's defaults (all cores, here 2; denormals
flushed to zero). Theirs, one worker per setting of ``--torch-variants``, all
interleaved: torch.set_num_threads(T) with OMP/MKL_NUM_THREADS=T, optionally
OMP_WAIT_POLICY (PASSIVE: on a CPU shared with other jobs, OpenMP's default
spin-waiting made 2-thread torch steps 10-15x slower here) and optionally
torch.set_flush_denormal(True) ("+ftz", XLA's behaviour: without it
VaDE-pytorch's epochs slow down by ~1.8x after ~600 steps from random init,
denormal floats). The ratio is given against each setting and the fastest.

Command (from the project root; the .sh makes the peers' copies and venv):
  bash experiments/side_by_side_vade.sh
  .venv/bin/python experiments/side_by_side_vade.py --vade-pytorch /tmp/peers/vade-pytorch \
      --dgg /tmp/peers/dgg --torch-python /tmp/peers/torchvenv/bin/python \
      --data-dir ../shared/datasets [--steps 200] [--rounds 4] [--which vade dgg]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

import numpy as np

FULL_STEPS = 700  # 70,000 samples / batch 100
BATCH = 100
NUM_NEIGHBOURS = 3


# --------------------------------------------------------------------------
# The peers' side: runs under the PyTorch interpreter; imports no project code.
# --------------------------------------------------------------------------

def _cpu_only_torch(threads: int):
  """`.cuda()` is a no-op (both codes call it unconditionally; no GPU here)."""
  import torch
  torch.Tensor.cuda = lambda self, *a, **k: self
  torch.nn.Module.cuda = lambda self, *a, **k: self
  torch.set_num_threads(threads)


def _local_torchvision(mnist_dir: str):
  """A stand-in ``torchvision.datasets.MNIST`` reading the local IDX gzip files."""
  import gzip
  import types
  import torch

  def read_idx(path):
    with gzip.open(path, "rb") as f:
      raw = f.read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims).copy()

  class MNIST:
    def __init__(self, root=None, train=True, download=False, **_):
      prefix = "train" if train else "t10k"
      self.data = torch.from_numpy(read_idx(os.path.join(mnist_dir, f"{prefix}-images-idx3-ubyte.gz")))
      self.targets = torch.from_numpy(
          read_idx(os.path.join(mnist_dir, f"{prefix}-labels-idx1-ubyte.gz")).astype(np.int64))

  tv = types.ModuleType("torchvision")
  tv.datasets = types.ModuleType("torchvision.datasets")
  tv.datasets.MNIST = MNIST
  tv.transforms = types.ModuleType("torchvision.transforms")
  tv.transforms.ToTensor = lambda: None
  sys.modules.update({"torchvision": tv, "torchvision.datasets": tv.datasets,
                      "torchvision.transforms": tv.transforms})


def _peer_vade(args):
  """(description, epoch(steps) -> seconds per full epoch) for VaDE-pytorch."""
  import torch
  from torch.optim import Adam
  from torch.optim.lr_scheduler import StepLR
  _local_torchvision(args.mnist_dir)
  sys.path.insert(0, args.checkout)
  from dataloader import get_mnist  # their code
  from model import VaDE  # their code
  torch.manual_seed(0)
  DL, _ = get_mnist(args.mnist_dir, BATCH)
  vade = VaDE(argparse.Namespace(nClusters=10, hid_dim=10, cuda=True))
  opti = Adam(vade.parameters(), lr=2e-3)  # as main.py
  lr_s = StepLR(opti, step_size=10, gamma=0.95)
  full = len(DL)

  def epoch(steps):
    lr_s.step()  # as main.py, at the start of each epoch
    L = 0
    tic = time.perf_counter()
    first = None
    for i, (x, _) in enumerate(DL):  # their loader: shuffle, num_workers=4
      if i == 0:
        first = time.perf_counter() - tic
      if i == steps:
        break
      x = x.cuda()
      loss = vade.ELBO_Loss(x)  # main.py calls vade.module.ELBO_Loss (DataParallel)
      opti.zero_grad()
      loss.backward()
      opti.step()
      L += loss.detach().cpu().numpy()
    total = time.perf_counter() - tic
    assert np.isfinite(L), L
    return first + (total - first) * full / steps, {"first_batch_s": first, "prefix_s": total,
                                                    "loss": float(L / steps)}

  return f"VaDE-pytorch, {full} steps/epoch", epoch


def _peer_dgg(args):
  """(description, epoch(steps) -> seconds per full epoch) for the DGG authors' code."""
  import torch
  import torch.nn as nn
  import torch.optim as optim
  from torch.optim.lr_scheduler import StepLR
  from torch.utils.data import DataLoader, TensorDataset
  sys.path.insert(0, os.path.join(args.checkout, "mnist"))
  import DGG  # their code
  torch.manual_seed(0)
  x = np.load(args.x)
  y = np.load(args.y)
  nbrs = np.load(args.nbrs)
  # training_p: the anchor then its neighbours along the last axis.
  image_train = np.stack([x] + [x[nbrs[:, j]] for j in range(nbrs.shape[1])], axis=2)
  L = 10
  sizes = [784, 500, 500, 2000, L]
  # Random w_init of the shapes of mnist/pretrained_weight/{w,b}_{1..8}.out, in
  # training_p's order (w_1 b_1 w_5 b_5 w_2 b_2 w_6 b_6 ...), (fan_in, fan_out).
  rng = np.random.default_rng(0)
  w_init = []
  for i in range(4):
    n_in, n_out = sizes[i], sizes[i + 1]
    for a, b in ((n_in, n_out), (n_out, n_in)):
      w_init.append(torch.tensor((rng.uniform(-1, 1, (a, b)) / np.sqrt(a)).astype(np.float32)))
      w_init.append(torch.zeros(b))
  vae = DGG.VAE(sizes, image_train[:, :, 0], nn.ReLU(), w_init=w_init)
  mean = rng.normal(size=(L, L)).astype(np.float32)
  var = np.ones((L, L), np.float32)
  GMM = DGG.GMM_Model(10, L, mean.transpose(), var.transpose())
  classifer = DGG.Classifer([L, L])
  dataloader = DataLoader(TensorDataset(torch.from_numpy(image_train), torch.from_numpy(y)),
                          batch_size=BATCH, shuffle=True)
  optimizer = optim.Adam(list(vae.get_para()) + list(classifer.parameters()) +
                         list(GMM.get_para()), lr=0.002, weight_decay=0.0001)
  lr_scheduler = StepLR(optimizer, step_size=10, gamma=0.9)
  full = len(dataloader)

  class Prefix:
    """The loader's first `steps` batches (their train() only iterates it)."""

    def __init__(self, steps):
      self.steps = steps

    def __iter__(self):
      for i, batch in enumerate(dataloader):
        if i == self.steps:
          return
        yield batch

    def __len__(self):
      return self.steps

  def epoch(steps):
    tic = time.perf_counter()
    DGG.train(vae, classifer, GMM, optimizer, lr_scheduler, Prefix(steps), epoch_num=1)
    total = time.perf_counter() - tic
    return total * full / steps, {"prefix_s": total}

  return f"DGG (authors), N_s={nbrs.shape[1]}, {full} steps/epoch", epoch


def peer_main(args) -> None:
  """Worker: answers each "epoch" line on stdin with one JSON line on stdout."""
  proto = os.fdopen(os.dup(1), "w", buffering=1)
  os.dup2(2, 1)  # their prints and progress bars go to stderr (the log)
  _cpu_only_torch(args.threads)
  import torch
  if args.flush_denormal:  # what XLA does on CPU by default; torch's default is off
    assert torch.set_flush_denormal(True)
  what, epoch = {"vade": _peer_vade, "dgg": _peer_dgg}[args.peer](args)
  proto.write(json.dumps({"ready": what, "torch": torch.__version__,
                          "threads": torch.get_num_threads()}) + "\n")
  for line in sys.stdin:
    if line.strip() != "epoch":
      break
    seconds, extra = epoch(args.steps)
    proto.write(json.dumps({"epoch_s": seconds, **extra}) + "\n")


# --------------------------------------------------------------------------
# Our side and the orchestration: runs under the project's interpreter.
# --------------------------------------------------------------------------

def ours_epoch(name: str, x, nbrs):
  """(compile seconds, a function timing one more joint epoch) of our engine."""
  import jax
  import jax.numpy as jnp
  from deepclust_jax import methods
  from deepclust_jax.engine import TrainOptions, run_keys
  from deepclust_jax.engine.loop import Compiled
  overrides = {"num_neighbours": NUM_NEIGHBOURS} if name == "dgg" else {}
  method = methods.build(name, shape=(784,), num_clusters=10, dataset="mnist", **overrides)
  joint = len(method.phases) - 1
  assert method.phases[joint].name == "joint" and method.phases[joint].batch_size == BATCH
  data = {"x": jnp.asarray(x)}
  compiled = Compiled(method, data, TrainOptions(runs=1), 1)
  keys = run_keys(0, range(1))
  params, state = compiled.init(keys, data)
  if name == "dgg":
    state = {**state, "nbrs": jnp.asarray(nbrs, jnp.int32)[None]}
  opt_states = compiled.opt_init[joint](params)
  epoch = compiled.epoch(joint, False)
  active = jnp.ones(1, bool)
  tic = time.perf_counter()
  run = epoch.lower(params, state, opt_states, data, keys, keys[0], active).compile()
  compile_s = time.perf_counter() - tic
  carry = [params, state, opt_states]
  count = [0]
  steps = x.shape[0] // BATCH

  def one_epoch():
    count[0] += 1
    ekeys = jax.vmap(lambda k: jax.random.fold_in(k, count[0]))(keys)
    tic = time.perf_counter()
    *carry[:], terms = jax.block_until_ready(run(*carry, data, ekeys, ekeys[0], active))
    seconds = time.perf_counter() - tic
    loss = float(np.asarray(terms["loss"]).ravel()[0])
    assert np.isfinite(loss), loss
    return seconds * FULL_STEPS / steps, {"prefix_s": seconds, "loss": loss}

  return compile_s, one_epoch


class Peer:
  """A worker process running the peers' code under the PyTorch interpreter."""

  def __init__(self, which: str, argv: list[str], log: pathlib.Path, threads: int,
               wait_policy: str | None):
    self.log = open(log, "w")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads),
           "PYTHONUNBUFFERED": "1"}
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy:
      env["OMP_WAIT_POLICY"] = wait_policy
    self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=self.log, text=True, env=env)
    self.info = self._read(f"{which} worker setup (see {log})")

  def _read(self, what):
    line = self.proc.stdout.readline()
    if not line:
      raise RuntimeError(f"{what} failed")
    return json.loads(line)

  def epoch(self):
    self.proc.stdin.write("epoch\n")
    self.proc.stdin.flush()
    r = self._read("peer epoch (see its log)")
    return r.pop("epoch_s"), r

  def close(self):
    self.proc.stdin.close()
    self.proc.wait()
    self.log.close()


def _load_average() -> str:
  return " ".join(open("/proc/loadavg").read().split()[:3])


def main(argv=None) -> None:
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--peer", choices=["vade", "dgg"], help=argparse.SUPPRESS)
  p.add_argument("--checkout", help=argparse.SUPPRESS)
  p.add_argument("--x", help=argparse.SUPPRESS)
  p.add_argument("--y", help=argparse.SUPPRESS)
  p.add_argument("--nbrs", help=argparse.SUPPRESS)
  p.add_argument("--threads", type=int, default=2, help=argparse.SUPPRESS)
  p.add_argument("--flush-denormal", action="store_true", help=argparse.SUPPRESS)
  p.add_argument("--mnist-dir", help="the four MNIST IDX gzip files (default: DATA_DIR/mnist)")
  p.add_argument("--vade-pytorch", help="a checkout of github.com/GuHongyang/VaDE-pytorch")
  p.add_argument("--dgg", help="a checkout (or export) of github.com/ngoc-nguyen-0/DGG")
  p.add_argument("--torch-python", default=os.environ.get("TORCH_PYTHON"),
                 help="python of a venv with torch (CPU), scikit-learn, scipy, tqdm, "
                      "matplotlib, ipdb")
  p.add_argument("--data-dir", default="../shared/datasets")
  p.add_argument("--which", nargs="*", default=["vade", "dgg"])
  p.add_argument("--steps", type=int, default=100, help="steps measured per epoch")
  p.add_argument("--rounds", type=int, default=3, help="interleaved rounds after warm-up")
  p.add_argument("--torch-variants", nargs="*",
                 default=["2/PASSIVE", "2/PASSIVE+ftz", "1", "1+ftz"],
                 help="their settings, each THREADS[/OMP_WAIT_POLICY][+ftz] (+ftz: "
                      "torch.set_flush_denormal(True)); each is a separate worker, all "
                      "interleaved; the last ratio uses the fastest")
  p.add_argument("--scratch", default=os.environ.get("PEERS_DIR", "/tmp/peers"),
                 help="where the shared arrays and the workers' logs go (outside the project)")
  p.add_argument("--out", help="also write the records here (JSON lines)")
  args = p.parse_args(argv)
  args.mnist_dir = args.mnist_dir or os.path.join(args.data_dir, "mnist")
  if args.peer:
    return peer_main(args)

  import jax
  from deepclust_jax import data
  scratch = pathlib.Path(args.scratch) / "side_by_side_vade"
  scratch.mkdir(parents=True, exist_ok=True)
  mnist = data.load("mnist", data_dir=args.data_dir)
  x = np.asarray(mnist.x, np.float32)
  y = np.asarray(mnist.y, np.int64)
  assert x.shape == (70000, 784) and 0 <= x.min() and x.max() <= 1
  rng = np.random.default_rng(0)
  n_prefix = args.steps * BATCH
  nbrs_full = rng.integers(0, x.shape[0], (x.shape[0], NUM_NEIGHBOURS))
  nbrs_prefix = rng.integers(0, n_prefix, (n_prefix, NUM_NEIGHBOURS))
  for name, a in (("x", x), ("y", y), ("nbrs", nbrs_full)):
    np.save(scratch / f"{name}.npy", a)

  def worker(which, checkout, variant):
    threads, _, policy = variant.removesuffix("+ftz").partition("/")
    argv = [args.torch_python, os.path.abspath(__file__), "--peer", which, "--checkout",
            checkout, "--steps", str(args.steps), "--mnist-dir", args.mnist_dir,
            "--x", str(scratch / "x.npy"), "--y", str(scratch / "y.npy"),
            "--nbrs", str(scratch / "nbrs.npy"), "--threads", threads]
    argv += ["--flush-denormal"] if variant.endswith("+ftz") else []
    log = scratch / f"{which}_worker_{variant.replace('/', '_').replace('+', '_')}.log"
    return Peer(which, argv, log, int(threads), policy or None)

  sides = {}  # (method, side) -> (description, one_epoch)
  for which in args.which:
    checkout = {"vade": args.vade_pytorch, "dgg": args.dgg}[which]
    if not checkout or not args.torch_python:
      print(f"[skip] theirs {which}: no checkout or no --torch-python", flush=True)
    else:
      for variant in args.torch_variants:
        peer = worker(which, checkout, variant)
        threads, _, policy = variant.removesuffix("+ftz").partition("/")
        key = (which, f"theirs, {threads} thread{'s' if threads != '1' else ''}"
               f"{', OMP_WAIT_POLICY=' + policy if policy else ''}"
               f"{', flush denormals' if variant.endswith('+ftz') else ''}")
        sides[key] = (f"{peer.info['ready']} (torch {peer.info['torch']})", peer)
        print(f"[setup] {key[1]} {which}: {sides[key][0]}", flush=True)
    compile_s, one = ours_epoch(which, x[:n_prefix], nbrs_prefix)
    sides[(which, "ours")] = (f"deepclust_jax engine epoch, jax {jax.__version__} "
                              f"(compile {compile_s:.1f} s)", one)
    print(f"[setup] ours {which}: {sides[(which, 'ours')][0]}", flush=True)

  def run(side):
    what = side[1]
    return what.epoch() if isinstance(what, Peer) else what()

  times = {k: [] for k in sides}
  extras = {k: [] for k in sides}
  loads = []
  for r in range(args.rounds + 1):  # round 0: warm-up, not counted
    for k, side in sides.items():
      seconds, extra = run(side)
      print(f"round {r}{' (warm-up)' if r == 0 else ''} {k[0]} {k[1]}: "
            f"{seconds:7.2f} s/epoch {json.dumps(extra)}", flush=True)
      if r:
        times[k].append(seconds)
        extras[k].append(extra)
    loads.append(_load_average())
  for side in sides.values():
    if isinstance(side[1], Peer):
      side[1].close()

  cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo")
              if l.startswith("model name")), "CPU")
  records = []
  print(f"\nCPU: {cpu}, {os.cpu_count()} cores; load average after each round: "
        f"{' | '.join(loads)}")
  print(f"{args.steps} of {FULL_STEPS} steps measured per epoch, scaled to a full epoch; "
        f"median of {args.rounds} interleaved rounds after one warm-up.\n")
  print("| method | side | what | s per full epoch (median) | rounds (s) |")
  print("|---|---|---|---|---|")
  for (which, side), (desc, _) in sides.items():
    med = float(np.median(times[(which, side)]))
    records.append({"method": which, "side": side, "what": desc, "epoch_s": med,
                    "rounds_s": times[(which, side)], "steps": args.steps,
                    "full_epoch_steps": FULL_STEPS, "cpu": cpu, "cores": os.cpu_count(),
                    "load": loads, "date": time.strftime("%Y-%m-%d")})
    print(f"| {which} | {side} | {desc} | {med:.2f} | "
          f"{', '.join(f'{t:.2f}' for t in times[(which, side)])} |")
  print("\n| method | ours / theirs (each setting) | ours / their fastest | target |\n"
        "|---|---|---|---|")
  for which in args.which:
    ours = np.median(times[(which, "ours")])
    theirs = {k[1]: np.median(t) for k, t in times.items()
              if k[0] == which and k[1] != "ours"}
    if theirs:
      each = "; ".join(f"{side}: {ours / t:.2f}" for side, t in theirs.items())
      target = "<= 0.8" if which == "vade" else "(reported)"
      print(f"| {which} | {each} | {ours / min(theirs.values()):.2f} | {target} |")
  if args.out:
    with open(args.out, "a") as f:
      for rec in records:
        f.write(json.dumps(rec) + "\n")


if __name__ == "__main__":
  main()
