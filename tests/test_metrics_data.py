"""Metrics against NumPy; seeded splits are disjoint, sized and deterministic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon import data, features, metrics
from jaxrecon.errors import InputError


def test_cosine_and_mse_match_numpy(rng):
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    expected = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(
        metrics.cosine_similarity(jnp.asarray(a), jnp.asarray(b)), expected, rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics.mse(jnp.asarray(a), jnp.asarray(b)), np.mean((a - b) ** 2, 1), rtol=1e-12
    )
    assert metrics.cosine_similarity(jnp.zeros((1, 3)), jnp.ones((1, 3)))[0] == 0


def test_summaries_and_scores():
    s = metrics.summarize(np.linspace(0, 1, 11))
    assert s == pytest.approx({"cosine_median": 0.5, "cosine_p10": 0.1, "cosine_mean": 0.5})
    xs, ys = metrics.empirical_cdf(np.array([0.3, 0.1, 0.2]))
    np.testing.assert_allclose(xs, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(ys, [1 / 3, 2 / 3, 1])
    y = jnp.asarray([1.0, 2.0, 3.0])
    assert float(metrics.r2_score(y, y)) == 1.0
    assert float(metrics.accuracy(jnp.asarray([0, 1, 1]), jnp.asarray([0, 1, 0]))) == pytest.approx(
        2 / 3
    )


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
        (1, None, "n_train must be >= 2"),
        (460, None, "n_train must be <"),
        (200, 0, "n_public must be >= 1"),
        (200, 300, "n_public must be <="),
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


def test_identity_features_bias_last(rng):
    x = rng.normal(size=(3, 2))
    fmap = features.identity_features()
    p = fmap.apply(jnp.asarray(x))
    np.testing.assert_array_equal(p[:, -1], 1)
    np.testing.assert_array_equal(fmap.invert(p), x)
    assert fmap.dim(2) == 3
