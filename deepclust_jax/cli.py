"""The ``deepclust`` command line: a thin shell over :mod:`deepclust_jax.pipeline`.

    deepclust datasets
    deepclust methods
    deepclust fit METHOD --dataset NAME [--runs N] [--epochs E] [--seed S]
                  [--init r|p] [--out DIR] [--data-dir D] [--set key=value ...]
                  [--resume] [--shared-order] [--run-devices N] [--eval-every N]
                  [--pretrained RUN_DIR] [--overwrite]
                  [--coordinator HOST:PORT --num-processes N --process-id I]
    deepclust evaluate RUN_DIR
    deepclust predict RUN_DIR (--dataset NAME [--data-dir D] | --input FILE [--array NAME])
                      [--out DIR]
    deepclust plot RUN_DIR [--data-dir D] [--max-points N] [--out DIR]
    deepclust compare RUN_DIR [RUN_DIR ...]

Errors a user can cause (unknown names, bad values, bad data, corrupt files)
print one line and exit with status 2.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import sys
from collections.abc import Sequence


def _datasets(args: argparse.Namespace) -> None:
  from deepclust_jax import data
  rows = [("name", "K", "available", "location")]
  for info in data.describe(args.data_dir):
    rows.append((info.name, str(info.num_classes), "yes" if info.available else "no",
                 str(info.location)))
  _print_table(rows)


def _methods(args: argparse.Namespace) -> None:
  from deepclust_jax import methods
  if args.name is None:
    _print_table([("name", "summary")] + [(n, methods.get(n).summary)
                                           for n in methods.names()])
    return
  num_classes, shape = 10, (28, 28, 1)
  if args.dataset is not None:
    from deepclust_jax import data
    spec = data.get(args.dataset)
    num_classes = spec.num_classes
    shape = spec.image_shape or (spec.num_features or 8,)
  d = methods.registry.describe(args.name, args.dataset,
                                overrides=methods.parse_overrides(args.set),
                                num_classes=num_classes, shape=shape)
  where = f" (preset of {args.dataset})" if args.dataset else ""
  print(f"{d.name}: {d.summary}\n")
  print(f"config keys (--set KEY=VALUE), default and value{where}; * where they differ:")
  _print_table([("  key", "default", "value")] + [
      (f"  {k}", repr(default), repr(value) + ("" if value == default else "  *"))
      for k, default, value in d.config])
  print("\nphases in order, with their epochs:")
  print("  " + ", ".join(f"{p} {e}" if e is not None else f"{p} (closed form)"
                         for p, e in d.phases))
  print("\n--epochs N sets: " + (
      ", ".join(d.epochs_sets) + "; the other phases keep their own keys" if d.epochs_sets
      else "nothing: this method has no epochs key, and fit refuses --epochs"))


def _fit(args: argparse.Namespace) -> None:
  from deepclust_jax import engine, methods, pipeline, summary
  from deepclust_jax.errors import InputError
  # First, while JAX has not started: on a CPU this asks for one device per share.
  mesh = engine.runs_mesh(args.run_devices) if args.run_devices > 1 else None
  if args.num_processes > 1:
    if mesh is not None or args.coordinator is None:
      raise InputError("--num-processes > 1 needs --coordinator HOST:PORT, and cannot be "
                       "combined with --run-devices")
    mesh = engine.join_processes(args.coordinator, args.num_processes, args.process_id)
  out = args.out or pipeline.default_run_dir(args.method, args.dataset)
  overrides = methods.parse_overrides(args.set)
  if args.init is not None:
    overrides["init"] = args.init
  report = pipeline.fit(
      args.method, args.dataset, runs=args.runs, seed=args.seed, epochs=args.epochs,
      overrides=overrides, data_dir=args.data_dir, out=out,
      resume=args.resume, pretrained=args.pretrained, overwrite=args.overwrite,
      download=args.download,
      options={"chunk_runs": args.chunk_runs, "shared_order": args.shared_order,
               "eval_every": args.eval_every, "checkpoint_every": args.checkpoint_every,
               "progress": not args.quiet, "mesh": mesh, "time_limit": args.time_limit})
  name = args.method
  if name == "dgg" and report.config.num_neighbours == 0:
    name = "dgg (DGG without graph)"
  title = f"{name} on {report.dataset} ({args.runs} run(s), seed {args.seed})"
  print(summary.format_summary(report.summary, title))
  print(f"run directory: {report.run_dir}")


def _evaluate(args: argparse.Namespace) -> None:
  from deepclust_jax import rundir, summary
  print(summary.format_summary(rundir.read(args.run_dir).summary, str(args.run_dir)))


def read_input(path: str, array: str | None = None):
  """The (N, D) numbers of ``path``: ``.npy``, ``.npz`` (the array ``array``, else
  its only one or the one named ``x``) or ``.csv``/``.txt`` (comma-separated, no header).

  Raises:
    InputError: another format, an unreadable file, or an ``.npz`` without the array.
  """
  import numpy as np

  from deepclust_jax.errors import InputError
  suffix = pathlib.Path(path).suffix.lower()
  try:
    if suffix == ".npy":
      return np.load(path, allow_pickle=False)
    if suffix == ".npz":
      with np.load(path, allow_pickle=False) as arrays:
        names = list(arrays)
        pick = array or ("x" if "x" in names else names[0] if len(names) == 1 else None)
        if pick not in names:
          raise InputError(f"{path} holds the arrays {', '.join(names) or '(none)'}: "
                           + (f"no {array!r}" if array else "name one with --array"))
        return arrays[pick]
    if suffix in (".csv", ".txt"):
      return np.loadtxt(path, delimiter=",", ndmin=2)
  except (OSError, ValueError, EOFError) as e:
    raise InputError(f"cannot read {path} as {suffix[1:]} numbers: {e}") from None
  raise InputError(f"{path}: unknown format {suffix or '(no suffix)'}; --input reads "
                   ".npy, .npz (--array NAME) and .csv/.txt of comma-separated numbers")


def _predict(args: argparse.Namespace) -> None:
  import numpy as np

  from deepclust_jax import data, metrics, rundir
  from deepclust_jax.errors import InputError
  model = rundir.load_model(args.run_dir)
  if args.input is not None:
    x, y, name = read_input(args.input, args.array), None, pathlib.Path(args.input).stem
  else:
    ds = data.load(args.dataset, data_dir=args.data_dir)
    x, y, name = ds.x, ds.y, ds.name
  gamma = model.predict_proba(x)
  out = pathlib.Path(args.out or pathlib.Path(args.run_dir) / f"predict-{name}")
  try:
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "labels.npy", gamma.argmax(-1).astype(np.int32))
    np.save(out / "probabilities.npy", gamma)
  except OSError as e:
    raise InputError(f"cannot write predictions to {out}: {e}") from None
  print(f"{args.run_dir}: {model.method} (run {model.run}) on {name}, {len(x)} samples")
  if y is not None:
    scores = metrics.evaluate(y, gamma.argmax(-1))
    print("  ".join(f"{k.upper()} {100 * v:.1f}" for k, v in scores.items()))
  print(f"labels: {out / 'labels.npy'}")
  print(f"probabilities: {out / 'probabilities.npy'}")


def _plot(args: argparse.Namespace) -> None:
  from deepclust_jax import plots
  written, skipped = plots.plot_run(args.run_dir, data_dir=args.data_dir,
                                    max_points=args.max_points, out=args.out,
                                    progress=sys.stderr.isatty())
  for path in written:
    print(f"wrote {path}")
  for name, why in skipped.items():
    print(f"skipped {name}: {why}")


def _compare(args: argparse.Namespace) -> None:
  from deepclust_jax import rundir
  print(rundir.compare(args.run_dirs), end="")


def _print_table(rows: Sequence[Sequence[str]]) -> None:
  widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
  for row in rows:
    print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _positive_seconds(text: str) -> float:
  try:
    value = float(text)
  except ValueError:
    raise argparse.ArgumentTypeError(f"{text} is not a number of seconds") from None
  if not value > 0:
    raise argparse.ArgumentTypeError(f"{text} is not a positive number of seconds")
  return value


def _integer(text: str, least: int) -> int:
  try:
    value = int(text)
  except ValueError:
    value = least - 1
  if value < least:
    raise argparse.ArgumentTypeError(
        f"{text} is not {'a positive' if least else 'a non-negative'} integer")
  return value


def _positive(text: str) -> int:
  return _integer(text, 1)


def _non_negative(text: str) -> int:
  return _integer(text, 0)


def parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog="deepclust", description=__doc__.split("\n")[0])
  sub = p.add_subparsers(dest="command", required=True)
  d = sub.add_parser("datasets", help="list datasets, where they load from, availability")
  d.add_argument("--data-dir", help="look here first (else $DEEPCLUST_DATA)")
  d.set_defaults(run=_datasets)
  m = sub.add_parser("methods", help="list methods, or one method's config keys and phases")
  m.add_argument("name", nargs="?", help="a method: its config keys, defaults, phases")
  m.add_argument("--dataset", help="show the values of this dataset's preset")
  m.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="as for fit: show the phases with this config value")
  m.set_defaults(run=_methods)
  f = sub.add_parser("fit", help="train a method on a dataset and score it")
  f.add_argument("method")
  f.add_argument("--dataset", required=True)
  f.add_argument("--runs", type=_positive, default=1, help="independent seeds (vmapped)")
  f.add_argument("--epochs", type=int, help="override the config's epochs")
  f.add_argument("--seed", type=int, default=0)
  f.add_argument("--out", help="run directory (default runs/METHOD-DATASET-TIME)")
  f.add_argument("--data-dir", help="look for dataset files here first")
  f.add_argument("--download", action="store_true",
                 help="fetch a missing dataset (TensorFlow Datasets, the tfds extra; "
                      "20 Newsgroups by scikit-learn) into the data directory")
  f.add_argument("--init", choices=["r", "p"],
                 help="CM/AE-CM initialisation: r random, p pretrained (= --set init=...)")
  f.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                 help="override a config value (repeatable)")
  f.add_argument("--resume", action="store_true", help="continue from the last checkpoint")
  f.add_argument("--overwrite", action="store_true",
                 help="replace the run --out holds (finished, failed or of another config)")
  f.add_argument("--pretrained", metavar="RUN_DIR",
                 help="start from that run directory's pretrained autoencoders (same "
                      "dataset and network) instead of pretraining")
  f.add_argument("--chunk-runs", type=_positive, help="train at most this many runs at once")
  f.add_argument("--shared-order", action="store_true",
                 help="all runs visit the batches in the same order (faster for many runs)")
  f.add_argument("--run-devices", type=_positive, default=1,
                 help="split the runs over N devices (on a CPU: N CPU devices, one per "
                      "core); --runs must be a multiple of N")
  f.add_argument("--coordinator", metavar="HOST:PORT",
                 default=os.environ.get("JAX_COORDINATOR_ADDRESS"),
                 help="train data-parallel over several processes (hosts): process 0's "
                      "address, the same for all (default $JAX_COORDINATOR_ADDRESS)")
  # String defaults go through ``type`` too: a bad $JAX_* value gets argparse's one line.
  f.add_argument("--num-processes", type=_positive,
                 default=os.environ.get("JAX_NUM_PROCESSES", "1"),
                 help="processes in the training (default $JAX_NUM_PROCESSES, else 1)")
  f.add_argument("--process-id", type=_non_negative,
                 default=os.environ.get("JAX_PROCESS_ID", "0"),
                 help="this process's index, 0 to N-1; process 0 writes the run "
                      "directory (default $JAX_PROCESS_ID, else 0)")
  f.add_argument("--eval-every", type=_positive, default=10,
                 help="score every N epochs (and at the end of each phase)")
  f.add_argument("--checkpoint-every", type=_positive, default=10)
  f.add_argument("--time-limit", type=_positive_seconds, metavar="SECONDS",
                 help="stop, checkpointed, at the first epoch end past this many seconds "
                      "of training and score what was trained (--resume continues)")
  f.add_argument("--quiet", action="store_true", help="no progress bar")
  f.set_defaults(run=_fit)
  e = sub.add_parser("evaluate", help="recompute the summary of a run directory")
  e.add_argument("run_dir")
  e.set_defaults(run=_evaluate)
  pr = sub.add_parser("predict", help="cluster new data with a run directory's saved model")
  pr.add_argument("run_dir")
  source = pr.add_mutually_exclusive_group(required=True)
  source.add_argument("--dataset", help="a dataset by name")
  source.add_argument("--input", help="an (N, D) array: .npy, .npz or .csv of numbers")
  pr.add_argument("--array", help="the array of an .npz --input (default: x, or its only one)")
  pr.add_argument("--data-dir", help="look for dataset files here first")
  pr.add_argument("--out", help="where labels.npy and probabilities.npy go "
                                "(default RUN_DIR/predict-NAME)")
  pr.set_defaults(run=_predict)
  pl = sub.add_parser("plot", help="write PNGs of a run directory (into it, or --out)")
  pl.add_argument("run_dir")
  pl.add_argument("--out", help="folder of the PNGs (default RUN_DIR)")
  pl.add_argument("--data-dir", help="look for the run's dataset here first (2-D map)")
  pl.add_argument("--max-points", type=_positive, default=2000,
                  help="points drawn on the 2-D t-SNE map")
  pl.set_defaults(run=_plot)
  c = sub.add_parser("compare", help="one Markdown table of several run directories")
  c.add_argument("run_dirs", nargs="+", metavar="RUN_DIR")
  c.set_defaults(run=_compare)
  return p


CACHE_VAR = "DEEPCLUST_COMPILATION_CACHE"


def compilation_cache() -> pathlib.Path | None:
  """Turns on JAX's persistent compilation cache for this process; returns its folder.

  ``$DEEPCLUST_COMPILATION_CACHE`` names the folder, ``0`` turns the cache
  off; by default it is ``deepclust_jax/jax`` in the user's cache directory
  (``$XDG_CACHE_HOME``, else ``~/.cache``). A repeated command then skips
  XLA's compilation, which dominates a small data set's run.
  """
  import os
  setting = os.environ.get(CACHE_VAR, "")
  if setting == "0":
    return None
  folder = pathlib.Path(setting or pathlib.Path(
      os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache") / "deepclust_jax"
      / "jax").expanduser()
  try:
    folder.mkdir(parents=True, exist_ok=True)
  except OSError:
    return None  # an unwritable cache only costs time
  import jax
  jax.config.update("jax_compilation_cache_dir", str(folder))
  # Small data compiles in well under JAX's default threshold of 1 s per program.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
  return folder


def main(argv: Sequence[str] | None = None) -> int:
  args = parser().parse_args(argv)
  from deepclust_jax.errors import DeepclustError
  if args.command in ("fit", "evaluate", "predict", "plot"):
    compilation_cache()
  try:
    args.run(args)
  except DeepclustError as e:
    print(f"deepclust: error: {e}", file=sys.stderr)
    return 2
  except KeyboardInterrupt:
    print("deepclust: interrupted; continue with the same command and --resume",
          file=sys.stderr)
    return 130
  return 0


if __name__ == "__main__":
  sys.exit(main())
