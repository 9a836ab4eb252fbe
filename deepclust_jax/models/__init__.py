"""Flax modules: the clustering module, autoencoders and each method's networks."""

from deepclust_jax.models.autoencoder import MLP, Autoencoder, quadratic_features
from deepclust_jax.models.cm import (ClusteringModule, centroids, glorot_normal_bias,
                                     params_from_centroids)
from deepclust_jax.models.edgam import EDGaMAutoencoder, EDGaMConvAutoencoder
from deepclust_jax.models.nmm_em import RelevanceNet, relevance_net
from deepclust_jax.models.vade import VAE, GammaHead, Siamese, mixture_params, reparameterize

__all__ = ["MLP", "Autoencoder", "ClusteringModule", "EDGaMAutoencoder",
           "EDGaMConvAutoencoder", "GammaHead", "RelevanceNet", "Siamese", "VAE",
           "centroids", "glorot_normal_bias", "mixture_params", "params_from_centroids",
           "quadratic_features", "reparameterize", "relevance_net"]
