"""Per-dataset hyper-parameters of VaDE and DGG.

Yang, Cheung, Li & Fang (2019), "Deep Clustering by Gaussian Mixture
Variational Autoencoders with Graph Embedding", ICCV, and its supplement
(sections 4-5; ``docs/methods.md#vade-and-dgg``): MNIST trains jointly for 300 epochs with Adam(2e-3)
decayed by 0.9 every 10 epochs on batches of 100 anchors (the config
defaults); the Siamese network uses N_t = 2 input-space neighbours on MNIST.
Jiang et al. (2017), "Variational Deep Embedding", IJCAI, for VaDE.

Every dataset below is in [0, 1] as ``deepclust_jax.data`` loads it (MNIST,
Fashion-MNIST and USPS are intensities, Pendigits is divided by 100, digits by
16), so all use the Bernoulli reconstruction; real-valued data outside [0, 1]
needs ``likelihood="gaussian"``. Only MNIST's values are the paper's; the
others keep MNIST's schedule (ours).
"""

from __future__ import annotations

from deepclust_jax.configs.pretraining import ADAM

_IMAGES_AND_PENDIGITS = ("mnist", "fashion_mnist", "usps", "pendigits")

# The joint schedules of the three public codes. Each sets every key a schedule
# has, so that one replaces another whole (the base is the supplement's MNIST
# schedule: Adam 2e-3 times 0.9 every 10 epochs on batches of 100).
_BASE = {"learning_rate": 2e-3, "decay_rate": 0.9, "decay_epochs": 10, "lr_floor": 0.0,
         "adam_eps": 1e-8, "batch_size": 100, "weight_decay": 0.0, "logvar_init": "random"}
SCHEDULES = {
    # The VaDE authors' Keras code: the decayed rate floored at 2e-4, Adam epsilon 1e-4.
    "keras": {**_BASE, "lr_floor": 2e-4, "adam_eps": 1e-4},
    # VaDE-pytorch: 0.95 every 10 epochs on batches of 800, the log-variance head
    # started as a copy of the mean head.
    "pytorch": {**_BASE, "decay_rate": 0.95, "batch_size": 800, "logvar_init": "mean_head"},
    # The DGG authors' code: Adam weight decay 1e-4 on every parameter in the joint
    # phase; the gamma head pretrained 30 epochs by SGD 0.02, momentum 0.9.
    "dgg": {**_BASE, "weight_decay": 1e-4, "gamma_epochs": 30, "gamma_optimizer": "sgd",
            "gamma_lr": 0.02, "gamma_momentum": 0.9},
}

# Each method's own authors' schedule until experiments/results/vade_dgg.md
# measures the three on the same starts; DGG adds the supplement's N_t = 2.
VADE = {name: dict(SCHEDULES["keras"]) for name in _IMAGES_AND_PENDIGITS}
DGG = {name: {**SCHEDULES["dgg"], "siamese_neighbours": 2} for name in _IMAGES_AND_PENDIGITS}

# Ours: a few minutes on 2 CPU cores, beating k-means (ACC ~0.79) on digits. The
# codes' k-means is only as good as k-means on the pixels with narrower layers,
# and 1,797 samples give few steps per epoch, hence small batches; the gamma
# head starts from large codes, hence its higher rate. A DGG epoch costs
# 1 + N_s VaDE epochs, hence fewer joint epochs.
_DIGITS = {"hidden": (256, 256, 512), "pretrain_epochs": 50, "pretrain_batch_size": 64,
           "gamma_epochs": 20, "gamma_lr": 1e-2, "batch_size": 32, "decay_epochs": 20}
VADE["digits"] = {**_DIGITS, "epochs": 100}
DGG["digits"] = {**_DIGITS, "epochs": 30, "siamese_neighbours": 5, "siamese_epochs": 10,
                 "siamese_batch_size": 128}

# Adam pretraining under every preset, not the datasets' best recipe of
# configs/pretraining.py: that was measured with linear-output autoencoders,
# and DEC's SGD at rate 1 on the MSE of VaDE's Bernoulli (sigmoid) output
# saturates the output and stops learning (MNIST, 5 runs: reconstruction
# flat at 0.128-0.132 from epoch 10 to 56, against 0.06 for the linear
# autoencoder; experiments/results/vade_dgg.md).
VADE, DGG = ({name: {**ADAM, **preset} for name, preset in presets.items()}
             for presets in (VADE, DGG))
