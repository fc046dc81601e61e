"""Metrics of a reconstruction against the deleted record (DESIGN §3.7).

All functions take batches ([B, d] reconstructions against [B, d] originals, in input space, the
bias coordinate already removed) and are pure and jittable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def cosine_similarity(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Row-wise cos(x̂_b, x_b) for [B, d] arrays; 0 where either row is zero."""
    num = jnp.sum(x_hat * x, axis=-1)
    den = jnp.linalg.norm(x_hat, axis=-1) * jnp.linalg.norm(x, axis=-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0)


def mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Row-wise mean squared error, [B]."""
    return jnp.mean((x_hat - x) ** 2, axis=-1)


def label_correct(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Row-wise y_hat == y for class labels, [B] bool."""
    return jnp.asarray(y_hat) == jnp.asarray(y)


def summarize(cosines: np.ndarray) -> dict[str, float]:
    """Median, 10th percentile and mean of a batch of cosine similarities."""
    cosines = np.asarray(cosines, dtype=np.float64)
    return {
        "cosine_median": float(np.median(cosines)),
        "cosine_p10": float(np.percentile(cosines, 10)),
        "cosine_mean": float(np.mean(cosines)),
    }


def empirical_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF levels (k/B), for plotting."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    return values, np.arange(1, values.size + 1) / values.size


def r2_score(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Coefficient of determination 1 − SS_res / SS_tot."""
    ss_res = jnp.sum((y - y_hat) ** 2)
    ss_tot = jnp.sum((y - jnp.mean(y)) ** 2)
    return 1 - ss_res / ss_tot


def accuracy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of correct class predictions."""
    return jnp.mean(label_correct(y_hat, y).astype(jnp.result_type(float)))
