"""Registered clustering methods; importing this module registers them all."""

from deepclust_jax.methods import (aecm, classic, cm, edgam, nmm_em,  # noqa: F401  (registration)
                                   vade)
from deepclust_jax.methods.registry import (MethodSpec, build, get, names,
                                            parse_overrides, register, resolve)

__all__ = ["MethodSpec", "build", "get", "names", "parse_overrides", "register", "resolve"]
