"""Embedded and synthetic data, and the seeded disjoint split into roles."""

import jax
import numpy as np
import pytest

from jaxrecon import data
from jaxrecon.errors import InputError


def test_split_is_disjoint_sized_and_deterministic():
    s1 = data.split(jax.random.key(3), 500, 200, 100)
    s2 = data.split(jax.random.key(3), 500, 200, 100)
    for a, b in zip(s1, s2, strict=True):
        np.testing.assert_array_equal(a, b)
    assert (len(s1.train), len(s1.public), len(s1.test)) == (200, 100, 50)
    all_idx = np.concatenate(s1)
    assert len(np.unique(all_idx)) == len(all_idx)
    rest = data.split(jax.random.key(3), 500, 200, None)
    assert len(rest.public) == 250


@pytest.mark.parametrize(
    "n_train,n_public,match",
    [
        (1, None, "n_train: must be >= 2"),
        (460, None, "n_train: must be <"),
        (200, 0, "n_public: must be >= 1"),
        (200, 300, "n_public: must be <="),
    ],
)
def test_split_rejects_impossible_sizes(n_train, n_public, match):
    with pytest.raises(InputError, match=match):
        data.split(jax.random.key(0), 500, n_train, n_public)


def test_digits_embedded():
    ds = data.load_digits()
    assert ds.x.shape == (1797, 64) and ds.image_shape == (8, 8)
    assert ds.x.min() == 0.0 and ds.x.max() == 1.0
    assert set(np.unique(ds.y)) == set(range(10))


def test_synthetic_data_is_seeded():
    a = data.synthetic_classification(jax.random.key(1), 100, 5, 3)
    b = data.synthetic_classification(jax.random.key(1), 100, 5, 3)
    np.testing.assert_array_equal(a.x, b.x)
    assert set(np.unique(a.y)) <= {0, 1, 2}
    r = data.synthetic_regression(jax.random.key(1), 100, 5)
    assert r.num_classes is None and r.y.dtype == np.float64
    with pytest.raises(InputError, match="--dataset"):
        data.load_dataset("nope", key=jax.random.key(0))
