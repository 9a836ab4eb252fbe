"""Scores over runs, as the papers' tables report them: mean ± std, the selected run.

``summarize`` turns per-run scores (and the selection criterion) into the
summary ``fit`` returns and ``summary.md`` shows; ``format_summary`` prints
it. Both are pure: a run directory's summary is recomputed from its labels
by :attr:`deepclust_jax.rundir.Run.summary`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

SCORES = ("acc", "nmi", "ari")


def with_trained(plan: Sequence[Mapping[str, Any]],
                 epochs: Mapping[str, np.ndarray]) -> list[dict[str, Any]]:
  """``engine.budget``'s plan with the epochs the runs trained, where they stopped early."""
  out = []
  for phase in plan:
    if "from" in phase:  # pretrained elsewhere
      out.append(dict(phase))
      continue
    trained = np.asarray(epochs[phase["phase"]])
    extra = ({"trained": [int(trained.min()), float(trained.mean()), int(trained.max())]}
             if (trained < phase["epochs"]).any() else {})
    out.append({**phase, **extra})
  return out


def summarize(scores: Sequence[Mapping[str, float]] | None, selected: int | None,
              select_by: str | None = None, collapsed: Sequence[int] = (),
              budget: Sequence[Mapping[str, Any]] = (),
              criterion: Sequence[float] | None = None) -> dict[str, Any]:
  """Mean and std over runs of each score, the selected run, the collapsed runs.

  ``budget`` (each SGD phase's epochs and steps, see
  :func:`~deepclust_jax.engine.budget`) is kept as it is, scores or not.
  With each run's ``criterion`` (the selection's, lower is better) and at
  least 3 runs that did not collapse, ``selected["spearman_acc"]`` is
  Spearman's rank correlation of minus the criterion with ACC over those
  runs: 1 when the criterion ranks the runs as ACC does, so that selecting
  by it picks the best run; near 0 when it says nothing about ACC.
  """
  summary: dict[str, Any] = {"budget": list(budget)} if budget else {}
  if not scores:
    return summary
  table = {k: np.array([s[k] for s in scores]) for k in SCORES}
  summary |= {"runs": len(scores),
             "mean": {k: float(v.mean()) for k, v in table.items()},
             "std": {k: float(v.std()) for k, v in table.items()},
             "collapsed": [int(r) for r in collapsed]}
  if selected is not None:
    summary["selected"] = {"run": selected, "by": select_by,
                           **{k: float(table[k][selected]) for k in SCORES}}
    kept = np.setdiff1d(np.arange(len(scores)), np.asarray(collapsed, int))
    if criterion is not None and len(kept) >= 3:
      import scipy.stats  # here: importing it costs half a second of every command's start
      rho = scipy.stats.spearmanr(-np.asarray(criterion, float)[kept], table["acc"][kept])[0]
      summary["selected"]["spearman_acc"] = None if np.isnan(rho) else float(rho)
  return summary


def format_budget(budget: Sequence[Mapping[str, Any]]) -> str:
  """One line per SGD phase: epochs x steps of a batch, and where runs stopped early."""
  lines = []
  for b in budget:
    if "from" in b:
      lines.append(f"- {b['phase']}: pretrained in {b['from']}")
      continue
    line = (f"- {b['phase']}: {b['epochs']} epochs x {b['steps_per_epoch']} steps of "
            f"{b['batch_size']} = {b['steps']} steps")
    if "batch_size_asked" in b:
      line += f" (batch_size {b['batch_size_asked']} asked, more than the N samples)"
    if "trained" in b:
      low, mean, high = b["trained"]
      line += f"; runs trained {low} to {high} of them (mean {mean:.1f})"
    lines.append(line)
  return "\n".join(lines)


def format_summary(summary: Mapping[str, Any], title: str = "") -> str:
  """A Markdown table of ``summarize``'s output, scores x100 as in the papers."""
  budget = (f"\nBudget:\n{format_budget(summary['budget'])}\n"
            if summary.get("budget") else "")
  if summary.get("pretrained"):
    source = summary["pretrained"]
    budget += (f"\nStarted from the pretrained autoencoders of {source['run_dir']} "
               f"({source['method']}, recipe {source['recipe']}, "
               f"{source['pretrain_epochs']} epochs, seed {source['seed']}"
               f"{'; its one autoencoder shared by every run' if source.get('shared') else ''})"
               ".\n")
  if summary.get("unfitted"):
    budget += (f"\nCut short by the time limit inside pretraining: run(s) "
               f"{summary['unfitted']} have no fitted clusters yet, so no run is scored; "
               "--resume continues from the last checkpoint.\n")
  elif summary.get("cut_short"):
    budget += ("\nCut short by the time limit: scores are of the epochs trained "
               "(above); --resume continues from the last checkpoint.\n")
  if summary.get("warnings"):
    budget += "\nWarnings:\n" + "".join(f"- {line}\n" for line in summary["warnings"])
  if "mean" not in summary:
    why = "not scored" if summary.get("unfitted") else "no labels: nothing to score"
    return f"{title}\n({why})\n{budget}"
  lines = [title, "", "| | ACC | NMI | ARI |", "|---|---|---|---|"]
  row = " | ".join(f"{100 * summary['mean'][k]:.1f} ± {100 * summary['std'][k]:.1f}"
                   for k in SCORES)
  lines.append(f"| mean ± std over {summary['runs']} run(s) | {row} |")
  if "selected" in summary:
    sel = summary["selected"]
    row = " | ".join(f"{100 * sel[k]:.1f}" for k in SCORES)
    lines.append(f"| selected run {sel['run']} (lowest {sel['by']}) | {row} |")
    if sel.get("spearman_acc") is not None:
      lines += ["", f"Rank correlation of -{sel['by']} with ACC over the runs that did "
                    f"not collapse (Spearman): {sel['spearman_acc']:+.2f}"]
  collapsed = summary.get("collapsed", [])
  if collapsed:
    lines += ["", f"{len(collapsed)} run(s) collapsed (a cluster left empty), never "
                  f"selected unless all did: {collapsed}"]
  return "\n".join(lines) + "\n" + budget
