"""HRec is exact when its Hessian is exact (DESIGN §3.1-3.2), its error after exact retraining is
second order, the attacker's Ĥ matches the formula, and the baselines do what they say.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import IDENTITY, cosine, make_problem, newton_step, trained_glm
from jaxrecon import attacks, features, metrics, models, solvers, unlearning


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
            model, IDENTITY, jnp.asarray(theta), after, lambda v, h=h_minus: jnp.asarray(h) @ v
        )
        assert cosine(np.asarray(res.x_hat), x[j]) > 1 - 1e-9
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
            model, IDENTITY, theta, after, lambda v, h=h: (h @ v.reshape(-1)).reshape(v.shape)
        )
        assert cosine(np.asarray(res.x_hat), x[j]) > 1 - 1e-9
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
    res = jax.vmap(lambda t: attacks.hrec(model, IDENTITY, theta, t, matvec))(after)
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
    batched = jax.vmap(lambda t: attacks.hrec(model, IDENTITY, theta, t, matvec))(afters)
    for b in range(5):
        one = attacks.hrec(model, IDENTITY, theta, afters[b], matvec)
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


@pytest.mark.parametrize(
    "name,k", [("ridge", None), ("logistic", None), ("softmax", 3), ("svm", 3)]
)
def test_dense_public_hessian_equals_numpy_formula_with_l2(rng, name, k):
    """Ĥ = ((n−1)/m) Σ_pub ∇²ℓ + l2·I formed as a matrix, against the NumPy Hessians: catches a
    dropped l2 term or a wrong scale."""
    task = {"ridge": "regression", "logistic": "binary"}.get(name, "multiclass")
    _, p, y = make_problem(rng, n=30, d=4, num_classes=k, task=task)
    model = models.make_model(name, k)
    theta = rng.normal(size=model.param_shape(5))
    labels = jnp.asarray(y, jnp.int32) if model.hessian_uses_labels else None
    matrix = attacks.public_hessian_matrix(
        model, jnp.asarray(theta), jnp.asarray(p), n_train=101, l2=0.3, public_labels=labels
    )
    w = np.full(30, 100 / 30)
    expected = {
        "ridge": lambda: p.T @ (w[:, None] * p) + 0.3 * np.eye(5),
        "logistic": lambda: ref.logistic_hessian(theta, p, 0.3, w),
        "softmax": lambda: ref.softmax_hessian(theta, p, 0.3, w),
        "svm": lambda: ref.squared_hinge_hessian(theta, p, y, 0.3, w),
    }[name]()
    np.testing.assert_allclose(matrix, expected, rtol=1e-12, atol=1e-12)


def test_hrec_error_after_exact_retraining_shrinks_like_one_over_n(rng):
    """With the true retained-data Hessian H₋(θ⁺), HRec's only error after exact retraining is the
    second-order remainder of the Newton-step identity, O(n‖θ⁻ − θ⁺‖²) = O(1/n) against a
    signal ∇ℓ(θ⁺; z_j) of O(1): the relative error falls like 1/n (DESIGN §3.2)."""
    x, p, y = make_problem(rng, n=1600, d=4, task="binary")
    model = models.logistic_model()
    errors = []
    for n in (100, 400, 1600):
        pn, yn = jnp.asarray(p[:n]), jnp.asarray(y[:n], jnp.int32)
        theta = solvers.fit_newton(model, pn, yn, l2=1.0, weights=jnp.ones(n)).params
        system = unlearning.glm_system(model, theta, pn, yn, l2=1.0)
        deleted = jnp.arange(8)
        after = unlearning.unlearn_glm(model, system, theta, pn, yn, deleted, l2=1.0).params
        rel = []
        for b in range(8):
            w = unlearning.deletion_masks(deleted[b : b + 1], n)[0]
            h = models.dense_hessian(model, theta, pn, l2=1.0, weights=w)
            res = attacks.hrec(model, IDENTITY, theta, after[b], lambda v, h=h: h @ v)
            rel.append(np.linalg.norm(res.x_hat - x[b]) / np.linalg.norm(x[b]))
        errors.append(np.median(rel))
    assert 0 < errors[2] < errors[1] / 2.5 < errors[0] / 6.25


def _support_records(model, theta, p, y, count=2):
    """Records whose loss gradient is non-zero (all of them, except SVM records past the margin)."""
    norms = jax.vmap(lambda f, t: jnp.linalg.norm(models.per_example_grad(model, theta, f, t)))(
        p, y
    )
    return [int(j) for j in np.flatnonzero(np.asarray(norms) > 1e-3)[:count]]


@pytest.mark.parametrize(
    "name,k,rff",
    [
        ("svm", None, False),
        ("svm", 3, False),
        ("ridge-onehot", 3, False),
        ("softmax", 3, True),
        ("svm", 3, True),
    ],
)
def test_hrec_is_exact_in_feature_space_with_true_hessian(rng, name, k, rff):
    """Newton-step unlearning + Ĥ = H₋: p̂ = p_j and ŷ = y_j to round-off, for every family."""
    fmap = features.rff_features(jax.random.key(0), 4, 32, 2.0) if rff else IDENTITY
    model, x, p, y, theta = trained_glm(rng, name, k=k, fmap=fmap)
    for j in _support_records(model, theta, p, y):
        after, matvec, _ = newton_step(model, theta, p, y, j)
        res = attacks.hrec(model, fmap, theta, after, matvec, invert=lambda q: q)
        assert cosine(res.x_hat, p[j]) > 1 - 1e-9
        np.testing.assert_allclose(res.x_hat, p[j], rtol=1e-7, atol=1e-9)
        assert int(res.y_hat) == int(y[j])


@pytest.mark.parametrize(
    "name,k", [("ridge", None), ("logistic", None), ("softmax", 3), ("svm", 3), ("ridge-onehot", 3)]
)
def test_informed_adversary_is_exact_for_glms(rng, name, k):
    model, x, p, y, theta = trained_glm(rng, name, k=k)
    for j in _support_records(model, theta, p, y):
        w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0])[0]
        res = attacks.informed(model, IDENTITY, theta, p, y, w, l2=0.5)
        np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-6, atol=1e-7)
        if name == "ridge":
            np.testing.assert_allclose(res.y_hat, y[j], rtol=1e-6)
        else:
            assert int(res.y_hat) == int(y[j])


def test_traceless_deletion_falls_back(rng):
    """An SVM record past the margin does not move θ: both attacks answer the fallback."""
    model, x, p, y, theta = trained_glm(rng, "svm", k=3, n=80, l2=0.05)
    norms = jax.vmap(lambda f, t: jnp.linalg.norm(models.per_example_grad(model, theta, f, t)))(
        p, y
    )
    j = int(np.flatnonzero(np.asarray(norms) == 0)[0])
    w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0])[0]
    after = unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.05).params
    np.testing.assert_array_equal(after, theta)
    fallback = attacks.avg(jnp.asarray(x), y, model.task, 3)
    matvec = attacks.public_hessian_matvec(model, theta, p, n_train=80, l2=0.05, public_labels=y)
    for res in (
        attacks.hrec(model, IDENTITY, theta, after, matvec, fallback=fallback),
        attacks.informed(model, IDENTITY, theta, p, y, w, l2=0.05, fallback=fallback),
    ):
        np.testing.assert_array_equal(res.x_hat, fallback.x_hat)
        assert int(res.y_hat) == int(fallback.y_hat) and float(res.score) == 0
    # A record that did move θ is not replaced.
    k = _support_records(model, theta, p, y, 1)[0]
    after, matvec, _ = newton_step(model, theta, p, y, k, l2=0.05)
    res = attacks.hrec(model, IDENTITY, theta, after, matvec, fallback=fallback)
    np.testing.assert_allclose(res.x_hat, x[k], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="public_labels"):
        attacks.public_hessian_matvec(model, theta, p, n_train=80, l2=0.05)


def test_top_singular_pair_matches_svd(rng):
    g = np.outer(rng.normal(size=30), rng.normal(size=5)) + 0.05 * rng.normal(size=(30, 5))
    v, score = attacks._top_right_singular(jnp.asarray(g))
    _, s, vt = np.linalg.svd(g)
    assert abs(float(np.asarray(v) @ vt[0])) > 1 - 1e-10
    np.testing.assert_allclose(score, s[0] ** 2 / np.sum(s**2), rtol=1e-10)


@pytest.mark.parametrize("name,k", [("ridge", None), ("softmax", 3), ("svm", 3)])
def test_public_hessian_matrix_equals_matrix_free_products(rng, name, k):
    from jaxrecon import attacks

    task = "regression" if name == "ridge" else "multiclass"
    _, p, y = make_problem(rng, n=30, d=4, num_classes=k, task=task)
    model = models.make_model(name, k)
    theta = jnp.asarray(rng.normal(size=model.param_shape(5)))
    labels = None if name == "ridge" else jnp.asarray(y, jnp.int32)
    kw = {"n_train": 101, "l2": 0.7, "public_labels": labels if model.hessian_uses_labels else None}
    matrix = attacks.public_hessian_matrix(model, theta, jnp.asarray(p), **kw)
    free = attacks.public_hessian_matvec(model, theta, jnp.asarray(p), **kw)
    dense = attacks.dense_matvec(matrix)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=theta.shape))
        np.testing.assert_allclose(dense(v), free(v), rtol=1e-12, atol=1e-12)


def test_zero_update_is_reported_as_no_signal():
    """A deletion that leaves θ unchanged (ridge with r_j = 0) gives score 0, not a division."""
    fmap = features.identity_features()
    theta = jnp.asarray([0.5, -1.0, 2.0])
    for model in (models.ridge_model(), models.logistic_model()):
        res = attacks.hrec(model, fmap, theta, theta, lambda v: 3.0 * v)
        assert float(res.score) == 0.0
        np.testing.assert_array_equal(res.x_hat, 0.0)
    res = attacks.hrec(models.ridge_model(), fmap, theta, theta, lambda v: 3.0 * v)
    assert np.isnan(float(res.y_hat))


def test_ridge_zero_residual_sample(rng):
    """Choose y_j so that the fit passes through sample j exactly (r_j = 0): θ⁻ = θ⁺ to round-off,
    and HRec answers exactly the no-signal result (zero input, unknown label NaN, score 0)
    instead of dividing round-off by round-off."""
    _, p, y = make_regression(rng)
    h_inv = np.linalg.inv(p.T @ p + np.eye(p.shape[1]))
    j = 4
    others = np.arange(len(y)) != j
    a = p[j] @ h_inv
    y[j] = (a @ p[others].T @ y[others]) / (1 - a @ p[j])
    theta = jnp.asarray(h_inv @ p.T @ y)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=1.0)
    after = unlearning.unlearn_ridge(
        theta, factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=1.0
    ).params
    res = attacks.hrec(
        models.ridge_model(), features.identity_features(), theta, after, lambda v: v
    )
    np.testing.assert_allclose(after, theta, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(res.x_hat, np.zeros(3))
    assert np.isnan(float(res.y_hat)) and float(res.score) == 0.0
    # The same deletion with the Avg fallback answers the prior exactly.
    prior = attacks.AttackResult(jnp.full(3, 0.25), jnp.asarray(7.0), jnp.asarray(0.9))
    fmap = features.identity_features()
    res = attacks.hrec(models.ridge_model(), fmap, theta, after, lambda v: v, fallback=prior)
    np.testing.assert_array_equal(res.x_hat, prior.x_hat)
    assert float(res.y_hat) == 7.0 and float(res.score) == 0.0


def make_regression(rng, n=25, d=3):
    x = rng.normal(size=(n, d))
    p = np.concatenate([x, np.ones((n, 1))], 1)
    return x, p, p @ rng.normal(size=d + 1)


def test_extreme_eigenvalues_power_iteration_matches_dense(rng):
    a = rng.normal(size=(30, 30))
    h = jnp.asarray(a @ a.T + np.eye(30))
    like = jnp.zeros(30)
    dense = attacks.hessian_extreme_eigenvalues(lambda v: h @ v, like)
    approx = attacks.hessian_extreme_eigenvalues(
        lambda v: h @ v, like, dense_limit=0, iterations=3000
    )
    eig = np.linalg.eigvalsh(np.asarray(h))
    np.testing.assert_allclose(dense, (eig[0], eig[-1]), rtol=1e-10)
    np.testing.assert_allclose(approx[1], eig[-1], rtol=1e-6)
    np.testing.assert_allclose(approx[0], eig[0], rtol=1e-2)


def test_jit_of_attack_functions_no_retrace_across_chunks():
    """Two chunks of a run share one compilation (no recompilation per deletion)."""
    traces = []
    model = models.logistic_model()
    fmap = features.identity_features()

    @jax.jit
    def attack(theta_after, theta, pub):
        traces.append(1)
        matvec = attacks.public_hessian_matvec(model, theta, pub, n_train=10, l2=1.0)
        return jax.vmap(lambda t: attacks.hrec(model, fmap, theta, t, matvec))(theta_after)

    pub = jnp.ones((5, 3))
    attack(jnp.ones((4, 3)), jnp.zeros(3), pub)
    attack(2 * jnp.ones((4, 3)), jnp.zeros(3), pub)
    assert len(traces) == 1
