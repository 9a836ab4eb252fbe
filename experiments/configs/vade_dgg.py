"""Table 1 of the DGG supplement (Yang et al. 2019): VaDE and DGG on MNIST, N_s = 1, 3, 10, 20.

The full procedure of ``deepclust_jax.methods.vade`` with the MNIST preset: AE
pretraining, k-means on the latent means, the gamma head on the k-means
labels, for DGG the Siamese graph, then 300 joint epochs of Adam(2e-3) decayed
by 0.9 every 10 epochs on batches of 100 anchors. Paper values are ACC x100
(the supplement gives no NMI/ARI and no number of runs). USPS and Pendigits
have no published VaDE/DGG figures; they run with MNIST's schedule.

Command (one run of 300 joint epochs is about an hour on 2 CPU cores for VaDE;
shorter runs pass --epochs, and --set for shorter pretraining):
  python experiments/reproduce.py experiments/configs/vade_dgg.py --data-dir ../shared/datasets
The results go to experiments/results/vade_dgg_table1.{jsonl,md};
experiments/results/vade_dgg.md is the commented report.
"""

PAPER = {  # (method, dataset, N_s): {score: (mean, std)}
    ("vade", "mnist", 0): {"acc": (94.82, None)},
    ("dgg", "mnist", 1): {"acc": (96.98, None)},
    ("dgg", "mnist", 3): {"acc": (97.33, None)},
    ("dgg", "mnist", 10): {"acc": (97.52, None)},
    ("dgg", "mnist", 20): {"acc": (97.58, None)},
    ("vade", "usps", 0): {},
    ("dgg", "usps", 3): {},
    ("vade", "pendigits", 0): {},
    ("dgg", "pendigits", 3): {},
}


def label(method: str, dataset: str, num_neighbours: int) -> str:
  return f"VaDE {dataset}" if method == "vade" else f"DGG N_s={num_neighbours} {dataset}"


def get_config() -> dict:
  return {
      "name": "vade_dgg_table1",
      "title": "DGG supplement Table 1: VaDE and DGG (MNIST), also USPS and Pendigits",
      "runs": 1,
      "seed": 0,
      "epochs": 300,
      "eval_every": 10,
      "rows": [{"label": label(method, dataset, ns), "method": method, "dataset": dataset,
                "overrides": {"num_neighbours": ns} if method == "dgg" else {},
                "paper": paper}
               for (method, dataset, ns), paper in PAPER.items()],
  }
