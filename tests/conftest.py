"""Test configuration: float64 everywhere and no silent rank promotion."""

import jax
import numpy as np
import pytest

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")


@pytest.fixture
def rng():
    """A NumPy generator for test data only (the library itself never uses np.random)."""
    return np.random.default_rng(0)


def make_problem(rng, n=60, d=5, num_classes=None, task="regression"):
    """Random features with the bias coordinate last, and labels for `task`."""
    x = rng.normal(size=(n, d))
    p = np.concatenate([x, np.ones((n, 1))], axis=1)
    if task == "regression":
        y = p @ rng.normal(size=d + 1) + 0.1 * rng.normal(size=n)
    elif task == "binary":
        y = (p @ rng.normal(size=d + 1) + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    else:
        y = np.argmax(
            p @ rng.normal(size=(d + 1, num_classes)) + rng.normal(size=(n, num_classes)), axis=1
        ).astype(np.int64)
    return x, p, y
