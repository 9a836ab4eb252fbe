"""Table 5 (extended in Table 15) of Boubekki et al. (2021): AE-CM^r and AE-CM^p.

AE-CM with Table 13's per-dataset alpha, beta, lambda, batch size and code
width p (deepclust_jax.configs.paper), a d-500-500-2000-p autoencoder,
Adam(1e-3, eps 1e-3), 150 epochs plus the averaging epoch, 20 runs. Paper
values are mean ± std x100 from Table 15.

Command (20 runs x 150 epochs needs a GPU; on a CPU pass --runs/--epochs):
  python experiments/reproduce.py experiments/configs/aecm_table5.py
"""

PAPER = {  # (dataset, init): {score: (mean, std)}
    ("mnist", "r"): {"ari": (77.9, 4.0), "nmi": (80.9, 2.4), "acc": (86.1, 3.2)},
    ("mnist", "p"): {"ari": (79.4, 0.4), "nmi": (82.4, 0.4), "acc": (86.5, 0.4)},
    ("usps", "r"): {"ari": (55.1, 4.5), "nmi": (63.4, 3.6), "acc": (65.8, 4.7)},
    ("usps", "p"): {"ari": (69.7, 4.1), "nmi": (76.7, 2.3), "acc": (76.8, 3.8)},
    ("pendigits", "r"): {"ari": (64.6, 4.1), "nmi": (75.0, 2.8), "acc": (75.7, 4.1)},
    ("pendigits", "p"): {"ari": (60.1, 14.4), "nmi": (70.4, 16.4), "acc": (73.0, 14.8)},
}


def get_config() -> dict:
  return {
      "name": "aecm_table5",
      "title": "Table 5: AE-CM on MNIST, USPS, Pendigits",
      "runs": 20,
      "seed": 0,
      "epochs": 150,
      "eval_every": 10,
      "rows": [{"label": f"AE-CM^{init} {dataset}", "method": "aecm", "dataset": dataset,
                "overrides": {"init": init}, "paper": paper}
               for (dataset, init), paper in PAPER.items()]
              # The nearest-centroid encoder (ours) beside the paper's pinv, init "p".
              + [{"label": f"AE-CM^p {dataset} nearest", "method": "aecm",
                  "dataset": dataset, "paper": PAPER[(dataset, "p")],
                  "overrides": {"init": "p", "centroid_encoder": "nearest"}}
                 for dataset in ("usps", "pendigits")],
  }
