"""Embedding inversion and gradient matching recover what they should on small problems."""

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import attacks, features, models


def test_inversion_recovers_x_from_exact_rff_features():
    key = jax.random.key(0)
    fmap = features.rff_features(key, 3, 64, 1.5)
    rng = np.random.default_rng(1)
    public = jnp.asarray(rng.uniform(-1, 1, size=(50, 3)))
    x = jnp.asarray([0.3, -0.4, 0.1])
    invert = attacks.feature_inverter(fmap.apply, public, fmap.apply(public), lower=-1.0, upper=1.0)
    np.testing.assert_allclose(invert(fmap.apply(x)), x, atol=1e-6)


def test_inversion_vmaps_over_deletions():
    fmap = features.rff_features(jax.random.key(2), 2, 32, 1.0)
    rng = np.random.default_rng(3)
    public = jnp.asarray(rng.uniform(0, 1, size=(40, 2)))
    xs = jnp.asarray(rng.uniform(0.2, 0.8, size=(4, 2)))
    invert = attacks.feature_inverter(fmap.apply, public, fmap.apply(public), lower=0.0, upper=1.0)
    batched = jax.vmap(invert)(fmap.apply(xs))
    for b in range(4):
        np.testing.assert_allclose(batched[b], invert(fmap.apply(xs[b])), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(batched, xs, atol=1e-5)


def test_gradmatch_finds_record_and_label_with_exact_gradient():
    """With g = ∇ℓ(θ⁺; z) exactly (Ĥ = I, θ⁻ − θ⁺ = g), the record maximises the cosine."""
    model = models.softmax_model(3)
    fmap = features.identity_features()
    rng = np.random.default_rng(4)
    theta = jnp.asarray(rng.normal(size=(3, 3)))
    x, y = jnp.asarray([0.6, 0.2]), 2
    g = models.per_example_grad(model, theta, fmap.apply(x), y)
    res = attacks.gradmatch(
        lambda t, xx, yy: models.loss(model, t, fmap.apply(xx), yy),
        theta,
        theta + g,
        lambda v: v,
        jnp.asarray([[0.5, 0.5]]),
        jnp.arange(3, dtype=jnp.int32),
        lower=0.0,
        upper=1.0,
        steps=500,
    )
    assert int(res.y_hat) == y
    assert float(res.score) > 1 - 1e-6
    np.testing.assert_allclose(res.x_hat, x, atol=1e-3)
