"""Model kernels against NumPy float64 references: gradients, HVPs, dense Hessians."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import reference as ref
from conftest import make_problem
from jaxrecon import models


def _model_and_data(rng, name):
    task = {"ridge": "regression", "logistic": "binary", "softmax": "multiclass"}[name]
    _, p, y = make_problem(rng, n=40, d=4, num_classes=3, task=task)
    model = models.make_model(name, 3)
    theta = 0.3 * rng.normal(size=model.param_shape(p.shape[1]))
    return model, jnp.asarray(p), jnp.asarray(y), jnp.asarray(theta)


@pytest.mark.parametrize("name", ["ridge", "logistic", "softmax"])
def test_gradient_matches_autodiff_of_objective(rng, name):
    model, p, y, theta = _model_and_data(rng, name)
    w = jnp.asarray(rng.integers(0, 2, size=len(y)), p.dtype)
    auto = jax.grad(lambda t: models.objective(model, t, p, y, l2=0.7, weights=w))(theta)
    np.testing.assert_allclose(
        models.gradient(model, theta, p, y, l2=0.7, weights=w), auto, rtol=1e-12, atol=1e-12
    )


def test_gradients_match_numpy_reference(rng):
    for name, ref_grad in (("logistic", ref.logistic_grad), ("softmax", ref.softmax_grad)):
        model, p, y, theta = _model_and_data(rng, name)
        w = np.ones(len(y))
        np.testing.assert_allclose(
            models.gradient(model, theta, p, y, l2=0.5, weights=jnp.asarray(w)),
            ref_grad(np.asarray(theta), np.asarray(p), np.asarray(y), 0.5, w),
            rtol=1e-12,
        )


@pytest.mark.parametrize("name", ["ridge", "logistic", "softmax"])
def test_hvp_equals_dense_hessian_times_vector(rng, name):
    model, p, y, theta = _model_and_data(rng, name)
    w = jnp.asarray(rng.uniform(size=len(y)), p.dtype)
    v = jnp.asarray(rng.normal(size=theta.shape))
    hess = jax.hessian(lambda t: models.objective(model, t, p, y, l2=0.0, weights=w))(theta)
    dense = hess.reshape(theta.size, theta.size) @ v.reshape(-1)
    np.testing.assert_allclose(
        models.hvp(model, theta, p, w, v).reshape(-1), dense, rtol=1e-11, atol=1e-11
    )


def test_dense_hessian_matches_numpy_reference(rng):
    model, p, y, theta = _model_and_data(rng, "softmax")
    w = np.ones(len(y))
    ours = models.dense_hessian(model, theta, p, l2=0.5, weights=jnp.asarray(w))
    np.testing.assert_allclose(
        ours, ref.softmax_hessian(np.asarray(theta), np.asarray(p), 0.5, w), rtol=1e-11, atol=1e-12
    )
    model, p, y, theta = _model_and_data(rng, "logistic")
    ours = models.dense_hessian(model, theta, p, l2=0.5, weights=jnp.asarray(w))
    np.testing.assert_allclose(
        ours, ref.logistic_hessian(np.asarray(theta), np.asarray(p), 0.5, w), rtol=1e-11, atol=1e-12
    )


@pytest.mark.parametrize("name", ["ridge", "logistic", "softmax"])
def test_per_example_loss_gradients_check(rng, name):
    model, p, y, theta = _model_and_data(rng, name)
    check_grads(lambda t: models.loss(model, t, p[0], y[0]), (theta,), order=2, modes=["rev"])
    np.testing.assert_allclose(
        models.per_example_grad(model, theta, p[0], y[0]),
        jax.grad(lambda t: models.loss(model, t, p[0], y[0]))(theta),
        rtol=1e-12,
        atol=1e-14,
    )


@pytest.mark.parametrize("name", ["ridge", "logistic", "softmax"])
def test_jit_equals_eager_and_dtype_preserved(rng, name):
    model, p, y, theta = _model_and_data(rng, name)
    w = jnp.ones(len(y))
    for dtype in (jnp.float32, jnp.float64):
        args = (theta.astype(dtype), p.astype(dtype), y if name != "ridge" else y.astype(dtype))
        eager = models.gradient(model, *args, l2=0.5, weights=w.astype(dtype))
        jitted = jax.jit(lambda t, f, yy, ww: models.gradient(model, t, f, yy, l2=0.5, weights=ww))(
            *args, w.astype(dtype)
        )
        assert eager.dtype == dtype and jitted.dtype == dtype
        tol = ref.TOL[np.dtype(dtype).type]["exact"]
        np.testing.assert_allclose(eager, jitted, rtol=tol, atol=tol * np.abs(eager).max())


def test_make_model_rejects_unknown_names():
    with pytest.raises(ValueError, match="model must be one of"):
        models.make_model("svm-rbf")
    with pytest.raises(ValueError, match="num_classes"):
        models.softmax_model(1)
