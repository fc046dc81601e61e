"""Embedding inversion (random Fourier features) and gradient matching recover records."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import IDENTITY, cosine, newton_step, trained_glm
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


def _rff_problem(rng, d=3, f=64):
    fmap = features.rff_features(jax.random.key(3), d, f, 1.0)
    public_x = jnp.asarray(rng.uniform(size=(30, d)))
    return fmap, public_x, fmap.apply(public_x)


def test_inversion_recovers_x_from_its_exact_features(rng):
    fmap, public_x, public_p = _rff_problem(rng)
    xs = jnp.asarray(np.vstack([rng.uniform(size=(3, 3)), [[0.0, 0.4, 1.0]]]))  # one on the box
    invert = attacks.feature_inverter(fmap.apply, public_x, public_p, lower=0.0, upper=1.0)
    recovered = jax.jit(jax.vmap(invert))(fmap.apply(xs))
    np.testing.assert_allclose(recovered, xs, atol=1e-8)


def test_inversion_jit_vmap_dtype_and_errors(rng):
    fmap, public_x, public_p = _rff_problem(rng)
    targets = fmap.apply(jnp.asarray(rng.uniform(size=(2, 3))))
    kw = {"lower": 0.0, "upper": 1.0, "steps": 20}

    def one(t):
        starts = attacks.inversion_starts(t, public_x, public_p, num_nearest=1)
        return attacks.invert_features(fmap.apply, t, starts, **kw)

    batched = jax.jit(jax.vmap(one))(targets)
    single = jax.jit(one)
    for b in range(2):
        np.testing.assert_allclose(batched.x_hat[b], single(targets[b]).x_hat, atol=1e-12)
    cos32 = jax.jit(
        lambda t, s: attacks.invert_features(fmap.apply, t, s, objective="cosine", **kw)
    )(targets[0].astype(jnp.float32), public_x[:2].astype(jnp.float32))
    assert cos32.x_hat.dtype == jnp.float32 and float(cos32.loss) < 0.05
    for bad, needle in (
        ({"objective": "l1"}, "objective"),
        ({"steps": 0}, "steps"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ):
        with pytest.raises(ValueError, match=needle):
            attacks.invert_features(fmap.apply, targets[0], public_x[:2], **(kw | bad))
    with pytest.raises(ValueError, match="starts"):
        attacks.invert_features(fmap.apply, targets[0], public_x[0], **kw)
    with pytest.raises(ValueError, match="invert"):
        attacks.hrec(models.softmax_model(3), fmap, jnp.zeros((65, 3)), jnp.ones((65, 3)), None)


def test_gradmatch_finds_record_and_label_without_knowing_it(rng):
    model, x, p, y, theta = trained_glm(rng, "softmax", k=3)
    lo, hi = float(x.min()), float(x.max())

    def loss_fn(t, xx, yy):
        return models.loss(model, t, IDENTITY.apply(xx), yy)

    starts = jnp.mean(jnp.asarray(x), axis=0, keepdims=True)

    @jax.jit
    def attack(j):
        after, matvec, _ = newton_step(model, theta, p, y, j)
        return attacks.gradmatch(
            loss_fn, theta, after, matvec, starts, jnp.arange(3), lower=lo, upper=hi, steps=400
        )

    for j in (4, 9):
        res = attack(j)
        assert cosine(res.x_hat, x[j]) > 0.999 and float(res.score) > 0.999
        assert int(res.y_hat) == int(y[j])
    after, matvec, _ = newton_step(model, theta, p, y, 4)
    with pytest.raises(ValueError, match="candidate_labels"):
        attacks.gradmatch(loss_fn, theta, after, matvec, starts, jnp.asarray(1), lower=lo, upper=hi)
