"""Registered clustering methods; importing this module registers them all."""

from deepclust_jax.methods import (ae_kmeans, aecm, classic, cm, edgam,  # noqa: F401
                                   nmm_em, pretraining, vade)
from deepclust_jax.methods.registry import (MethodSpec, build, get, names,
                                            parse_overrides, register, resolve)

__all__ = ["MethodSpec", "build", "get", "names", "parse_overrides", "register", "resolve"]
