"""Property-based tests (hypothesis) of the exact identities over random shapes and seeds."""

import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import reference as ref
from jaxrecon import attacks, features, models, unlearning

problems = st.tuples(
    st.integers(min_value=3, max_value=40),  # n
    st.integers(min_value=1, max_value=8),  # d
    st.floats(min_value=0.05, max_value=10.0),  # l2
    st.integers(min_value=0, max_value=2**31 - 1),  # seed
)
SETTINGS = settings(max_examples=15, deadline=None, derandomize=True)


def _ridge(n, d, l2, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)) * rng.uniform(0.1, 3.0)
    p = np.concatenate([x, np.ones((n, 1))], 1)
    y = p @ rng.normal(size=d + 1) + rng.normal(size=n)
    j = int(rng.integers(n))
    theta = ref.ridge_solve(p, y, l2)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=l2)
    after = unlearning.unlearn_ridge(
        jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=l2
    ).params
    return x, p, y, j, theta, np.asarray(after)


@SETTINGS
@given(problems)
def test_sherman_morrison_equals_retraining(problem):
    n, d, l2, seed = problem
    _, p, y, j, _, after = _ridge(n, d, l2, seed)
    keep = np.arange(n) != j
    expected = ref.ridge_solve(p[keep], y[keep], l2)
    np.testing.assert_allclose(
        after, expected, rtol=1e-7, atol=1e-9 * max(1, np.abs(expected).max())
    )


@SETTINGS
@given(problems)
def test_ridge_identity(problem):
    """H₋(θ⁻ − θ⁺) = p_j r_j exactly (DESIGN §3.1)."""
    n, d, l2, seed = problem
    _, p, y, j, theta, after = _ridge(n, d, l2, seed)
    h_minus = p.T @ p - np.outer(p[j], p[j]) + l2 * np.eye(d + 1)
    rhs = p[j] * (theta @ p[j] - y[j])
    np.testing.assert_allclose(
        h_minus @ (after - theta), rhs, rtol=1e-7, atol=1e-9 * max(1, np.abs(rhs).max())
    )


@SETTINGS
@given(problems)
def test_hrec_with_true_hessian_recovers_ridge_sample(problem):
    n, d, l2, seed = problem
    x, p, y, j, theta, after = _ridge(n, d, l2, seed)
    if abs(theta @ p[j] - y[j]) < 1e-6:  # no signal to recover (tested elsewhere)
        return
    h_minus = jnp.asarray(p.T @ p - np.outer(p[j], p[j]) + l2 * np.eye(d + 1))
    res = attacks.hrec(
        models.ridge_model(),
        features.identity_features(),
        jnp.asarray(theta),
        jnp.asarray(after),
        lambda v: h_minus @ v,
    )
    np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-5, atol=1e-6 * max(1, np.abs(x[j]).max()))
    np.testing.assert_allclose(res.y_hat, y[j], rtol=1e-5, atol=1e-6 * max(1, abs(y[j])))


@SETTINGS
@given(problems, st.integers(min_value=2, max_value=4))
def test_hrec_exact_for_softmax_newton_step(problem, k):
    """θ⁺ optimal, θ⁻ one Newton step on the retained data with H₋(θ⁺): HRec with H₋ recovers
    the deleted features and label exactly (g = ∇ℓ(θ⁺; z_j) = p_j (s_j − e_y)ᵀ, rank one)."""
    n, d, l2, seed = problem
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    p = np.concatenate([x, np.ones((n, 1))], 1)
    y = rng.integers(0, k, size=n)
    ones = np.ones(n)
    theta = ref.newton(
        lambda t: ref.softmax_grad(t, p, y, l2, ones),
        lambda t: ref.softmax_hessian(t, p, l2, ones),
        np.zeros((d + 1, k)),
    )
    j = int(rng.integers(n))
    w = ones.copy()
    w[j] = 0
    h = ref.softmax_hessian(theta, p, l2, w)
    g_minus = ref.softmax_grad(theta, p, y, l2, w)
    after = theta - np.linalg.solve(h, g_minus.reshape(-1)).reshape(theta.shape)
    hj = jnp.asarray(h)
    res = attacks.hrec(
        models.softmax_model(k),
        features.identity_features(),
        jnp.asarray(theta),
        jnp.asarray(after),
        lambda v: (hj @ v.reshape(-1)).reshape(v.shape),
    )
    np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-5, atol=1e-6 * max(1, np.abs(x[j]).max()))
    assert int(res.y_hat) == int(y[j])
