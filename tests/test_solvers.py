"""Training: closed-form ridge and Newton against normal equations and scikit-learn."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression, Ridge

import reference as ref
from conftest import make_problem
from jaxrecon import models, solvers


def test_fit_ridge_matches_normal_equations_and_sklearn(rng):
    _, p, y = make_problem(rng, n=50, d=6)
    w = rng.integers(0, 2, size=len(y)).astype(float)
    fit = solvers.fit_ridge(jnp.asarray(p), jnp.asarray(y), l2=0.3, weights=jnp.asarray(w))
    np.testing.assert_allclose(fit.params, ref.ridge_solve(p, y, 0.3, w), rtol=1e-10)
    assert fit.grad_norm < 1e-12
    sk = Ridge(alpha=0.3, fit_intercept=False, solver="cholesky").fit(p, y)
    full = solvers.fit_ridge(jnp.asarray(p), jnp.asarray(y), l2=0.3, weights=jnp.ones(len(y)))
    np.testing.assert_allclose(full.params, sk.coef_, rtol=1e-9)


def test_fit_ridge_multi_output(rng):
    _, p, y = make_problem(rng, n=50, d=4, num_classes=3, task="multiclass")
    onehot = np.eye(3)[y]
    fit = solvers.fit_ridge(jnp.asarray(p), jnp.asarray(onehot), l2=1.0, weights=jnp.ones(50))
    np.testing.assert_allclose(fit.params, ref.ridge_solve(p, onehot, 1.0), rtol=1e-10)


def test_fit_newton_logistic_matches_sklearn(rng):
    _, p, y = make_problem(rng, n=80, d=5, task="binary")
    fit = solvers.fit_newton(
        models.logistic_model(), jnp.asarray(p), jnp.asarray(y), l2=0.5, weights=jnp.ones(80)
    )
    assert fit.grad_norm < 1e-10
    sk = LogisticRegression(C=1 / 0.5, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(p, y)
    np.testing.assert_allclose(fit.params, sk.coef_[0], rtol=1e-6, atol=1e-7)


def test_fit_newton_softmax_matches_sklearn(rng):
    _, p, y = make_problem(rng, n=90, d=4, num_classes=3, task="multiclass")
    fit = solvers.fit_newton(
        models.softmax_model(3), jnp.asarray(p), jnp.asarray(y), l2=0.5, weights=jnp.ones(90)
    )
    assert fit.grad_norm < 1e-10
    sk = LogisticRegression(C=1 / 0.5, fit_intercept=False, tol=1e-12, max_iter=10_000).fit(p, y)
    np.testing.assert_allclose(fit.params, sk.coef_.T, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(
        ref.softmax_grad(np.asarray(fit.params), p, y, 0.5, np.ones(90)), 0, atol=1e-9
    )


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_newton_cg_equals_dense_newton(rng, name):
    task = "binary" if name == "logistic" else "multiclass"
    _, p, y = make_problem(rng, n=70, d=4, num_classes=3, task=task)
    model = models.make_model(name, 3)
    args = (model, jnp.asarray(p), jnp.asarray(y))
    dense = solvers.fit_newton(*args, l2=1.0, weights=jnp.ones(70))
    cg = solvers.fit_newton(*args, l2=1.0, weights=jnp.ones(70), linear_solver="cg")
    np.testing.assert_allclose(cg.params, dense.params, rtol=1e-9, atol=1e-11)
    assert cg.grad_norm < 1e-10


def test_newton_respects_weights(rng):
    """Zero weight = the sample is absent: same optimum as fitting without that row."""
    _, p, y = make_problem(rng, n=40, d=3, task="binary")
    w = np.ones(40)
    w[[3, 17]] = 0
    model = models.logistic_model()
    masked = solvers.fit_newton(
        model, jnp.asarray(p), jnp.asarray(y), l2=1.0, weights=jnp.asarray(w)
    )
    keep = w > 0
    dropped = solvers.fit_newton(
        model, jnp.asarray(p[keep]), jnp.asarray(y[keep]), l2=1.0, weights=jnp.ones(int(keep.sum()))
    )
    np.testing.assert_allclose(masked.params, dropped.params, rtol=1e-10, atol=1e-12)


def test_float32_newton_keeps_dtype(rng):
    _, p, y = make_problem(rng, n=60, d=3, task="binary")
    fit = jax.jit(
        lambda f, yy: solvers.fit_newton(
            models.logistic_model(), f, yy, l2=1.0, weights=jnp.ones(60, jnp.float32)
        )
    )(jnp.asarray(p, jnp.float32), jnp.asarray(y))
    assert fit.params.dtype == jnp.float32
    assert fit.grad_norm < ref.TOL[np.float32]["solve"]


def test_conjugate_gradient_solves_spd_system(rng):
    a = rng.normal(size=(8, 8))
    a = a @ a.T + 8 * np.eye(8)
    b = rng.normal(size=8)
    x = solvers.conjugate_gradient(lambda v: jnp.asarray(a) @ v, jnp.asarray(b), tol=1e-14)
    np.testing.assert_allclose(x, np.linalg.solve(a, b), rtol=1e-10)


def test_bad_linear_solver_raises():
    with pytest.raises(ValueError, match="linear_solver"):
        solvers.fit_newton(
            models.logistic_model(),
            jnp.ones((3, 2)),
            jnp.zeros(3, int),
            l2=1.0,
            weights=jnp.ones(3),
            linear_solver="qr",
        )


def test_fresh_compiles_of_the_newton_cg_kernel_agree(rng):
    """The failure mode of jax/jaxlib 0.10.2 on CPU (jax-ml/jax#39103, excluded in pyproject):
    about one fresh compilation in seven of this nested while loop (Newton steps around CG,
    vmapped over deletions) returned NaN for identical inputs. Eight compilations, bypassing
    the in-memory and persistent caches, must give finite, bit-identical answers."""
    _, _, y = make_problem(rng, n=40, d=4, num_classes=3, task="multiclass")
    p = jnp.asarray(make_problem(rng, n=40, d=4)[1])
    model = models.softmax_model(3)
    theta = solvers.fit_newton(model, p, jnp.asarray(y), l2=0.5, weights=jnp.ones(40)).params
    masks = jnp.ones((6, 40)).at[jnp.arange(6), jnp.arange(6)].set(0.0)

    def kernel(features, labels, masks, start):
        return jax.vmap(
            lambda w: (
                solvers.fit_newton(
                    model, features, labels, l2=0.5, weights=w, init=start, linear_solver="cg"
                ).params
            )
        )(masks)

    cache = jax.config.jax_enable_compilation_cache
    jax.config.update("jax_enable_compilation_cache", False)
    try:
        runs = []
        for _ in range(8):
            jax.clear_caches()
            runs.append(np.asarray(jax.jit(kernel)(p, jnp.asarray(y), masks, theta)))
    finally:
        jax.config.update("jax_enable_compilation_cache", cache)
    assert np.all(np.isfinite(runs[0]))
    for other in runs[1:]:
        np.testing.assert_array_equal(other, runs[0])
