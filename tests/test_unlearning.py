"""Exact unlearning equals retraining from scratch (NumPy float64): ridge by Woodbury, Newton-CG
retraining, and the shared-system chord kernel (its iterates, lane compaction, early stops, dtypes,
one compilation).
"""

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


def test_glm_system_inverse_is_exact_and_needs_two_p_by_p_buffers(rng):
    """H⁺⁻¹ by two in-place triangular solves: the inverse to round-off, and under jit one
    [P, P] temporary (the Hessian, then its factor) besides the output, which the solves
    overwrite in place (the stacked Hessian and L⁻ᵀL⁻¹ kept three temporaries at this size,
    eight for MNIST softmax, P = 7,850, where each is 0.46 GiB)."""
    d, k, n = 30, 6, 50
    model = models.softmax_model(k)
    p = jnp.asarray(rng.normal(size=(n, d)))
    y = jnp.asarray(rng.integers(0, k, size=n), jnp.int32)
    theta = jnp.asarray(0.1 * rng.normal(size=(d, k)))
    system = unlearning.glm_system(model, theta, p, y, l2=L2)
    hess = models.dense_hessian(model, theta, p, l2=L2, weights=jnp.ones(n))
    tol = ref.TOL[np.float64]["exact"]
    np.testing.assert_allclose(
        system.inverse @ hess, np.eye(d * k), atol=tol * np.linalg.cond(np.asarray(hess))
    )
    compiled = (
        jax.jit(lambda t, f, lab: unlearning.glm_system(model, t, f, lab, l2=L2))
        .lower(theta, p, y)
        .compile()
    )
    memory = compiled.memory_analysis()
    if memory is None:
        pytest.skip("this backend reports no memory analysis")
    assert memory.temp_size_in_bytes < 1.5 * (d * k) ** 2 * 8


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


def _np_chord(name, p, y, theta, j, iterations):
    """θ_{t+1} = θ_t − H₋(θ⁺)⁻¹ ∇L₋(θ_t) from θ⁺ (the chord iteration, NumPy float64), and the
    passes it needs to reach the default tolerance."""
    w = np.ones(len(y))
    w[j] = 0
    grad = ref.logistic_grad if name == "logistic" else ref.softmax_grad
    hess = (ref.logistic_hessian if name == "logistic" else ref.softmax_hessian)(theta, p, L2, w)
    g0 = np.linalg.norm(grad(np.zeros_like(theta), p, y, L2, w))
    iterates, t, passes = [], theta, None
    for k in range(30):
        g = grad(t, p, y, L2, w)
        if passes is None and np.linalg.norm(g) / g0 <= 1e-12:
            passes = k + 1  # the pass that finds the norm small enough is counted too
        t = t - np.linalg.solve(hess, g.reshape(-1)).reshape(theta.shape)
        iterates.append(t)
    return iterates[:iterations], passes


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_chord_iterates_equal_numpy_with_the_retained_hessian(rng, name):
    """First step = θ⁺ − H₋⁻¹∇L₋(θ⁺) and second = the next chord step, both with the retained-data
    Hessian at θ⁺ (Woodbury from H⁺⁻¹), to 1e-10; and no more passes than NumPy's iteration.
    Using H⁺⁻¹ instead of H₋⁻¹ in any pass changes these iterates."""
    model, p, y, theta, _ = _glm_problem(rng, name)
    deleted = [6, 31]
    one = _unlearn(model, p, y, theta, deleted, max_passes=1)
    two = _unlearn(model, p, y, theta, deleted, max_passes=2)
    full = _unlearn(model, p, y, theta, deleted)
    for b, j in enumerate(deleted):
        (first, second), passes = _np_chord(name, p, y, theta, j, 2)
        np.testing.assert_allclose(one.params[b], first, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(two.params[b], second, rtol=1e-10, atol=1e-13)
        assert 2 <= int(full.steps[b]) <= passes + 1


def test_deleting_one_of_two_duplicates_is_exact(rng):
    x = rng.normal(size=(30, 3))
    x[7] = x[3]
    p = np.concatenate([x, np.ones((30, 1))], 1)
    y = (rng.normal(size=30) > 0).astype(np.int64)
    y[7] = y[3]
    model = models.logistic_model()
    P, Y = jnp.asarray(p), jnp.asarray(y)
    theta = ref.newton(
        lambda t: ref.logistic_grad(t, p, y, 1.0, np.ones(30)),
        lambda t: ref.logistic_hessian(t, p, 1.0, np.ones(30)),
        np.zeros(4),
    )
    w = np.ones(30)
    w[3] = 0
    factor = unlearning.hessian_cholesky(model, jnp.asarray(theta), P, l2=1.0)
    res = unlearning.unlearn_retrain(
        model, jnp.asarray(theta), P, Y, jnp.asarray(w), l2=1.0, precond_factor=factor
    )
    expected = ref.newton(
        lambda t: ref.logistic_grad(t, p, y, 1.0, w),
        lambda t: ref.logistic_hessian(t, p, 1.0, w),
        np.zeros(4),
    )
    np.testing.assert_allclose(res.params, expected, rtol=1e-10, atol=1e-12)
