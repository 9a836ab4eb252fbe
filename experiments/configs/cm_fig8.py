"""Fig. 8 of Boubekki et al. (2021): iGMM, CM and AE-CM on scikit-learn's six toy sets.

Appendix 1, "Scikit-learn benchmark": the CM is trained by SGD, the AE-CM by
Adam, in batches of 20 for up to 100 epochs, each run stopping once fewer than
0.1% of its labels change between two epochs (``tol=0.001``); 10 runs. Table
10 gives alpha, beta, lambda and the encoder per dataset:

| dataset | alpha | beta | lambda | encoder |
|---|---|---|---|---|
| moons | 11 | 100 | 0.001 | 2-20-20-20-1 |
| circles | 11 | 0.001 | 0.001 | 2-quad-3 |
| varied | 11 | 100 | 0.001 | 2-3 |
| anisotropic | 11 | 1 | 0.001 | 2-3 |
| blobs | 11 | 1 | 0.001 | 2-3 |
| no structure | 0.1 | 1 | 0.001 | 2-3 |

Ours, where the paper is silent: random initialisation (init "r", as in its
UCI appendix), SGD learning rate 1e-2 (as for Fig. 1), Adam at Table 13's
1e-3, the data as scikit-learn's comparison example draws it (500 points,
standardised; K = 2 for moons and circles, 3 otherwise), iGMM with its
defaults (EM from k-means, up to 100 iterations).

Ours, beside the paper's protocol: AE-CM for all 100 epochs (no early
stop), since the 0.1% rule stops randomly initialised AE-CM runs on their
plateau.

Commands (table, then the figure from the same run directories):
  python experiments/reproduce.py experiments/configs/cm_fig8.py
  python experiments/plot_fig8.py
"""

TABLE10 = {  # dataset: (alpha, beta, lam, AE-CM architecture overrides)
    "moons": (11.0, 100.0, 1e-3, {"hidden": "20,20,20", "latent": 1}),
    "circles": (11.0, 1e-3, 1e-3, {"hidden": "", "latent": 3, "quadratic": True}),
    "varied": (11.0, 100.0, 1e-3, {"hidden": "", "latent": 3}),
    "anisotropic": (11.0, 1.0, 1e-3, {"hidden": "", "latent": 3}),
    "blobs": (11.0, 1.0, 1e-3, {"hidden": "", "latent": 3}),
    "no_structure": (0.1, 1.0, 1e-3, {"hidden": "", "latent": 3}),
}
FIG8 = {"batch_size": 20, "epochs": 100, "tol": 1e-3, "init": "r"}
METHODS = ("igmm", "cm", "aecm")


def overrides(method: str, dataset: str) -> dict:
  alpha, beta, lam, architecture = TABLE10[dataset]
  if method == "igmm":
    return {}
  if method == "cm":
    return {**FIG8, "alpha": alpha, "optimizer": "sgd", "learning_rate": 1e-2}
  return {**FIG8, "alpha": alpha, "beta": beta, "lam": lam, **architecture}


COLUMNS = {"igmm": "iGMM", "cm": "CM", "aecm": "AE-CM"}

NOTES = """
The figure is `cm_fig8.png` (`python experiments/plot_fig8.py`): each panel is
the selected run, with the mean seconds per run in its corner (10 runs trained
together under `vmap`, compilation included; the paper's times are from a Xeon
E5-2698 and are not comparable). The paper's Fig. 8 has pictures, no scores;
what ours shows:

* CM and iGMM are linear partitions and agree: both split blobs (ACC 99) and
  the varied set, neither can split moons or circles.
* Under the paper's stopping rule (fewer than 0.1% of labels change between
  two epochs), AE-CM runs from a random start stop after 10 to 24 epochs on
  average, on the plateau where responsibilities are near uniform and labels
  barely move, and score below the CM on the blob sets.
* Given all 100 epochs (rows `... 100 epochs`, ours), AE-CM does what the
  paper draws: the selected run separates the two circles exactly (3 of 10 runs
  have ARI 100; L_sp picks one), moons reach ACC 90.0 ± 6.0, blobs 93.1.
* No structure (alpha = 0.1): AE-CM puts every point in one cluster in 3 to
  4 of 10 runs (ARI 100 there, since every true label is the same), the CM
  never does, as the paper says ("only AE-CM was able to perfectly assign all
  the points to a single cluster").
"""


def get_config() -> dict:
  rows = []
  for dataset in TABLE10:
    rows += [{"label": f"{method} {dataset}", "column": COLUMNS[method], "method": method,
              "dataset": dataset, "overrides": overrides(method, dataset), "paper": {}}
             for method in METHODS]
    # Ours: the 0.1% rule stops AE-CM runs on their plateau of near-uniform
    # responsibilities (labels barely change there); all 100 epochs beside it.
    rows.append({"label": f"aecm {dataset} 100 epochs", "column": "AE-CM, 100 epochs",
                 "method": "aecm", "dataset": dataset,
                 "overrides": {**overrides("aecm", dataset), "tol": 0.0}, "paper": {}})
  return {
      "notes": NOTES,
      "name": "cm_fig8",
      "title": "Fig. 8: iGMM, CM and AE-CM on scikit-learn's toy sets (10 runs)",
      "runs": 10,
      "seed": 0,
      "rows": rows,
  }
