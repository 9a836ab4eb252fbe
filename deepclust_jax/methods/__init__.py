"""Registered clustering methods; importing this module registers them all."""

from deepclust_jax.methods import aecm, classic, cm  # noqa: F401  (registration)
from deepclust_jax.methods.registry import (MethodSpec, build, get, names,
                                            parse_overrides, register, resolve)

__all__ = ["MethodSpec", "build", "get", "names", "parse_overrides", "register", "resolve"]
