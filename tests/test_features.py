"""Random Fourier features approximate the RBF kernel at rate 1/√F; the median heuristic."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from jaxrecon import features


def test_rff_kernel_error_shrinks_like_one_over_sqrt_f(rng):
    """RMS error of φ(x)ᵀφ(z) against exp(−‖x − z‖²/2σ²) halves when F quadruples."""
    x = rng.uniform(size=(12, 4))
    sigma = 0.7
    exact = ref.rbf_kernel(x, x, sigma)
    sizes = (64, 256, 1024, 4096)
    errors = []
    for f in sizes:
        errs = []
        for seed in range(6):
            fmap = features.rff_features(jax.random.key(seed), 4, f, sigma)
            p = np.asarray(fmap.apply(jnp.asarray(x)))[:, :-1]  # drop the bias coordinate
            errs.append(np.sqrt(np.mean((p @ p.T - exact) ** 2)))
        errors.append(np.mean(errs))
    slope = np.polyfit(np.log(sizes), np.log(errors), 1)[0]
    assert -0.6 < slope < -0.4, (slope, errors)
    for a, b in zip(errors, errors[1:], strict=False):
        assert 1.5 < a / b < 2.7


def test_rff_map_layout_and_determinism(rng):
    x = jnp.asarray(rng.uniform(size=(5, 3)))
    fmap = features.rff_features(jax.random.key(0), 3, 16, 1.5)
    p = fmap.apply(x)
    assert p.shape == (5, 17) and fmap.dim(3) == 17 and fmap.name == "rff"
    np.testing.assert_array_equal(p[:, -1], 1)
    assert fmap.invert is None
    w, b = fmap.params
    assert w.shape == (16, 3) and b.shape == (16,)
    assert float(b.min()) >= 0 and float(b.max()) < 2 * np.pi
    expected = np.sqrt(2 / 16) * np.cos(np.asarray(x) @ np.asarray(w).T + np.asarray(b))
    np.testing.assert_allclose(p[:, :-1], expected, rtol=1e-12)
    again = features.rff_features(jax.random.key(0), 3, 16, 1.5).apply(x)
    np.testing.assert_array_equal(p, again)
    other = features.rff_features(jax.random.key(1), 3, 16, 1.5).apply(x)
    assert not np.allclose(p, other)
    np.testing.assert_array_equal(features.rff_apply(fmap.params, x), p)


def test_rff_weights_have_the_requested_scale():
    fmap = features.rff_features(jax.random.key(0), 50, 2000, 2.0)
    assert abs(float(jnp.std(fmap.params.weights)) - 0.5) < 0.01
    # A bandwidth straight from `median_bandwidth` (a 0-d array) is accepted.
    sigma = features.median_bandwidth(jnp.eye(3))
    assert features.rff_features(jax.random.key(0), 3, 4, sigma).params.weights.shape == (4, 3)


def test_rff_jit_vmap_dtype(rng):
    fmap = features.rff_features(jax.random.key(2), 3, 8, 1.0)
    x = jnp.asarray(rng.uniform(size=(4, 3)))
    eager = fmap.apply(x)
    np.testing.assert_allclose(jax.jit(fmap.apply)(x), eager, rtol=1e-12)
    looped = np.stack([np.asarray(fmap.apply(row)) for row in x])
    np.testing.assert_allclose(jax.vmap(fmap.apply)(x), looped, rtol=1e-12)
    assert fmap.apply(x.astype(jnp.float32)).dtype == jnp.float32
    assert jax.jit(features.rff_apply)(fmap.params, x.astype(jnp.float32)).dtype == jnp.float32


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"input_dim": 0}, "input_dim"),
        ({"num_features": 0}, "num_features"),
        ({"num_features": 2.5}, "num_features"),
        ({"bandwidth": 0.0}, "bandwidth"),
        ({"bandwidth": float("nan")}, "bandwidth"),
        ({"bandwidth": "wide"}, "bandwidth"),
        ({"dtype": jnp.int32}, "dtype"),
    ],
)
def test_rff_bad_input_raises(kwargs, needle):
    args = {"input_dim": 3, "num_features": 8, "bandwidth": 1.0} | kwargs
    with pytest.raises(ValueError, match=needle):
        features.rff_features(jax.random.key(0), **args)


def test_median_bandwidth_matches_reference(rng):
    x = rng.normal(size=(40, 5))
    np.testing.assert_allclose(
        features.median_bandwidth(jnp.asarray(x)), ref.median_pairwise_distance(x), rtol=1e-10
    )
    # Subsampling takes evenly spaced rows: deterministic.
    sub = features.median_bandwidth(jnp.asarray(x), max_samples=10)
    np.testing.assert_allclose(sub, ref.median_pairwise_distance(x[np.arange(10) * 4]), rtol=1e-10)
    with pytest.raises(ValueError, match="x must be"):
        features.median_bandwidth(jnp.ones((1, 3)))
    with pytest.raises(ValueError, match="max_samples"):
        features.median_bandwidth(jnp.ones((4, 3)), max_samples=1)


def test_identity_features_bias_last(rng):
    x = rng.normal(size=(3, 2))
    fmap = features.identity_features()
    p = fmap.apply(jnp.asarray(x))
    np.testing.assert_array_equal(p[:, -1], 1)
    np.testing.assert_array_equal(fmap.invert(p), x)
    assert fmap.dim(2) == 3
