"""EDGaM beside AE-CM and AE + k-means at equal epoch budgets, and its USPS ablation.

"Streamlining EM into Auto-Encoder Networks": only the appendix is available,
so there are no published scores to put beside ours (the "paper" columns stay
empty) and no published schedule. Every row spends the same number of epochs
over the data:

* EDGaM (``edgam``, its defaults): P pretraining epochs of the auto-encoder,
  k-means on the codes (the ``start`` row, whose autoencoders every EDGaM run
  starts from), J joint epochs;
* AE-CM^p (``aecm``, Table 13's values): P pretraining epochs, k-means on the
  codes, no CM-only epochs (they would exceed the budget), J - 1 joint epochs
  plus its averaging epoch;
* AE + k-means: EDGaM's auto-encoder pretrained for P + J epochs, then k-means
  on the codes (``edgam`` with ``epochs=0``: its first E-step is the k-means
  partition, see ``deepclust_jax.methods.edgam``).

Budgets (ours): "full" P = 50, J = 100 (MNIST, Fashion-MNIST, USPS); "cpu"
P = J = 15 (USPS on 2 CPU cores); "short" P = J = 10 (USPS and MNIST, the budget
at which 2 CPU cores give USPS 10 runs per row and MNIST a few; the
ablation's budget, so its defaults row is the USPS EDGaM row again); "tiny"
P = J = 5 (Fashion-MNIST, whose conv auto-encoder costs about 10 times the
MLP's step on CPU); the
ablation, USPS, P = J = 10, one switch
changed per row from the design note's defaults (reweighting on, correction
stopgrad, T = 3, skip connection on, diagonal covariance; and ours: learned
mixing weights, input dropout 0.25), then the digits preset's combination.

Commands:
  python experiments/reproduce.py experiments/configs/edgam.py --rows full
  python experiments/reproduce.py experiments/configs/edgam.py --rows "usps cpu" --runs 2
  python experiments/reproduce.py experiments/configs/edgam.py --rows "usps short"
  python experiments/reproduce.py experiments/configs/edgam.py --runs 2 --rows "mnist short"
  python experiments/reproduce.py experiments/configs/edgam.py --rows "fashion_mnist tiny" --runs 1
  python experiments/reproduce.py experiments/configs/edgam.py --rows "ablation usps" --runs 1
  python experiments/reproduce.py experiments/configs/edgam.py --rows "ablation mnist" --runs 2
"""

BUDGETS = {"full": (50, 100), "cpu": (15, 15), "short": (10, 10), "tiny": (5, 5), "ablation": (10, 10)}

# One switch per row, from the design note's defaults, most telling first (a
# CPU budget runs the head of the list), then the digits preset's combination.
ABLATION = [{}, {"mixing": "uniform"}, {"reweight": False}, {"dropout": 0.0}, {"skip": False},
            {"correction": "full"}, {"T": 1}, {"covariance": "isotropic"}, {"T": 2}, {"T": 5},
            {"mixing": "uniform", "reweight": False, "dropout": 0.0, "eta2": 0.1}]


def rows_for(dataset: str, budget: str) -> list[dict]:
  """EDGaM, AE-CM^p and AE + k-means on ``dataset`` with the same epochs.

  EDGaM starts from its ``start`` row (P pretraining epochs and k-means on the
  codes, so the start row's scores are AE + k-means after P epochs), run r from
  run r: each EDGaM run can be compared with its own start. AE-CM^p's
  auto-encoder is another network (leaky ReLU, the CM paper's), so it pretrains
  its own for P epochs.
  """
  pretrain, joint = BUDGETS[budget]
  tag = f"{dataset} {budget} {pretrain}+{joint}"
  return [
      {"label": f"start {tag}", "method": "edgam", "dataset": dataset,
       "overrides": {"pretrain_epochs": pretrain, "epochs": 0}, "paper": {}},
      {"label": f"EDGaM {tag}", "method": "edgam", "dataset": dataset,
       "overrides": {"pretrain_epochs": pretrain, "epochs": joint},
       "pretrained": f"start {tag}", "paper": {}},
      {"label": f"AE-CM^p {tag}", "method": "aecm", "dataset": dataset,
       "overrides": {"init": "p", "pretrain_epochs": pretrain, "cm_epochs": 0,
                     "epochs": joint - 1}, "paper": {}},
      {"label": f"AE+k-means {tag}", "method": "edgam", "dataset": dataset,
       "overrides": {"pretrain_epochs": pretrain + joint, "epochs": 0}, "paper": {}},
  ]


def ablation_rows(dataset: str = "usps", switches: list[dict] = ABLATION) -> list[dict]:
  pretrain, joint = BUDGETS["ablation"]
  return [{"label": f"ablation {dataset} {pretrain}+{joint} "
                    + (" ".join(f"{k}={v}" for k, v in switch.items()) or "defaults"),
           "method": "edgam", "dataset": dataset,
           "overrides": {"pretrain_epochs": pretrain, "epochs": joint, **switch},
           "paper": {}}
          for switch in switches]


def get_config() -> dict:
  return {
      "name": "edgam_runs",
      "title": "EDGaM vs AE-CM vs AE + k-means (equal epochs) and the USPS ablation",
      "runs": 10,
      "seed": 0,
      "epochs": None,  # each row sets its own budget
      "eval_every": 5,
      "rows": ([row for dataset in ("mnist", "fashion_mnist", "usps")
                for row in rows_for(dataset, "full")]
               + rows_for("usps", "cpu")
               + rows_for("usps", "short") + rows_for("mnist", "short")
               + rows_for("fashion_mnist", "tiny")
               + ablation_rows()
               # Does the USPS ablation's best combination carry over to MNIST?
               + ablation_rows("mnist", ABLATION[-1:])),
  }
