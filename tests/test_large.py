"""The large-parameter path: Newton-CG on Hessian-vector products, preconditioned by Kronecker
factors (`unlearning.hessian_kfac`) or a Nyström sketch."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_problem
from jaxrecon import features, models, solvers, unlearning

# One compilation instead of op-by-op dispatch of the QR/SVD/Cholesky in eager mode.
_nystrom = jax.jit(unlearning.hessian_nystrom, static_argnums=(1,), static_argnames=("rank",))


def _setup(rng, name, n=60, d=4, k=3, l2=0.7):
    task = "binary" if k is None else "multiclass"
    _, p, y = make_problem(rng, n=n, d=d, num_classes=k, task=task)
    model = models.make_model(name, k)
    p, y = jnp.asarray(p), jnp.asarray(y)
    theta = solvers.fit_newton(model, p, y, l2=l2, weights=jnp.ones(n)).params
    return model, p, y, theta


def test_full_rank_nystrom_is_exact_and_solves_in_one_cg_step(rng):
    a = rng.normal(size=(12, 12))
    a = a @ a.T
    like = jnp.zeros((4, 3))
    pre = solvers.nystrom_preconditioner(
        jax.random.key(0),
        lambda v: (jnp.asarray(a) @ v.reshape(-1)).reshape(v.shape),
        like,
        rank=12,
        shift=0.5,
    )
    u = np.asarray(pre.basis).reshape(12, 12)
    np.testing.assert_allclose(u.T @ np.diag(pre.eigvals) @ u, a, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(np.sort(pre.eigvals), np.linalg.eigvalsh(a), rtol=1e-8, atol=1e-8)
    # M⁻¹(A + μI) = (λ_r + μ)I, so preconditioned CG finishes in one step.
    b = jnp.asarray(rng.normal(size=(4, 3)))
    matvec = lambda v: (jnp.asarray(a) @ v.reshape(-1)).reshape(v.shape) + 0.5 * v  # noqa: E731
    x, steps = solvers._cg(
        matvec, b, precond=functools.partial(solvers.apply_nystrom, pre), tol=1e-12, max_steps=50
    )
    assert int(steps) <= 2
    np.testing.assert_allclose(
        x.reshape(-1), np.linalg.solve(a + 0.5 * np.eye(12), np.asarray(b).reshape(-1)), rtol=1e-9
    )


@pytest.mark.parametrize("name", ["softmax", "svm"])
def test_newton_cg_unlearning_equals_dense_newton(rng, name):
    """Nyström-preconditioned Newton-CG (no [P, P] matrix) lands on the dense-Newton optimum."""
    model, p, y, theta = _setup(rng, name)
    pre = _nystrom(jax.random.key(1), model, theta, p, l2=0.7, rank=5, labels=y)

    @jax.jit
    def both(w):
        res = unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.7, preconditioner=pre)
        return res, solvers.fit_newton(model, p, y, l2=0.7, weights=w, linear_solver="dense")

    for j in (0, 17):
        res, dense = both(unlearning.deletion_masks(jnp.asarray([j]), len(y))[0])
        np.testing.assert_allclose(res.params, dense.params, rtol=1e-9, atol=1e-11)
        assert res.grad_norm <= 1e-10 and int(res.cg_steps) > 0


def test_nystrom_unlearning_vmaps_and_compiles_once(rng):
    model, p, y, theta = _setup(rng, "softmax")
    pre = _nystrom(jax.random.key(2), model, theta, p, l2=0.7, rank=4)
    traces = []

    @jax.jit
    def batch(deleted, pre):
        traces.append(1)
        masks = unlearning.deletion_masks(deleted, p.shape[0])
        return jax.vmap(
            lambda w: unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.7, preconditioner=pre)
        )(masks)

    first = batch(jnp.asarray([1, 5, 22]), pre)
    batch(jnp.asarray([30, 40, 50]), pre)
    assert len(traces) == 1
    one = jax.jit(
        lambda w: unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.7, preconditioner=pre)
    )
    for b, j in enumerate((1, 5, 22)):
        w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0])[0]
        np.testing.assert_allclose(first.params[b], one(w).params, rtol=1e-10, atol=1e-12)


def test_nystrom_cuts_cg_steps_on_fourier_features(rng):
    """RFF softmax, P = 97 x 4: exact unlearning with fewer Hessian-vector products."""
    model, p, y, theta = _rff_softmax(rng)
    n = len(y)
    pre = jax.jit(
        lambda t: unlearning.hessian_nystrom(jax.random.key(1), model, t, p, l2=1.0, rank=30)
    )(theta)
    masks = unlearning.deletion_masks(jnp.asarray([3, 100]), n)

    @jax.jit
    def run(pre):
        return jax.vmap(
            lambda w: unlearning.unlearn_retrain(
                model, theta, p, y, w, l2=1.0, preconditioner=pre, cg_max_steps=300
            )
        )(masks)

    plain, fast = run(None), run(pre)
    assert float(jnp.max(fast.grad_norm)) <= 1e-8 and float(jnp.max(plain.grad_norm)) <= 1e-8
    np.testing.assert_allclose(fast.params, plain.params, rtol=1e-7, atol=1e-9)
    assert 1.5 * float(jnp.sum(fast.cg_steps)) < float(jnp.sum(plain.cg_steps))


def test_preconditioner_errors_and_dtype(rng):
    model, p, y, theta = _setup(rng, "logistic", k=None)
    pre = _nystrom(jax.random.key(0), model, theta, p, l2=0.7, rank=2)
    factor = unlearning.hessian_cholesky(model, theta, p, l2=0.7)
    w = jnp.ones(len(y)).at[0].set(0)
    with pytest.raises(ValueError, match="at most one"):
        unlearning.unlearn_retrain(
            model, theta, p, y, w, l2=0.7, precond_factor=factor, preconditioner=pre
        )
    with pytest.raises(ValueError, match="rank"):
        unlearning.hessian_nystrom(jax.random.key(0), model, theta, p, l2=0.7, rank=6)
    with pytest.raises(ValueError, match="labels"):
        unlearning.hessian_nystrom(jax.random.key(0), models.svm_model(), theta, p, l2=0.7, rank=2)
    p32, t32 = p.astype(jnp.float32), theta.astype(jnp.float32)
    pre32 = _nystrom(jax.random.key(0), model, t32, p32, l2=0.7, rank=2)
    res = jax.jit(
        lambda w: unlearning.unlearn_retrain(model, t32, p32, y, w, l2=0.7, preconditioner=pre32)
    )(w.astype(jnp.float32))
    assert res.params.dtype == jnp.float32 and pre32.basis.dtype == jnp.float32
    assert res.grad_norm < 1e-3


# --- Kronecker-factored preconditioner ----------------------------------------------------------

_kfac = jax.jit(unlearning.hessian_kfac, static_argnums=(0,), static_argnames=("basis_dtype",))


def test_kronecker_preconditioner_is_the_exact_inverse_of_a_kron_c_plus_shift(rng):
    """M⁻¹v against NumPy's solve with the explicit [P, P] matrix np.kron(A, C) + μI."""
    d, k, mu = 7, 4, 0.3
    a = rng.normal(size=(d, d + 3))
    c = rng.normal(size=(k, k))
    a_fac, c_fac = a @ a.T, c @ c.T
    pre = solvers.kronecker_preconditioner(jnp.asarray(a_fac), jnp.asarray(c_fac), shift=mu)
    v = rng.normal(size=(d, k))
    # θ [D, K] flattens row-major, index (x, a) -> x·K + a: the matrix is A ⊗ C.
    expected = np.linalg.solve(np.kron(a_fac, c_fac) + mu * np.eye(d * k), v.reshape(-1))
    got = solvers.apply_kronecker(pre, jnp.asarray(v))
    np.testing.assert_allclose(np.asarray(got).reshape(-1), expected, rtol=1e-10, atol=1e-12)
    vec = rng.normal(size=d)  # scalar-output parameters [D] with a 1 x 1 output factor
    pre1 = solvers.kronecker_preconditioner(jnp.asarray(a_fac), jnp.ones((1, 1)), shift=mu)
    np.testing.assert_allclose(
        solvers.apply_kronecker(pre1, jnp.asarray(vec)),
        np.linalg.solve(a_fac + mu * np.eye(d), vec),
        rtol=1e-10,
    )


@pytest.mark.parametrize("name, k", [("logistic", None), ("softmax", 3)])
def test_kfac_is_the_hessian_where_it_should_be(rng, name, k):
    """Logistic (K = 1): A ⊗ C is the data term exactly. Softmax at θ = 0: every C_i is equal,
    so A ⊗ C is again exact. Both: M⁻¹H = I, checked against the dense Hessian."""
    model, p, y, theta = _setup(rng, name, k=k)
    if name == "softmax":
        theta = jnp.zeros_like(theta)
    pre = _kfac(model, theta, p, l2=0.7)
    hess = np.asarray(models.dense_hessian(model, theta, p, l2=0.7, weights=jnp.ones(len(y))))
    size = hess.shape[0]
    cols = jax.vmap(lambda e: solvers.apply_kronecker(pre, e.reshape(theta.shape)).reshape(-1))(
        jnp.eye(size)
    )
    np.testing.assert_allclose(np.asarray(cols) @ hess, np.eye(size), atol=1e-10)


def test_kfac_unlearning_is_exact_and_cuts_cg_steps_on_fourier_features(rng):
    """RFF softmax, P = 97 x 4: θ⁻ equals dense Newton retraining (float64 closed-form solves),
    with fewer Hessian-vector products than unpreconditioned CG; vmap equals the loop."""
    model, p, y, theta = _rff_softmax(rng)
    n = len(y)
    pre = _kfac(model, theta, p, l2=1.0)
    deleted = jnp.asarray([3, 100, 149])
    masks = unlearning.deletion_masks(deleted, n)

    def one(w, pre):
        return unlearning.unlearn_retrain(
            model, theta, p, y, w, l2=1.0, preconditioner=pre, cg_max_steps=300, tol=1e-10
        )

    batch = jax.jit(jax.vmap(one, in_axes=(0, None)))
    plain, fast = batch(masks, None), batch(masks, pre)
    assert float(jnp.max(fast.grad_norm)) <= 1e-10
    single = jax.jit(one)
    for b in range(len(deleted)):
        dense = solvers.fit_newton(model, p, y, l2=1.0, weights=masks[b], linear_solver="dense")
        np.testing.assert_allclose(fast.params[b], dense.params, rtol=1e-8, atol=1e-10)
        np.testing.assert_allclose(fast.params[b], single(masks[b], pre).params, atol=1e-12)
    assert 1.5 * float(jnp.sum(fast.cg_steps)) < float(jnp.sum(plain.cg_steps))


def test_kfac_float32_basis_keeps_theta_exact(rng):
    """The eigenbasis in float32 is only a preconditioner: θ⁻ stays exact in float64."""
    model, p, y, theta = _setup(rng, "softmax", n=80, d=5, k=3)
    pre32 = _kfac(model, theta, p, l2=0.7, basis_dtype=jnp.float32)
    assert pre32.in_basis.dtype == jnp.float32 and pre32.in_eigvals.dtype == jnp.float64
    w = unlearning.deletion_masks(jnp.asarray([11]), len(y))[0]
    res = jax.jit(
        lambda w: unlearning.unlearn_retrain(
            model, theta, p, y, w, l2=0.7, preconditioner=pre32, tol=1e-12
        )
    )(w)
    dense = solvers.fit_newton(model, p, y, l2=0.7, weights=w, linear_solver="dense")
    assert res.params.dtype == jnp.float64 and float(res.grad_norm) <= 1e-12
    np.testing.assert_allclose(res.params, dense.params, rtol=1e-9, atol=1e-11)


def test_preconditioner_fn_names_a_wrong_type():
    with pytest.raises(TypeError, match="preconditioner must be"):
        solvers.preconditioner_fn(jnp.ones(3))


def _rff_softmax(rng, n=150, k=4, width=96):
    x = rng.uniform(size=(n, 6))
    y = jnp.asarray(np.argmax(x[:, :k] + 0.3 * rng.normal(size=(n, k)), axis=1))
    fmap = features.rff_features(jax.random.key(0), 6, width, 1.0)
    p = fmap.apply(jnp.asarray(x))
    model = models.softmax_model(k)
    theta = solvers.fit_newton(model, p, y, l2=1.0, weights=jnp.ones(n)).params
    return model, p, y, theta


@pytest.mark.parametrize("name", ["softmax", "logistic"])
def test_chord_kfac_equals_dense_retraining_and_the_dense_chord_kernel(rng, name):
    """`unlearn_glm_kfac` (no [P, P] matrix) against dense Newton retraining on the retained
    rows (float64 Cholesky solves) and against `unlearn_glm` (explicit H⁺⁻¹): same θ⁻."""
    if name == "softmax":
        model, p, y, theta = _rff_softmax(rng)
    else:
        model, p, y, theta = _setup(rng, "logistic", n=120, d=9, k=None)
    deleted = jnp.asarray([0, 3, 77, 100, 119])
    system = jax.jit(unlearning.kfac_system, static_argnums=(0,))(model, theta, p, y, l2=1.0)
    run = jax.jit(
        lambda s, d: unlearning.unlearn_glm_kfac(model, s, theta, p, y, d, l2=1.0, tol=1e-12)
    )
    res = run(system, deleted)
    assert res.params.shape == (len(deleted),) + theta.shape
    assert float(jnp.max(res.grad_norm)) <= 1e-12 and int(jnp.min(res.steps)) >= 1
    assert int(jnp.min(res.cg_steps)) >= 1
    dense_system = unlearning.glm_system(model, theta, p, y, l2=1.0)
    chord = unlearning.unlearn_glm(model, dense_system, theta, p, y, deleted, l2=1.0, tol=1e-12)
    np.testing.assert_allclose(res.params, chord.params, rtol=1e-9, atol=1e-11)
    for b, j in enumerate(np.asarray(deleted)):
        w = unlearning.deletion_masks(jnp.asarray([j]), len(y))[0]
        dense = solvers.fit_newton(model, p, y, l2=1.0, weights=w, linear_solver="dense")
        np.testing.assert_allclose(res.params[b], dense.params, rtol=1e-9, atol=1e-11)
        assert float(res.grad_norm[b]) == pytest.approx(
            float(solvers.relative_grad_norm(model, res.params[b], p, y, l2=1.0, weights=w)),
            rel=1e-6,
            abs=1e-15,
        )


def test_chord_kfac_blocks_give_the_same_answer(rng):
    """Lane compaction: any block size, the same θ⁻ as one lane at a time (bit-level close)."""
    model, p, y, theta = _rff_softmax(rng, n=100, width=48)
    system = unlearning.kfac_system(model, theta, p, y, l2=1.0)
    deleted = jnp.asarray([5, 9, 40, 41, 99, 60, 2])
    outs = [
        unlearning.unlearn_glm_kfac(model, system, theta, p, y, deleted, l2=1.0, block=b)
        for b in (1, 3, 7)
    ]
    for other in outs[1:]:
        np.testing.assert_allclose(other.params, outs[0].params, rtol=1e-10, atol=1e-12)
        np.testing.assert_array_equal(other.steps, outs[0].steps)
    with pytest.raises(ValueError, match="deleted must be"):
        unlearning.unlearn_glm_kfac(model, system, theta, p, y, deleted[None], l2=1.0)


def test_chord_kfac_reports_a_lane_stopped_by_the_pass_cap(rng):
    model, p, y, theta = _rff_softmax(rng, n=100, width=48)
    system = unlearning.kfac_system(model, theta, p, y, l2=1.0)
    res = unlearning.unlearn_glm_kfac(
        model, system, theta, p, y, jnp.asarray([4, 8]), l2=1.0, tol=1e-15, max_passes=1
    )
    np.testing.assert_array_equal(res.steps, [1, 1])
    assert float(jnp.min(res.grad_norm)) > 1e-15  # reported, never hidden


def test_chord_kfac_solves_in_float32_and_stays_exact_in_float64(rng):
    """Mixed precision: a float32 eigenbasis puts the CG solves (and a copy of the features) in
    float32; every pass re-checks the gradient in float64, so θ⁻ is still exact."""
    model, p, y, theta = _rff_softmax(rng, n=120, width=64)
    deleted = jnp.asarray([1, 50, 119])
    l2 = jnp.asarray(1.0)  # a float64 array, as scenarios hold it
    low = unlearning.kfac_system(model, theta, p, y, l2=l2, basis_dtype=jnp.float32)
    assert low.solve_features.dtype == jnp.float32 and low.solve_features_t.shape == p.T.shape
    full = unlearning.kfac_system(model, theta, p, y, l2=1.0)
    assert full.solve_features is None
    res = [
        unlearning.unlearn_glm_kfac(model, s, theta, p, y, deleted, l2=l2, tol=1e-12)
        for s in (low, full)
    ]
    assert res[0].params.dtype == jnp.float64
    assert float(jnp.max(res[0].grad_norm)) <= 1e-12
    np.testing.assert_allclose(res[0].params, res[1].params, rtol=1e-9, atol=1e-11)


# --- Spectral correction of the Kronecker preconditioner ------------------------------------


def _sqrtm_inv(m):
    w, q = np.linalg.eigh(m)
    return q @ np.diag(w**-0.5) @ q.T


def test_spectral_correction_is_the_dense_formula_and_maps_the_far_ritz_values_to_one(rng):
    """With a complete Krylov space (block·steps = P) the Ritz pairs are S = M^-½HM^-½'s exact
    eigenpairs: M_c⁻¹ equals M^-½(I + U(Θ⁻¹ − I)Uᵀ)M^-½ built with NumPy from the r eigenvalues
    farthest from 1 (|log θ|), and M_c⁻¹H has those eigenvalues at 1, the rest unchanged."""
    d, k, mu, rank = 7, 4, 0.3, 5
    a, c = rng.normal(size=(d, d + 3)), rng.normal(size=(k, k))
    a_fac, c_fac = a @ a.T, c @ c.T + np.eye(k)
    pre = solvers.kronecker_preconditioner(jnp.asarray(a_fac), jnp.asarray(c_fac), shift=mu)
    m = np.kron(a_fac, c_fac) + mu * np.eye(d * k)
    g = rng.normal(size=(d * k, 3 * d * k))
    h = m + 0.5 * (g @ g.T) / (d * k)  # H = M + a PSD error: S's spectrum spreads above 1
    like = jnp.zeros((d, k))
    matvec = lambda v: (jnp.asarray(h) @ v.reshape(-1)).reshape(v.shape)  # noqa: E731
    fixed = jax.jit(
        lambda p: solvers.deflate_kronecker(
            jax.random.key(0), p, matvec, like, rank=rank, block=7, steps=4
        )
    )(pre)
    assert fixed.correction_basis.shape == (rank, d, k)
    half = _sqrtm_inv(m)
    theta, u = np.linalg.eigh(half @ h @ half)
    far = np.argsort(-np.abs(np.log(theta)))[:rank]
    expected = half @ (np.eye(d * k) + u[:, far] @ np.diag(1 / theta[far] - 1) @ u[:, far].T) @ half
    got = jax.vmap(lambda e: solvers.apply_kronecker(fixed, e.reshape(d, k)).reshape(-1))(
        jnp.eye(d * k)
    )
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-8, atol=1e-10)
    spectrum = np.sort(np.linalg.eigvals(np.asarray(got) @ h).real)
    kept = np.delete(theta, far)
    np.testing.assert_allclose(spectrum, np.sort(np.r_[np.ones(rank), kept]), rtol=1e-8)
    # Without a correction the same preconditioner is plain M⁻¹.
    plain = jax.vmap(lambda e: solvers.apply_kronecker(pre, e.reshape(d, k)).reshape(-1))(
        jnp.eye(d * k)
    )
    np.testing.assert_allclose(np.asarray(plain), np.linalg.inv(m), rtol=1e-9, atol=1e-11)


def test_spectral_correction_names_bad_sizes():
    pre = solvers.kronecker_preconditioner(jnp.eye(3), jnp.eye(2), shift=1.0)
    like = jnp.zeros((3, 2))
    with pytest.raises(ValueError, match="rank must be <= block·steps = 4"):
        solvers.deflate_kronecker(
            jax.random.key(0), pre, lambda v: v, like, rank=5, block=2, steps=2
        )
    with pytest.raises(ValueError, match="parameter count 6"):
        solvers.deflate_kronecker(
            jax.random.key(0), pre, lambda v: v, like, rank=1, block=4, steps=2
        )
    with pytest.raises(ValueError, match="block"):
        solvers.deflate_kronecker(jax.random.key(0), pre, lambda v: v, like, rank=1, block=0)


@pytest.mark.parametrize("basis_dtype", [None, jnp.float32])
def test_chord_kfac_spectral_correction_cuts_cg_and_keeps_theta(rng, basis_dtype):
    """`kfac_system(key=...)`: the corrected preconditioner needs fewer CG steps for the same θ⁻
    (float64 gradient check either way; float32 basis: the correction is float32 too)."""
    model, p, y, theta = _rff_softmax(rng)
    deleted = jnp.asarray([0, 3, 77, 100, 149])
    build = jax.jit(
        lambda key: unlearning.kfac_system(
            model, theta, p, y, l2=1.0, basis_dtype=basis_dtype, key=key
        )
    )
    plain = unlearning.kfac_system(model, theta, p, y, l2=1.0, basis_dtype=basis_dtype)
    fixed = build(jax.random.key(3))
    assert plain.precond.correction_basis is None
    assert fixed.precond.correction_basis.shape == (unlearning.CORRECTION_RANK,) + theta.shape
    assert fixed.precond.correction_basis.dtype == (basis_dtype or jnp.float64)
    run = jax.jit(
        lambda s: unlearning.unlearn_glm_kfac(model, s, theta, p, y, deleted, l2=1.0, tol=1e-12)
    )
    before, after = run(plain), run(fixed)
    assert float(jnp.max(after.grad_norm)) <= 1e-12
    np.testing.assert_allclose(after.params, before.params, rtol=1e-9, atol=1e-11)
    assert 1.3 * float(jnp.sum(after.cg_steps)) < float(jnp.sum(before.cg_steps))
    with pytest.raises(ValueError, match="correction_rank"):
        unlearning.kfac_system(
            model, theta, p, y, l2=1.0, key=jax.random.key(0), correction_rank=-1
        )
