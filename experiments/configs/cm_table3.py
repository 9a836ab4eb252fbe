"""Table 3 of Boubekki et al. (2021): ablation of the CM loss on 5 Gaussians.

ARI of the CM trained with subsets of its loss terms on the 2,000-point,
5-Gaussian toy set (K=5), with the Fig. 1 / Fig. 3 settings: SGD, batches of
20, 50 epochs, alpha = 5, then the averaging epoch. The paper numbers the
terms E0..E3 in this table; here they are e1 (reconstruction), e2 (sparsity),
e3 (cluster merging) and e4 (Dirichlet prior).

Command:
  python experiments/reproduce.py experiments/configs/cm_table3.py
"""

TERMS = [  # (terms kept, paper ARI x100)
    ("e1,e2,e3,e4", 83.3),
    ("e2,e3,e4", 38.2),
    ("e1,e3,e4", 45.0),
    ("e1,e2,e4", 66.8),
    ("e1,e2,e3", 71.4),
    ("e1,e2", 50.5),
    ("e1,e3", 46.2),
    ("e1,e4", 67.6),
    ("e1", 59.0),
]


def get_config() -> dict:
  return {
      "name": "cm_table3",
      "title": "Table 3: CM loss ablation on 5 Gaussians (ARI)",
      "runs": 20,
      "seed": 0,
      "rows": [{"label": f"CM[{terms}]", "method": "cm", "dataset": "five_gaussians",
                "overrides": {"terms": terms}, "paper": {"ari": (ari, None)}}
               for terms, ari in TERMS],
  }
