"""Table 1 (extended in Table 11) of Boubekki et al. (2021): CM^r and CM^p.

CM with Table 12's per-dataset alpha and batch size (deepclust_jax.configs.paper),
Adam(1e-3, eps 1e-3), 150 epochs plus the averaging epoch, 20 runs. Paper
values are mean ± std x100 from Table 11.

The rows marked "shared order" train the same 20 runs with one batch order
for all of them (``TrainOptions(shared_order=True)``, ``deepclust fit
--shared-order``): different initialisations, same shuffles. They measure what
that option, which makes many CPU runs much cheaper, does to Table 1.

Command:
  python experiments/reproduce.py experiments/configs/cm_table1.py
"""

PAPER = {  # (dataset, init): {score: (mean, std)}
    ("mnist", "r"): {"ari": (39.7, 1.9), "nmi": (50.0, 1.5), "acc": (56.8, 2.1)},
    ("mnist", "p"): {"ari": (39.1, 1.4), "nmi": (49.5, 1.1), "acc": (55.9, 1.3)},
    ("usps", "r"): {"ari": (54.3, 2.1), "nmi": (62.8, 1.0), "acc": (67.0, 2.5)},
    ("usps", "p"): {"ari": (53.4, 4.1), "nmi": (62.8, 2.3), "acc": (63.7, 4.3)},
    ("pendigits", "r"): {"ari": (57.3, 1.7), "nmi": (67.0, 1.2), "acc": (72.0, 2.5)},
    ("pendigits", "p"): {"ari": (57.3, 2.0), "nmi": (66.9, 1.3), "acc": (72.3, 2.3)},
}


def get_config() -> dict:
  return {
      "name": "cm_table1",
      "title": "Table 1: CM on MNIST, USPS, Pendigits",
      "runs": 20,
      "seed": 0,
      "epochs": 150,
      "rows": [{"label": f"CM^{init} {dataset}{label}", "method": "cm", "dataset": dataset,
                "overrides": {"init": init}, "paper": paper, "options": options}
               for label, options in (("", {}), (" shared order", {"shared_order": True}))
               for (dataset, init), paper in PAPER.items()],
  }
