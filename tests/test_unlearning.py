"""Exact unlearning equals retraining from scratch; vmap equals a loop; one compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import make_problem
from jaxrecon import models, solvers, unlearning


def _ridge_setup(rng, n=40, d=5, l2=0.5):
    _, p, y = make_problem(rng, n=n, d=d)
    theta = ref.ridge_solve(p, y, l2)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=l2)
    return p, y, theta, factor


def test_ridge_unlearning_equals_retraining(rng):
    p, y, theta, factor = _ridge_setup(rng)
    for j in (0, 7, 39):
        res = unlearning.unlearn_ridge(
            jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=0.5
        )
        keep = np.arange(len(y)) != j
        np.testing.assert_allclose(
            res.params, ref.ridge_solve(p[keep], y[keep], 0.5), rtol=1e-10, atol=1e-12
        )
        assert res.grad_norm < 1e-12


def test_ridge_sherman_morrison_matches_reference(rng):
    p, y, theta, factor = _ridge_setup(rng)
    h_inv = np.linalg.inv(p.T @ p + 0.5 * np.eye(p.shape[1]))
    j = 11
    expected = ref.sherman_morrison(theta, h_inv, p[j], p[j] @ theta - y[j])
    res = unlearning.unlearn_ridge(
        jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=0.5
    )
    np.testing.assert_allclose(res.params, expected, rtol=1e-10)


def test_ridge_identity_holds_to_round_off(rng):
    """H₋(θ⁻ − θ⁺) = p_j·r_j with r_j = θ⁺ᵀp_j − y_j (DESIGN §3.1)."""
    p, y, theta, factor = _ridge_setup(rng)
    j = 5
    res = unlearning.unlearn_ridge(
        jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=0.5
    )
    h_minus = p.T @ p - np.outer(p[j], p[j]) + 0.5 * np.eye(p.shape[1])
    lhs = h_minus @ (np.asarray(res.params) - theta)
    np.testing.assert_allclose(lhs, p[j] * (theta @ p[j] - y[j]), rtol=1e-10, atol=1e-12)


def test_ridge_woodbury_for_several_deletions(rng):
    p, y, theta, factor = _ridge_setup(rng)
    dels = np.array([2, 9, 30])
    res = unlearning.unlearn_ridge(
        jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray(dels), l2=0.5
    )
    keep = np.ones(len(y), bool)
    keep[dels] = False
    np.testing.assert_allclose(res.params, ref.ridge_solve(p[keep], y[keep], 0.5), rtol=1e-10)


def test_ridge_multi_output_unlearning(rng):
    _, p, y = make_problem(rng, n=40, d=4, num_classes=3, task="multiclass")
    t = np.eye(3)[y]
    theta = ref.ridge_solve(p, t, 1.0)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=1.0)
    res = unlearning.unlearn_ridge(
        jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(t), jnp.asarray([4]), l2=1.0
    )
    keep = np.arange(40) != 4
    np.testing.assert_allclose(res.params, ref.ridge_solve(p[keep], t[keep], 1.0), rtol=1e-10)


def _glm_setup(rng, name, n=60, d=4, l2=0.7):
    task = "binary" if name == "logistic" else "multiclass"
    _, p, y = make_problem(rng, n=n, d=d, num_classes=3, task=task)
    model = models.make_model(name, 3)
    p, y = jnp.asarray(p), jnp.asarray(y)
    theta = solvers.fit_newton(model, p, y, l2=l2, weights=jnp.ones(n)).params
    factor = unlearning.hessian_cholesky(model, theta, p, l2=l2)
    return model, p, y, theta, factor


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_retrain_unlearning_equals_training_from_scratch(rng, name):
    model, p, y, theta, factor = _glm_setup(rng, name)
    grad_fn = ref.logistic_grad if name == "logistic" else ref.softmax_grad
    hess_fn = ref.logistic_hessian if name == "logistic" else ref.softmax_hessian
    for j in (0, 13):
        w = np.ones(len(y))
        w[j] = 0
        res = unlearning.unlearn_retrain(
            model, theta, p, y, jnp.asarray(w), l2=0.7, precond_factor=factor
        )
        scratch = ref.newton(
            lambda t, w=w: grad_fn(t, np.asarray(p), np.asarray(y), 0.7, w),
            lambda t, w=w: hess_fn(t, np.asarray(p), 0.7, w),
            np.zeros(theta.shape),
        )
        np.testing.assert_allclose(res.params, scratch, rtol=1e-9, atol=1e-11)
        assert res.grad_norm <= 1e-10


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_vmap_over_deletions_equals_python_loop(rng, name):
    model, p, y, theta, factor = _glm_setup(rng, name)
    masks = unlearning.deletion_masks(jnp.asarray([1, 5, 22]), len(y))

    def one(w):
        return unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.7, precond_factor=factor)

    batched = jax.vmap(one)(masks)
    for b in range(3):
        np.testing.assert_allclose(batched.params[b], one(masks[b]).params, rtol=1e-10, atol=1e-12)


def test_ridge_vmap_equals_loop(rng):
    p, y, theta, factor = _ridge_setup(rng)
    args = (jnp.asarray(theta), factor, jnp.asarray(p), jnp.asarray(y))
    dels = jnp.asarray([[3], [8], [21]])
    batched = jax.vmap(lambda d: unlearning.unlearn_ridge(*args, d, l2=0.5))(dels)
    for b in range(3):
        np.testing.assert_allclose(
            batched.params[b], unlearning.unlearn_ridge(*args, dels[b], l2=0.5).params, rtol=1e-12
        )


def test_no_recompilation_for_new_deletion_indices(rng):
    model, p, y, theta, factor = _glm_setup(rng, "logistic")
    traces = []

    @jax.jit
    def batch(deleted):
        traces.append(1)
        masks = unlearning.deletion_masks(deleted, p.shape[0])
        return jax.vmap(
            lambda w: unlearning.unlearn_retrain(
                model, theta, p, y, w, l2=0.7, precond_factor=factor
            )
        )(masks).params

    first = batch(jnp.asarray([0, 1, 2]))
    second = batch(jnp.asarray([30, 40, 50]))
    assert len(traces) == 1
    assert not np.allclose(first, second)


def test_deletion_masks():
    masks = unlearning.deletion_masks(jnp.asarray([[0, 2], [1, 1]]), 4)
    np.testing.assert_array_equal(masks, [[0, 1, 0, 1], [1, 0, 1, 1]])
    np.testing.assert_array_equal(unlearning.deletion_masks(jnp.asarray([3]), 4), [[1, 1, 1, 0]])


def test_unlearning_preserves_float32(rng):
    model, p, y, theta, _ = _glm_setup(rng, "logistic")
    p32, t32 = p.astype(jnp.float32), theta.astype(jnp.float32)
    factor = unlearning.hessian_cholesky(model, t32, p32, l2=0.7)
    w = unlearning.deletion_masks(jnp.asarray([3]), p.shape[0], jnp.float32)[0]
    res = unlearning.unlearn_retrain(model, t32, p32, y, w, l2=0.7, precond_factor=factor)
    assert res.params.dtype == jnp.float32
    assert res.grad_norm < ref.TOL[np.float32]["solve"]
