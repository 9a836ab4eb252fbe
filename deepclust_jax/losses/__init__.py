"""Loss functions: small pure functions of arrays, jit- and vmap-compatible."""

from __future__ import annotations

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

__all__ = [
    "CM_TERMS",
    "aecm_loss",
    "cm_loss",
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
