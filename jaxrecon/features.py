"""Feature maps φ: inputs x in R^d to model features p = [φ(x), 1] with the bias coordinate LAST.

Every model in jaxrecon is linear in p, so the attack recovers p and needs a way back to x. A
`FeatureMap` carries both directions when the way back is exact (identity); maps without a
closed-form inverse (random Fourier features) leave `invert=None`; the attacks invert those
numerically.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp


class FeatureMap(NamedTuple):
    """A fixed feature map, known to the attacker (DESIGN §2).

    Attributes:
      name: short name ("identity", ...).
      apply: x [..., d] -> p [..., D] with p[..., -1] == 1.
      invert: p [..., D] -> x [..., d] when exact, else None.
      dim: D, the feature dimension including the bias coordinate, as a function of d.
    """

    name: str
    apply: Callable[[jax.Array], jax.Array]
    invert: Callable[[jax.Array], jax.Array] | None
    dim: Callable[[int], int]


def add_bias(features: jax.Array) -> jax.Array:
    """Appends the constant bias coordinate: [..., D-1] -> [..., D], last entry 1."""
    ones = jnp.ones(features.shape[:-1] + (1,), features.dtype)
    return jnp.concatenate([features, ones], axis=-1)


def identity_features() -> FeatureMap:
    """p = [x, 1]: the raw inputs plus the bias coordinate. Its inverse drops the bias."""
    return FeatureMap(
        name="identity",
        apply=add_bias,
        invert=lambda p: p[..., :-1],
        dim=lambda d: d + 1,
    )
