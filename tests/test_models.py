"""Model families: losses, gradients, Hessian-vector products and dense Hessians against NumPy
and autodiff; the squared-hinge SVM and one-hot ridge against scikit-learn and closed forms.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from sklearn.svm import LinearSVC

import reference as ref
from conftest import make_problem
from jaxrecon import models, solvers


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


def _stacked_hessian(features, curvatures, *, l2, param_shape):
    """The earlier construction of `hessian_from_curvatures` (K(K+1)/2 blocks stacked, plus a
    dense l2·I), which the in-place one must reproduce bit for bit."""
    size = int(np.prod(param_shape))
    dtype = features.dtype
    if jnp.ndim(l2) == 0:
        reg = l2 * jnp.eye(size, dtype=dtype)
    else:
        reg = jnp.diag(jnp.broadcast_to(l2, param_shape).reshape(-1).astype(dtype))
    if curvatures.ndim == 1:
        return models._gram(features, curvatures) + reg
    k = curvatures.shape[1]
    blocks = {
        (a, b): models._gram(features, curvatures[:, a, b]) for a in range(k) for b in range(a, k)
    }
    rows = [
        jnp.stack([blocks[a, b] if a <= b else blocks[b, a].T for b in range(k)], axis=2)
        for a in range(k)
    ]
    return jnp.stack(rows, axis=1).reshape(size, size) + reg


@pytest.mark.parametrize("name", ["logistic", "softmax"])
@pytest.mark.parametrize("per_coordinate", [False, True])
def test_hessian_from_curvatures_equals_stacked_blocks_exactly(rng, name, per_coordinate):
    model, p, y, theta = _model_and_data(rng, name)
    curv = models.curvature_matrices(model, theta, p)
    l2 = jnp.asarray(rng.uniform(0.1, 1, size=theta.shape)) if per_coordinate else 0.5
    for dtype in (jnp.float32, jnp.float64):
        args = (p.astype(dtype), curv.astype(dtype))
        for wrap in (lambda f: f, jax.jit):
            ours = wrap(
                lambda f, c: models.hessian_from_curvatures(f, c, l2=l2, param_shape=theta.shape)
            )(*args)
            old = wrap(lambda f, c: _stacked_hessian(f, c, l2=l2, param_shape=theta.shape))(*args)
            assert ours.dtype == old.dtype == dtype
            np.testing.assert_array_equal(ours, old)
    batched = jax.vmap(
        lambda c: models.hessian_from_curvatures(p, c, l2=l2, param_shape=theta.shape)
    )(jnp.stack([curv, 2 * curv]))
    np.testing.assert_array_equal(
        batched[1], models.hessian_from_curvatures(p, 2 * curv, l2=l2, param_shape=theta.shape)
    )


def test_dense_hessian_keeps_one_p_by_p_buffer(rng):
    """Under jit, building the [P, P] Hessian needs no second [P, P] buffer, nor half of one
    (the stacked construction kept about seven alive for MNIST softmax, 3.2 GB; here one)."""
    d, k, n = 30, 6, 50
    model = models.softmax_model(k)
    p = jnp.asarray(rng.normal(size=(n, d)))
    theta = jnp.asarray(0.1 * rng.normal(size=(d, k)))
    compiled = (
        jax.jit(lambda t, f: models.dense_hessian(model, t, f, l2=0.5, weights=jnp.ones(n)))
        .lower(theta, p)
        .compile()
    )
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < 0.5 * (d * k) ** 2 * 8


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


K = 3


# name -> (make_model args, task of make_problem, reference gradient, reference Hessian or None)
CASES = {
    "svm-binary": (("svm", None), "binary", ref.squared_hinge_grad, ref.squared_hinge_hessian),
    "svm-ovr": (("svm", K), "multiclass", ref.squared_hinge_grad, ref.squared_hinge_hessian),
    "ridge-onehot": (("ridge-onehot", K), "multiclass", ref.onehot_ridge_grad, None),
}


def _setup_case(rng, case, n=40, d=4):
    (name, k), task, _, _ = CASES[case]
    _, p, y = make_problem(rng, n=n, d=d, num_classes=K, task=task)
    model = models.make_model(name, k)
    theta = 0.5 * rng.normal(size=model.param_shape(p.shape[1]))
    return model, jnp.asarray(p), jnp.asarray(y), jnp.asarray(theta)


def test_registry_and_tasks():
    assert models.make_model("svm").task == models.BINARY
    assert models.make_model("svm", 2).num_outputs is None
    ovr = models.make_model("svm", 10)
    assert ovr.task == models.MULTICLASS and ovr.num_outputs == 10 and ovr.hessian_uses_labels
    onehot = models.make_model("ridge-onehot", 4)
    assert onehot.task == models.MULTICLASS and not onehot.hessian_uses_labels
    with pytest.raises(ValueError, match="needs num_classes"):
        models.make_model("ridge-onehot")
    with pytest.raises(ValueError, match="num_classes"):
        models.svm_model(1)


@pytest.mark.parametrize("case", sorted(CASES))
def test_gradient_matches_numpy_and_autodiff(rng, case):
    model, p, y, theta = _setup_case(rng, case)
    w = jnp.asarray(rng.integers(0, 2, size=len(y)), p.dtype)
    ours = models.gradient(model, theta, p, y, l2=0.7, weights=w)
    ref_grad = CASES[case][2]
    np.testing.assert_allclose(
        ours, ref_grad(*(np.asarray(a) for a in (theta, p, y)), 0.7, np.asarray(w)), rtol=1e-12
    )
    auto = jax.grad(lambda t: models.objective(model, t, p, y, l2=0.7, weights=w))(theta)
    np.testing.assert_allclose(ours, auto, rtol=1e-12, atol=1e-12)
    check_grads(lambda t: models.loss(model, t, p[0], y[0]), (theta,), order=1, modes=["rev"])


@pytest.mark.parametrize("case", sorted(CASES))
def test_hvp_equals_dense_hessian_for_svm_and_onehot(rng, case):
    model, p, y, theta = _setup_case(rng, case)
    w = jnp.asarray(rng.uniform(size=len(y)), p.dtype)
    v = jnp.asarray(rng.normal(size=theta.shape))
    # Away from the hinge's kink (probability one for random θ), autodiff's Hessian is ℓ''.
    hess = jax.hessian(lambda t: models.objective(model, t, p, y, l2=0.0, weights=w))(theta)
    expected = hess.reshape(theta.size, theta.size) @ v.reshape(-1)
    ours = models.hvp(model, theta, p, w, v, y).reshape(-1)
    np.testing.assert_allclose(ours, expected, rtol=1e-11, atol=1e-11)
    ref_hess = CASES[case][3]
    if ref_hess is not None:
        dense = models.dense_hessian(model, theta, p, l2=0.5, weights=w, labels=y)
        np.testing.assert_allclose(
            dense,
            ref_hess(*(np.asarray(a) for a in (theta, p, y)), 0.5, np.asarray(w)),
            rtol=1e-11,
            atol=1e-12,
        )


def test_svm_hessian_needs_labels(rng):
    model, p, y, theta = _setup_case(rng, "svm-ovr")
    with pytest.raises(ValueError, match="labels"):
        models.hvp(model, theta, p, jnp.ones(len(y)), theta)
    with pytest.raises(ValueError, match="labels"):
        models.dense_hessian(model, theta, p, l2=1.0, weights=jnp.ones(len(y)))


@pytest.mark.parametrize("case", ["svm-binary", "svm-ovr"])
def test_newton_svm_matches_liblinear(rng, case):
    """Σ max(0, 1 − s z)² + (λ/2)‖θ‖² is LinearSVC(squared hinge, C = 1/λ), no intercept."""
    model, p, y, _ = _setup_case(rng, case, n=80)
    fit = solvers.fit_newton(model, p, y, l2=0.5, weights=jnp.ones(80))
    assert fit.grad_norm < 1e-10
    sk = LinearSVC(C=2.0, loss="squared_hinge", fit_intercept=False, tol=1e-12, max_iter=100_000)
    sk.fit(np.asarray(p), np.asarray(y))
    expected = sk.coef_[0] if case == "svm-binary" else sk.coef_.T
    np.testing.assert_allclose(fit.params, expected, rtol=1e-5, atol=1e-6)


def test_onehot_ridge_newton_equals_closed_form(rng):
    model, p, y, _ = _setup_case(rng, "ridge-onehot")
    newton = solvers.fit_newton(model, p, y, l2=0.3, weights=jnp.ones(len(y)))
    closed = solvers.fit_ridge(p, jax.nn.one_hot(y, K, dtype=p.dtype), l2=0.3, weights=jnp.ones(40))
    np.testing.assert_allclose(newton.params, closed.params, rtol=1e-10, atol=1e-12)
    assert int(newton.steps) == 1


@pytest.mark.parametrize("case", sorted(CASES))
def test_label_rule_recovers_label_from_exact_gradient(rng, case):
    """label_from_gradient(z, ℓ'(z, y)) == y for random outputs, including margins already met."""
    model, *_ = _setup_case(rng, case)
    shape = () if model.num_outputs is None else (K,)
    for _ in range(30):
        z = jnp.asarray(3 * rng.normal(size=shape))
        y = int(rng.integers(0, 2 if model.num_outputs is None else K))
        q = model.dloss_z(z, jnp.asarray(y))
        assert int(model.label_from_gradient(z, q)) == y


@pytest.mark.parametrize("case", sorted(CASES))
def test_jit_vmap_dtype(rng, case):
    model, p, y, theta = _setup_case(rng, case)
    for dtype in (jnp.float32, jnp.float64):
        t, f, w = theta.astype(dtype), p.astype(dtype), jnp.ones(len(y), dtype)
        eager = models.gradient(model, t, f, y, l2=0.5, weights=w)
        jitted = jax.jit(lambda t, f, y, w: models.gradient(model, t, f, y, l2=0.5, weights=w))(
            t, f, y, w
        )
        assert eager.dtype == dtype and jitted.dtype == dtype
        assert models.hvp(model, t, f, w, t, y).dtype == dtype
        tol = ref.TOL[np.dtype(dtype).type]["exact"]
        np.testing.assert_allclose(eager, jitted, rtol=tol, atol=tol * np.abs(eager).max())
    batched = jax.vmap(lambda f, yy: models.per_example_grad(model, theta, f, yy))(p[:4], y[:4])
    for i in range(4):
        np.testing.assert_allclose(
            batched[i], models.per_example_grad(model, theta, p[i], y[i]), rtol=1e-12
        )
