"""The autoencoder pretraining recipes as config values, and each dataset's best one.

``ADAM`` is the methods' previous default (Adam 1e-3, 50 epochs); ``DEC`` is
DEC's recipe as its public Keras code runs it (Xie, Girshick & Farhadi, ICML
2016); ``SDAE`` its paper's greedy layer-wise denoising start, whose epoch
counts are the caller's. ``BEST`` is the recipe that gave AE +
k-means its highest mean ACC over 3 seeds per dataset
(``experiments/results/pretraining.md``); :func:`with_best` puts it under a
method's presets, so every autoencoder method starts from it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ADAM = {"recipe": "adam", "pretrain_epochs": 50, "pretrain_batch_size": 256,
        "pretrain_lr": 1e-3, "pretrain_decay_epochs": 0}
DEC = {"recipe": "dec", "pretrain_epochs": 300, "pretrain_batch_size": 256,
       "pretrain_lr": 1.0, "pretrain_momentum": 0.9, "pretrain_decay_epochs": 0}
# SGD 0.1 with momentum, the rate divided by 10 every 20,000 of 50,000 steps
# per layer (MNIST, batch 256: 73 of 183 epochs), then 100,000 fine-tuning
# steps; layer_epochs, pretrain_epochs and pretrain_decay_epochs are the
# caller's.
SDAE = {"recipe": "sdae", "pretrain_batch_size": 256, "pretrain_lr": 0.1,
        "pretrain_momentum": 0.9}

RECIPES = {"adam": ADAM, "dec": DEC, "sdae": SDAE}
# What a recipe brings when a command names it (``--set recipe=adam``):
# its optimiser's settings, unless the command sets them too. Epochs and
# batch sizes stay the preset's.
OPTIMISER_KEYS = ("pretrain_lr", "pretrain_momentum", "pretrain_decay_epochs")


def recipe_settings(overrides: Mapping[str, Any]) -> dict[str, Any]:
  """The optimiser settings of the recipe ``overrides`` names, minus those it sets.

  Example:
    >>> recipe_settings({"recipe": "adam"})
    {'pretrain_lr': 0.001, 'pretrain_decay_epochs': 0}
    >>> recipe_settings({"recipe": "dec", "pretrain_lr": 0.1})
    {'pretrain_momentum': 0.9, 'pretrain_decay_epochs': 0}
  """
  recipe = RECIPES.get(overrides.get("recipe"), {})
  return {k: recipe[k] for k in OPTIMISER_KEYS if k in recipe and k not in overrides}


# Measured (experiments/results/pretraining.md); a dataset not here keeps
# each method's own pretraining defaults.
BEST: dict[str, dict[str, Any]] = {
    "mnist": DEC,  # 91.7 ± 0.2 (300 epochs), against 71-77 from Adam's 50
    "usps": {**DEC, "pretrain_epochs": 50},  # 70.8 ± 0.4; Adam 70.3 ± 1.2, sdae 65.2 ± 0.9
    # 76.3 ± 1.7 (100 epochs per layer, 200 of fine-tuning, the rate cut at 40 %
    # of each layer's); Adam's 50 epochs 71.8 ± 3.7, DEC's 300 epochs 66.1 ± 3.8
    "pendigits": {**SDAE, "layer_epochs": 100, "pretrain_epochs": 200,
                  "pretrain_decay_epochs": 40},
    "fashion_mnist": DEC,  # 58.1 ± 2.7 (300 epochs); Adam's 50 epochs 51.9 ± 2.2
    "digits": ADAM,  # 79.7 ± 0.4; DEC's 300 epochs 79.4 ± 1.5, sdae 71.7 ± 1.0
}


def with_best(presets: Mapping[str, Mapping[str, Any]],
              datasets: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
  """``presets`` (and an empty preset for each of ``datasets``) over each
  dataset's best recipe: the method's own values win.

  Example:
    >>> with_best({"mnist": {"pretrain_epochs": 50}})["mnist"]["recipe"]
    'dec'
    >>> with_best({"mnist": {"pretrain_epochs": 50}})["mnist"]["pretrain_epochs"]
    50
  """
  names = dict.fromkeys((*presets, *datasets))
  return {name: {**BEST.get(name, {}), **presets.get(name, {})} for name in names}
