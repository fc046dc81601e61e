"""Feature maps φ: inputs x in R^d to model features p = [φ(x), 1] with the bias coordinate LAST.

Every model in jaxrecon is linear in p, so the attack recovers p and needs a way back to x. A
`FeatureMap` carries both directions when the way back is exact (identity); maps without a
closed-form inverse (random Fourier features) leave `invert=None`; the attacks invert those
numerically: `attacks.invert_features` needs only `apply` (it is differentiable), and
`attacks.invert_rff` uses W and b, which `rff_params_of(fmap.apply)` finds again.

Feature maps are fixed and known to the attacker (DESIGN §2): a random map carries the arrays it
was drawn with in `params`, so a driver can pass them to a jitted kernel as arguments (call
`rff_apply(fmap.params, x)` there) instead of baking them into the program as constants.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import _validate


class FeatureMap(NamedTuple):
    """A fixed feature map, known to the attacker (DESIGN §2).

    Attributes:
      name: short name ("identity", "rff").
      apply: x [..., d] -> p [..., D] with p[..., -1] == 1.
      invert: p [..., D] -> x [..., d] when exact, else None.
      dim: D, the feature dimension including the bias coordinate, as a function of d.
      params: the arrays the map was drawn with (`RFFParams` for "rff"), None for identity.
    """

    name: str
    apply: Callable[[jax.Array], jax.Array]
    invert: Callable[[jax.Array], jax.Array] | None
    dim: Callable[[int], int]
    params: Any = None


class RFFParams(NamedTuple):
    """The random draw behind a random-Fourier-feature map.

    Attributes:
      weights: W [F, d], rows w_f ~ N(0, I/σ²).
      phases: b [F], b_f ~ U[0, 2π).
    """

    weights: jax.Array
    phases: jax.Array


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


def rff_params(
    key: jax.Array, input_dim: int, num_features: int, bandwidth: float, dtype=jnp.float64
) -> RFFParams:
    """Draws W [F, d] with entries N(0, 1/σ²) and b [F] uniform on [0, 2π).

    Args:
      key: PRNG key (split into "weights" and "phases" subkeys).
      input_dim: d.
      num_features: F, the number of cosine features (D = F + 1 with the bias).
      bandwidth: σ > 0 of the Gaussian kernel approximated (see `rff_features`).
      dtype: floating dtype of W and b.

    Raises:
      ValueError: naming the bad argument and its value.
    """
    _validate.integer("input_dim", input_dim, minimum=1)
    _validate.integer("num_features", num_features, minimum=1)
    try:
        sigma = float(bandwidth)
    except (TypeError, ValueError):
        sigma = float("nan")
    if isinstance(bandwidth, bool) or not math.isfinite(sigma) or sigma <= 0:
        raise ValueError(f"bandwidth must be a finite number > 0, got {bandwidth!r}")
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype!r}")
    k_weights, k_phases = jax.random.split(key)
    weights = jax.random.normal(k_weights, (num_features, input_dim), dtype) / sigma
    phases = jax.random.uniform(k_phases, (num_features,), dtype, 0.0, 2 * jnp.pi)
    return RFFParams(weights, phases)


def rff_apply(params: RFFParams, x: jax.Array) -> jax.Array:
    """p = [√(2/F) cos(W x + b), 1] for x [..., d]; returns [..., F + 1] in the dtype of x.

    Differentiable in x (the attacks invert it by gradient descent) and in `params`.
    """
    weights = params.weights.astype(x.dtype)
    phases = params.phases.astype(x.dtype)
    num_features = weights.shape[0]
    proj = jnp.einsum("...d,fd->...f", x, weights)
    proj = proj + phases.reshape((1,) * (proj.ndim - 1) + (num_features,))
    return add_bias(jnp.sqrt(jnp.asarray(2.0 / num_features, x.dtype)) * jnp.cos(proj))


def rff_features(
    key: jax.Array, input_dim: int, num_features: int, bandwidth: float, dtype=jnp.float64
) -> FeatureMap:
    """Random Fourier features for the Gaussian (RBF) kernel, plus the bias coordinate.

        φ(x) = √(2/F) cos(W x + b),   W_fj ~ N(0, 1/σ²),   b_f ~ U[0, 2π),   p = [φ(x), 1],

    so that E_W,b[φ(x)ᵀφ(x')] = k(x, x') = exp(−‖x − x'‖² / (2σ²)) and, for a fixed pair, the
    error of the F-feature estimate has standard deviation O(1/√F) (Rahimi & Recht, 2007). The
    feature dimension is D = F + 1 with the bias LAST. There is no closed-form inverse
    (`invert=None`); the attacks invert φ numerically. `params` holds W and b for the attacker,
    who knows the map (DESIGN §2).

    Args:
      key: PRNG key; the same key gives the same map.
      input_dim: d.
      num_features: F.
      bandwidth: σ; `median_bandwidth(public_x)` is the usual default.
      dtype: floating dtype of W and b (the map computes in the dtype of its input).

    Returns:
      FeatureMap named "rff".

    Raises:
      ValueError: naming the bad argument and its value.

    References:
      Rahimi, A. & Recht, B. "Random Features for Large-Scale Kernel Machines", NeurIPS 2007.
    """
    return feature_map(rff_params(key, input_dim, num_features, bandwidth, dtype))


def feature_map(params: RFFParams | None) -> FeatureMap:
    """The feature map drawn with `params`: identity for None, random Fourier features otherwise.

    Build it inside a jitted function from traced `params` (as `scenario` does) and the arrays
    stay arguments of the compiled program instead of constants baked into it.
    """
    if params is None:
        return identity_features()
    num_features = params.weights.shape[0]
    return FeatureMap(
        name="rff",
        # A partial, not a lambda, so that `rff_params_of` can find W and b again.
        apply=functools.partial(rff_apply, params),
        invert=None,
        dim=lambda d: num_features + 1,
        params=params,
    )


def rff_params_of(feature_fn: Callable[[jax.Array], jax.Array]) -> RFFParams | None:
    """The `RFFParams` behind `feature_fn` when it is an RFF map's `apply`, else None.

    Lets a consumer of a plain x -> p function (`attacks.feature_inverter`) use the map's
    closed form (matrix products with W) instead of autodiff.
    """
    if (
        isinstance(feature_fn, functools.partial)
        and feature_fn.func is rff_apply
        and len(feature_fn.args) == 1
        and not feature_fn.keywords
        and isinstance(feature_fn.args[0], RFFParams)
    ):
        return feature_fn.args[0]
    return None


def median_bandwidth(x: jax.Array, *, max_samples: int = 2000) -> jax.Array:
    """The median heuristic: σ = median of the pairwise distances ‖x_i − x_j‖ over pairs i < j.

    The usual default bandwidth for the Gaussian kernel exp(−‖x − x'‖² / (2σ²)): it puts a typical
    pair of points at k ≈ e^(−1/2), neither all ~1 (too wide) nor all ~0 (too narrow). Compute it
    on the attacker's PUBLIC data (it is part of the known feature map, so the training data must
    not be needed). With more than `max_samples` rows it uses `max_samples` rows evenly spaced
    through x (deterministic, no key); O(max_samples² · d) time and max_samples² memory.

    Args:
      x: [m, d] inputs, m >= 2.
      max_samples: rows used at most.

    Returns:
      σ, a scalar in the dtype of x (convert with float() to build a feature map).

    Raises:
      ValueError: x not a [m, d] array with m >= 2, or a bad `max_samples`.

    References:
      Gretton, A. et al. "A Kernel Two-Sample Test", JMLR 2012 (the median heuristic).
    """
    x = jnp.asarray(x)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"x must be a [m, d] array with m >= 2, got shape {x.shape}")
    _validate.integer("max_samples", max_samples, minimum=1)
    if max_samples < 2:
        raise ValueError(f"max_samples must be >= 2, got {max_samples!r}")
    m = x.shape[0]
    if m > max_samples:
        x = x[(jnp.arange(max_samples) * m) // max_samples]
        m = max_samples
    sq = jnp.sum(x * x, axis=-1)
    d2 = sq[:, None] + sq[None, :] - 2 * x @ x.T
    rows, cols = jnp.triu_indices(m, k=1)
    return jnp.median(jnp.sqrt(jnp.maximum(d2[rows, cols], 0)))
