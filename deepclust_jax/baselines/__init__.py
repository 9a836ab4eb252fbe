"""Classic clustering baselines in JAX: k-means and Gaussian mixtures by EM."""

from deepclust_jax.baselines.gmm import GMMResult, gaussian_log_prob, gmm, gmm_predict, igmm
from deepclust_jax.baselines.kmeans import (KMeansResult, check_inputs, kmeans, kmeans_plusplus,
                                            kmeans_predict, lloyd, sq_distances)

__all__ = [
    "GMMResult",
    "KMeansResult",
    "check_inputs",
    "gaussian_log_prob",
    "gmm",
    "gmm_predict",
    "igmm",
    "kmeans",
    "kmeans_plusplus",
    "kmeans_predict",
    "lloyd",
    "sq_distances",
]
