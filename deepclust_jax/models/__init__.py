"""Flax modules: the clustering module and the autoencoders built around it."""

from deepclust_jax.models.autoencoder import MLP, Autoencoder
from deepclust_jax.models.cm import (ClusteringModule, centroids, glorot_normal_bias,
                                     params_from_centroids)

__all__ = ["MLP", "Autoencoder", "ClusteringModule", "centroids", "glorot_normal_bias",
           "params_from_centroids"]
