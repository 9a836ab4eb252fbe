"""AE + k-means and AE + GMM for each pretraining recipe (issue: one pretraining for every AE method).

Reproduces DEC's AE + k-means baseline (Xie, Girshick & Farhadi, ICML 2016;
its public Keras code reports ACC 87.9 on MNIST, mean of 10 trials) and
measures the recipes of :mod:`deepclust_jax.methods.pretraining` on every
benchmark: ``adam`` (the methods' previous default: Adam 1e-3, 50 epochs),
``dec`` (SGD lr 1, momentum 0.9, Keras' MSE, batch 256, VarianceScaling init;
300 epochs on MNIST and Fashion-MNIST, 50 on USPS as DEC's code sets them,
300 on Pendigits and digits) and ``sdae`` (greedy layer-wise denoising, then
fine-tuning; shortened from DEC's 50,000 + 100,000 steps, see LAYER/FINETUNE).
Each AE + GMM row starts from its AE + k-means row's pretrained autoencoders
(``pretrained``: the same 3 runs, the CPU pays for pretraining once).

Command (all rows; one row: --rows "AE+k-means mnist dec"):
  python experiments/reproduce.py experiments/configs/pretraining.py --data-dir ../shared/datasets
The results go to experiments/results/pretraining_runs.{jsonl,md};
experiments/results/pretraining.md is the commented report.
"""

from deepclust_jax.configs.pretraining import ADAM, DEC, SDAE

DATASETS = ("mnist", "usps", "fashion_mnist", "pendigits", "digits")
DEC_EPOCHS = {"mnist": 300, "fashion_mnist": 300, "usps": 50, "pendigits": 300, "digits": 300}
# sdae, shortened for 2 CPU cores: epochs per layer, then fine-tuning epochs.
LAYER = {"mnist": 50, "fashion_mnist": 50, "usps": 100, "pendigits": 100, "digits": 200}
FINETUNE = {"mnist": 100, "fashion_mnist": 100, "usps": 100, "pendigits": 200, "digits": 300}
# Pendigits has 16 features and digits 64: the paper-size network is kept.
RECIPES = {
    "adam": lambda ds: ADAM,
    "dec": lambda ds: {**DEC, "pretrain_epochs": DEC_EPOCHS[ds]},
    "sdae": lambda ds: {**SDAE, "layer_epochs": LAYER[ds], "pretrain_epochs": FINETUNE[ds],
                        # DEC's rate drop at 40 % of each phase
                        "pretrain_decay_epochs": max(LAYER[ds] * 2 // 5, 1)},
}
PAPER = {("mnist", "kmeans"): {"acc": (87.9, None)}}  # DEC-keras README, AE + k-means
# Whether bfloat16 products (0.65 of DEC-keras's epoch against float32's 0.91)
# keep DEC's recipe at its float32 result: the same rows with them.
MIXED = {("mnist", "dec"): {"matmul_dtype": "bfloat16"}}


def label(dataset: str, recipe: str, mixture: str) -> str:
  return f"AE+{'k-means' if mixture == 'kmeans' else 'GMM'} {dataset} {recipe}"


def pair(dataset: str, recipe: str, overrides: dict, name: str = "") -> list[dict]:
  """The AE + k-means row, and the AE + GMM row from its autoencoders."""
  name = name or recipe
  return [{"label": label(dataset, name, "kmeans"), "method": "ae_kmeans",
           "dataset": dataset, "overrides": overrides,
           "paper": PAPER.get((dataset, "kmeans"), {}) if recipe == "dec" else {}},
          {"label": label(dataset, name, "gmm"), "method": "ae_kmeans",
           "dataset": dataset, "overrides": {**overrides, "mixture": "gmm"},
           "pretrained": label(dataset, name, "kmeans"), "paper": {}}]


def get_config() -> dict:
  rows = [row for dataset in DATASETS for recipe, values in RECIPES.items()
          for row in pair(dataset, recipe, values(dataset))]
  rows += [row for (dataset, recipe), mixed in MIXED.items()
           for row in pair(dataset, recipe, {**RECIPES[recipe](dataset), **mixed},
                           f"{recipe} {mixed['matmul_dtype']}")]
  return {"name": "pretraining_runs",
          "title": "AE + k-means / AE + GMM per pretraining recipe (DEC: MNIST 87.9)",
          "runs": 3, "seed": 0, "eval_every": 10, "rows": rows}
