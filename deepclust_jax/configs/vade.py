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

from deepclust_jax.configs.pretraining import with_best

_IMAGES_AND_PENDIGITS = ("mnist", "fashion_mnist", "usps", "pendigits")

# The config defaults are MNIST's schedule; DGG adds the supplement's N_t = 2.
VADE = {name: {} for name in _IMAGES_AND_PENDIGITS}
DGG = {name: {"siamese_neighbours": 2} for name in _IMAGES_AND_PENDIGITS}

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

# Under every preset, the dataset's best pretraining recipe (configs/pretraining.py).
VADE, DGG = with_best(VADE), with_best(DGG)
