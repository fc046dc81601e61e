"""HRec is exact when its Hessian is exact (DESIGN §3.1-3.2); baselines do what they say."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import make_problem
from jaxrecon import attacks, features, metrics, models, solvers, unlearning

FMAP = features.identity_features()


def _cos(a, b):
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def test_hrec_ridge_is_exact_with_true_hessian(rng):
    x, p, y = make_problem(rng, n=50, d=6)
    theta = ref.ridge_solve(p, y, 0.5)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=0.5)
    model = models.ridge_model()
    for j in (0, 21):
        after = unlearning.unlearn_ridge(
            jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=0.5
        ).params
        h_minus = p.T @ p - np.outer(p[j], p[j]) + 0.5 * np.eye(p.shape[1])
        res = attacks.hrec(
            model, FMAP, jnp.asarray(theta), after, lambda v, h=h_minus: jnp.asarray(h) @ v
        )
        assert _cos(np.asarray(res.x_hat), x[j]) > 1 - 1e-9
        np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-8, atol=1e-9)
        np.testing.assert_allclose(res.y_hat, y[j], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_hrec_exact_for_newton_step_unlearning(rng, name):
    """Newton-step unlearning with H₋(θ⁺): Ĥ = H₋ gives g = ∇ℓ(θ⁺; z_j) exactly."""
    task = "binary" if name == "logistic" else "multiclass"
    x, p, y = make_problem(rng, n=60, d=4, num_classes=3, task=task)
    model = models.make_model(name, 3)
    p, y = jnp.asarray(p), jnp.asarray(y)
    theta = solvers.fit_newton(model, p, y, l2=0.5, weights=jnp.ones(60)).params
    for j in (2, 33):
        w = unlearning.deletion_masks(jnp.asarray([j]), 60)[0]
        h = models.dense_hessian(model, theta, p, l2=0.5, weights=w)
        g = models.gradient(model, theta, p, y, l2=0.5, weights=w)
        after = theta - jnp.linalg.solve(h, g.reshape(-1)).reshape(theta.shape)
        res = attacks.hrec(
            model, FMAP, theta, after, lambda v, h=h: (h @ v.reshape(-1)).reshape(v.shape)
        )
        assert _cos(np.asarray(res.x_hat), x[j]) > 1 - 1e-9
        np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-7, atol=1e-8)
        assert int(res.y_hat) == int(y[j])


def test_hrec_public_hessian_close_on_large_public_set(rng):
    """With many public samples from the same distribution, Ĥ ≈ H₋: high cosine."""
    x, p, y = make_problem(rng, n=2400, d=4, task="binary")
    train, public = slice(0, 400), slice(400, 2400)
    model = models.logistic_model()
    pt, yt = jnp.asarray(p[train]), jnp.asarray(y[train])
    theta = solvers.fit_newton(model, pt, yt, l2=1.0, weights=jnp.ones(400)).params
    factor = unlearning.hessian_cholesky(model, theta, pt, l2=1.0)
    masks = unlearning.deletion_masks(jnp.arange(20), 400)
    after = jax.vmap(
        lambda w: (
            unlearning.unlearn_retrain(
                model, theta, pt, yt, w, l2=1.0, precond_factor=factor
            ).params
        )
    )(masks)
    matvec = attacks.public_hessian_matvec(
        model, theta, jnp.asarray(p[public]), n_train=400, l2=1.0
    )
    res = jax.vmap(lambda t: attacks.hrec(model, FMAP, theta, t, matvec))(after)
    cos = metrics.cosine_similarity(res.x_hat, jnp.asarray(x[:20]))
    assert np.median(cos) > 0.95
    assert np.mean(np.asarray(res.y_hat) == y[:20]) >= 0.95


def test_public_hessian_matvec_matches_dense_formula(rng):
    _, p, _ = make_problem(rng, n=30, d=3, task="binary")
    model = models.logistic_model()
    theta = jnp.asarray(rng.normal(size=4))
    v = rng.normal(size=4)
    matvec = attacks.public_hessian_matvec(model, theta, jnp.asarray(p), n_train=101, l2=0.3)
    s = ref.sigmoid(p @ np.asarray(theta))
    dense = 100 / 30 * p.T @ ((s * (1 - s))[:, None] * p) + 0.3 * np.eye(4)
    np.testing.assert_allclose(matvec(jnp.asarray(v)), dense @ v, rtol=1e-12)


def test_hrec_vmap_equals_loop(rng):
    x, p, y = make_problem(rng, n=40, d=3, num_classes=3, task="multiclass")
    model = models.softmax_model(3)
    theta = jnp.asarray(rng.normal(size=(4, 3)))
    afters = theta[None] + 0.01 * jnp.asarray(rng.normal(size=(5, 4, 3)))
    matvec = attacks.public_hessian_matvec(model, theta, jnp.asarray(p), n_train=40, l2=1.0)
    batched = jax.vmap(lambda t: attacks.hrec(model, FMAP, theta, t, matvec))(afters)
    for b in range(5):
        one = attacks.hrec(model, FMAP, theta, afters[b], matvec)
        np.testing.assert_allclose(batched.x_hat[b], one.x_hat, rtol=1e-10)
        assert int(batched.y_hat[b]) == int(one.y_hat)


def test_maxdiff_picks_largest_prediction_change(rng):
    x, p, y = make_problem(rng, n=20, d=3, task="binary")
    model = models.logistic_model()
    before = jnp.zeros(4)
    after = jnp.asarray([0.0, 0.0, 0.0, 0.0]).at[0].set(1.0)
    res = attacks.maxdiff(model, before, after, jnp.asarray(p), jnp.asarray(x), jnp.asarray(y))
    k = int(np.argmax(np.abs(ref.sigmoid(p @ np.asarray(after)) - 0.5)))
    np.testing.assert_array_equal(res.x_hat, x[k])
    assert int(res.y_hat) == y[k]


def test_avg_is_mean_and_majority(rng):
    x = rng.normal(size=(10, 3))
    y = np.array([0, 1, 1, 2, 1, 0, 2, 1, 1, 0])
    res = attacks.avg(jnp.asarray(x), jnp.asarray(y), models.MULTICLASS, 3)
    np.testing.assert_allclose(res.x_hat, x.mean(0))
    assert int(res.y_hat) == 1
    res = attacks.avg(jnp.asarray(x), jnp.asarray(y, float), models.REGRESSION)
    np.testing.assert_allclose(res.y_hat, y.mean())


def test_hrec_without_inverse_raises():
    fmap = features.FeatureMap("opaque", lambda x: x, None, lambda d: d)
    with pytest.raises(ValueError, match="inverse"):
        attacks.hrec(models.ridge_model(), fmap, jnp.zeros(3), jnp.ones(3), lambda v: v)
