"""Loss functions: small pure functions of arrays, jit- and vmap-compatible.

One submodule per paper (``losses.cm``, ``losses.edgam``, ``losses.nmm_em``,
``losses.vade``) holds every equation; each method's total loss, which returns
all its named terms, is also exported here.
"""

from __future__ import annotations

from deepclust_jax.losses import cm, edgam, nmm_em, vade

from deepclust_jax.losses.cm import (
    CM_TERMS,
    aecm_loss,
    cm_loss,
    dirichlet_concentration,
    e1_reconstruction,
    e2_sparsity,
    e3_merging,
    e4_dirichlet,
    entropy_term,
    mean_responsibilities,
    orthonormality_penalty,
    q_function,
    soft_kmeans_objective,
    sparsity_criterion,
    squared_distances,
)
from deepclust_jax.losses.edgam import edgam_loss, streamlined_em
from deepclust_jax.losses.nmm_em import consistency_loss, em_loss, normalize_relevance
from deepclust_jax.losses.vade import contrastive_loss, dgg_loss, vade_loss

__all__ = [
    "CM_TERMS",
    "aecm_loss",
    "cm",
    "cm_loss",
    "consistency_loss",
    "contrastive_loss",
    "dgg_loss",
    "edgam",
    "edgam_loss",
    "em_loss",
    "nmm_em",
    "normalize_relevance",
    "streamlined_em",
    "vade",
    "vade_loss",
    "dirichlet_concentration",
    "e1_reconstruction",
    "e2_sparsity",
    "e3_merging",
    "e4_dirichlet",
    "entropy_term",
    "mean_responsibilities",
    "orthonormality_penalty",
    "q_function",
    "soft_kmeans_objective",
    "sparsity_criterion",
    "squared_distances",
]
