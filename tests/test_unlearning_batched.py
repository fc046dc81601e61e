"""The shared-system kernels: ridge with an O(D²) check, GLM chord iterations with lane compaction.

Each is checked against NumPy float64 retraining from scratch, against itself one lane at a time
(compaction must not change any lane), and for honest reporting when it is stopped early.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import make_problem
from jaxrecon import models, solvers, unlearning

L2 = 0.7


def _glm_problem(rng, name, n=80, d=6, k=4):
    if name == "logistic":
        _, p, y = make_problem(rng, n=n, d=d, task="binary")
        model = models.logistic_model()
        grad, hess = ref.logistic_grad, lambda t, p_, w: ref.logistic_hessian(t, p_, L2, w)
        theta0 = np.zeros(d + 1)
    else:
        _, p, y = make_problem(rng, n=n, d=d, num_classes=k, task="multiclass")
        model = models.softmax_model(k)
        grad, hess = ref.softmax_grad, lambda t, p_, w: ref.softmax_hessian(t, p_, L2, w)
        theta0 = np.zeros((d + 1, k))

    def retrain(w):
        return ref.newton(lambda t: grad(t, p, y, L2, w), lambda t: hess(t, p, w), theta0)

    theta = retrain(np.ones(n))
    return model, p, y, theta, retrain


def _unlearn(model, p, y, theta, deleted, **kw):
    args = (jnp.asarray(theta), jnp.asarray(p), jnp.asarray(y, jnp.int32))
    system = unlearning.glm_system(model, args[0], args[1], args[2], l2=L2, **kw.pop("sys", {}))
    return unlearning.unlearn_glm(
        model, system, *args, jnp.asarray(deleted, jnp.int32), l2=L2, **kw
    )


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_chord_unlearning_equals_numpy_retraining(rng, name):
    model, p, y, theta, retrain = _glm_problem(rng, name)
    deleted = np.array([0, 5, 17, 33, 79])
    out = _unlearn(model, p, y, theta, deleted, block=2)
    for b, j in enumerate(deleted):
        w = np.ones(len(y))
        w[j] = 0
        np.testing.assert_allclose(out.params[b], retrain(w), rtol=1e-9, atol=1e-11)
        # The reported norm is the true relative gradient on the retained rows.
        g = (ref.logistic_grad if name == "logistic" else ref.softmax_grad)(
            np.asarray(out.params[b]), p, y, L2, w
        )
        g0 = (ref.logistic_grad if name == "logistic" else ref.softmax_grad)(
            np.zeros_like(theta), p, y, L2, w
        )
        np.testing.assert_allclose(
            out.grad_norm[b], np.linalg.norm(g) / np.linalg.norm(g0), rtol=1e-3, atol=1e-15
        )
    assert float(jnp.max(out.grad_norm)) <= solvers.default_tol(jnp.float64)
    assert int(jnp.min(out.steps)) >= 1


@pytest.mark.parametrize("block", [1, 3, 8])
def test_compaction_does_not_change_any_lane(rng, block):
    """A batch of B lanes in blocks of any size gives each lane what it gets alone."""
    model, p, y, theta, _ = _glm_problem(rng, "softmax", n=60)
    deleted = np.array([2, 9, 14, 30, 41, 42, 59])
    batch = _unlearn(model, p, y, theta, deleted, block=block)
    for b, j in enumerate(deleted):
        alone = _unlearn(model, p, y, theta, [j])
        np.testing.assert_allclose(batch.params[b], alone.params[0], rtol=1e-12, atol=1e-13)
        assert int(batch.steps[b]) == int(alone.steps[0])


def test_stopped_early_reports_its_gradient_norm(rng):
    model, p, y, theta, _ = _glm_problem(rng, "softmax")
    out = _unlearn(model, p, y, theta, [1, 2, 3], max_passes=1)
    assert np.all(np.asarray(out.steps) == 1)
    # One exact Newton step from θ⁺ is close, not round-off exact; the norm says so.
    assert float(jnp.max(out.grad_norm)) > 1e-12
    assert float(jnp.max(out.grad_norm)) < 1e-2


def test_float32_inverse_still_reaches_float64_tolerance(rng):
    model, p, y, theta, retrain = _glm_problem(rng, "logistic")
    out = _unlearn(model, p, y, theta, [4, 40], sys={"inverse_dtype": jnp.float32})
    assert float(jnp.max(out.grad_norm)) <= 1e-12
    w = np.ones(len(y))
    w[40] = 0
    np.testing.assert_allclose(out.params[1], retrain(w), rtol=1e-9, atol=1e-11)


def test_chord_respects_float32_inputs(rng):
    model, p, y, theta, _ = _glm_problem(rng, "logistic")
    out = _unlearn(model, p.astype(np.float32), y, theta.astype(np.float32), [3, 7])
    assert out.params.dtype == jnp.float32
    assert float(jnp.max(out.grad_norm)) <= solvers.default_tol(jnp.float32)


def test_chord_kernel_compiles_once_for_every_deleted_index(rng):
    model, p, y, theta, _ = _glm_problem(rng, "logistic")
    system = unlearning.glm_system(
        model, jnp.asarray(theta), jnp.asarray(p), jnp.asarray(y, jnp.int32), l2=L2
    )
    traces = []

    @jax.jit
    def kernel(deleted):
        traces.append(1)
        return unlearning.unlearn_glm(
            model, system, jnp.asarray(theta), jnp.asarray(p), jnp.asarray(y), deleted, l2=L2
        )

    for start in range(0, 40, 10):
        kernel(jnp.arange(start, start + 4))
    assert len(traces) == 1


def test_chord_rejects_grouped_deletions(rng):
    model, p, y, theta, _ = _glm_problem(rng, "logistic")
    with pytest.raises(ValueError, match="deleted must be"):
        _unlearn(model, p, y, theta, [[1, 2]])


@pytest.mark.parametrize("targets_k", [None, 3])
def test_ridge_system_matches_cholesky_path_and_full_check(rng, targets_k):
    _, p, y = make_problem(rng, n=50, d=5)
    if targets_k is not None:
        y = np.stack([y + i for i in range(targets_k)], axis=1)
    pj, yj = jnp.asarray(p), jnp.asarray(y)
    theta = jnp.asarray(np.linalg.solve(p.T @ p + L2 * np.eye(6), p.T @ y))
    system = unlearning.ridge_system(pj, yj, l2=L2)
    factor = unlearning.ridge_cholesky(pj, l2=L2)
    for deleted in ([3], [0, 49]):
        d = jnp.asarray(deleted)
        fast = unlearning.unlearn_ridge(theta, system, pj, yj, d, l2=L2)
        slow = unlearning.unlearn_ridge(theta, factor, pj, yj, d, l2=L2)
        keep = np.setdiff1d(np.arange(50), deleted)
        np.testing.assert_allclose(fast.params, ref.ridge_solve(p[keep], y[keep], L2), rtol=1e-10)
        np.testing.assert_allclose(fast.params, slow.params, rtol=1e-11, atol=1e-13)
        assert float(fast.grad_norm) < 1e-13 and float(slow.grad_norm) < 1e-13


def test_ridge_system_check_detects_a_wrong_answer(rng):
    """The O(D²) check is independent of the solve: a perturbed θ⁻ shows up in its norm."""
    _, p, y = make_problem(rng, n=50, d=5)
    pj, yj = jnp.asarray(p), jnp.asarray(y)
    theta = jnp.asarray(np.linalg.solve(p.T @ p + L2 * np.eye(6), p.T @ y))
    system = unlearning.ridge_system(pj, yj, l2=L2)
    bad = system._replace(inverse=system.inverse * (1 + 1e-3))
    res = unlearning.unlearn_ridge(theta, bad, pj, yj, jnp.asarray([7]), l2=L2)
    assert float(res.grad_norm) > 1e-8


@pytest.mark.parametrize("name,k", [("ridge", None), ("softmax", 3), ("svm", 3)])
def test_public_hessian_matrix_equals_matrix_free_products(rng, name, k):
    from jaxrecon import attacks

    task = "regression" if name == "ridge" else "multiclass"
    _, p, y = make_problem(rng, n=30, d=4, num_classes=k, task=task)
    model = models.make_model(name, k)
    theta = jnp.asarray(rng.normal(size=model.param_shape(5)))
    labels = None if name == "ridge" else jnp.asarray(y, jnp.int32)
    kw = {"n_train": 101, "l2": L2, "public_labels": labels if model.hessian_uses_labels else None}
    matrix = attacks.public_hessian_matrix(model, theta, jnp.asarray(p), **kw)
    free = attacks.public_hessian_matvec(model, theta, jnp.asarray(p), **kw)
    dense = attacks.dense_matvec(matrix)
    for _ in range(3):
        v = jnp.asarray(rng.normal(size=theta.shape))
        np.testing.assert_allclose(dense(v), free(v), rtol=1e-12, atol=1e-12)
