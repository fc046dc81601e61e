"""Data: arrays in, splits out.

The embedded default is scikit-learn's bundled digits (no download, no files): 1,797 grey 8x8
images with pixels scaled to [0, 1]. Synthetic data come from `jax.random` with an explicit key.

A `Dataset` is the pooled data (inputs and raw labels); `split` draws disjoint seeded index sets
for the three roles of the threat model (DESIGN §2): the training set the operator learns from, the
attacker's public samples, and a held-out test set for utility metrics.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon.errors import InputError

# The held-out test split is this fraction of the pooled data (rounded, at least one sample).
TEST_FRACTION = 0.1


class Dataset(NamedTuple):
    """Pooled data before any split.

    Attributes:
      name: short name used in reports.
      x: [N, d] float inputs (pixels in [0, 1] for image data).
      y: [N] raw labels: integer class ids, or float targets for regression data.
      num_classes: number of classes of `y`, or None for real-valued targets.
      image_shape: per-sample image shape (e.g. (8, 8)) or None for tabular data.
      x_min, x_max: the box the inputs live in (used to clip reconstructions).
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int | None
    image_shape: tuple[int, ...] | None
    x_min: float
    x_max: float


class Split(NamedTuple):
    """Disjoint positions into a `Dataset` for each role.

    Attributes:
      train: [n] positions of the training set.
      public: [m] positions of the attacker's public samples (disjoint from train).
      test: [t] positions of the held-out test set (utility metrics only).
    """

    train: np.ndarray
    public: np.ndarray
    test: np.ndarray


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, pixels scaled from 0..16 to [0, 1]. Needs no files."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return Dataset("digits", x, y, 10, (8, 8), 0.0, 1.0)


def synthetic_regression(key: jax.Array, n: int, dim: int, *, noise: float = 0.1) -> Dataset:
    """Gaussian inputs and a noisy linear target y = x·w + b + noise·ε.

    Args:
      key: PRNG key.
      n: number of samples.
      dim: input dimension d.
      noise: standard deviation of the additive Gaussian noise.

    Returns:
      A `Dataset` with float targets and `num_classes=None`.
    """
    _check_positive_int("n", n)
    _check_positive_int("dim", dim)
    k_x, k_w, k_e = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (n, dim))
    w = jax.random.normal(k_w, (dim,))
    y = x @ w + 0.5 + noise * jax.random.normal(k_e, (n,))
    x = np.asarray(x, dtype=np.float64)
    return Dataset(
        "synthetic", x, np.asarray(y, np.float64), None, None, float(x.min()), float(x.max())
    )


def synthetic_classification(
    key: jax.Array, n: int, dim: int, num_classes: int, *, separation: float = 2.0
) -> Dataset:
    """A Gaussian mixture: class c has mean separation·μ_c, μ_c ~ N(0, I/d), identity covariance.

    Args:
      key: PRNG key.
      n: number of samples.
      dim: input dimension d.
      num_classes: number of mixture components (= classes), at least 2.
      separation: scale of the class means.

    Returns:
      A `Dataset` with integer labels in [0, num_classes).
    """
    _check_positive_int("n", n)
    _check_positive_int("dim", dim)
    if num_classes < 2:
        raise InputError(f"num_classes must be >= 2, got {num_classes}")
    k_mu, k_y, k_x = jax.random.split(key, 3)
    means = separation * jax.random.normal(k_mu, (num_classes, dim)) / jnp.sqrt(dim)
    y = jax.random.randint(k_y, (n,), 0, num_classes)
    x = means[y] + jax.random.normal(k_x, (n, dim))
    x = np.asarray(x, dtype=np.float64)
    return Dataset(
        "synthetic", x, np.asarray(y, np.int64), num_classes, None, float(x.min()), float(x.max())
    )


def split(
    key: jax.Array,
    num_samples: int,
    n_train: int,
    n_public: int | None,
    *,
    test_fraction: float = TEST_FRACTION,
) -> Split:
    """Seeded disjoint train / public / test positions.

    The test split is `round(test_fraction * num_samples)` (at least 1) positions; the training set
    the next `n_train`; the public set the next `n_public` (None: all the rest).

    Raises:
      InputError: if the sizes do not fit in `num_samples`.
    """
    n_test = max(1, int(round(test_fraction * num_samples)))
    available = num_samples - n_test
    if n_train < 2:
        raise InputError(f"n_train must be >= 2, got {n_train}")
    if n_train >= available:
        raise InputError(
            f"n_train must be < {available} (pool of {num_samples} minus a test split of "
            f"{n_test}), got {n_train}"
        )
    if n_public is None:
        n_public = available - n_train
    if n_public < 1:
        raise InputError(f"n_public must be >= 1, got {n_public}")
    if n_train + n_public > available:
        raise InputError(
            f"n_public must be <= {available - n_train} (pool {num_samples} - test {n_test} - "
            f"train {n_train}), got {n_public}"
        )
    perm = np.asarray(jax.random.permutation(key, num_samples))
    test = np.sort(perm[:n_test])
    train = np.sort(perm[n_test : n_test + n_train])
    public = np.sort(perm[n_test + n_train : n_test + n_train + n_public])
    return Split(train, public, test)


def _check_positive_int(name: str, value: int) -> None:
    if int(value) != value or value < 1:
        raise InputError(f"{name} must be a positive integer, got {value!r}")


def _synthetic_regression_default(key: jax.Array) -> Dataset:
    return synthetic_regression(key, 2000, 16)


def _synthetic_classification_default(key: jax.Array) -> Dataset:
    return synthetic_classification(key, 2000, 16, 4)


# name -> loader(key, data_dir). The key seeds generated data; loaded files ignore it.
DATASETS = {
    "digits": lambda key, data_dir: load_digits(),
    "synthetic_regression": lambda key, data_dir: _synthetic_regression_default(key),
    "synthetic_classification": lambda key, data_dir: _synthetic_classification_default(key),
}


def load_dataset(name: str, *, key: jax.Array, data_dir: str | None = None) -> Dataset:
    """The pooled data set called `name` (see `DATASETS`).

    Raises:
      InputError: unknown name, or the data set's files are missing.
    """
    if name not in DATASETS:
        raise InputError(f"--dataset: unknown data set {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name](key, data_dir)
