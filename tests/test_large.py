"""The large-parameter path: Newton-CG on Hessian-vector products with a Nyström preconditioner."""

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
    n, k = 150, 4
    x = rng.uniform(size=(n, 6))
    y = jnp.asarray(np.argmax(x[:, :k] + 0.3 * rng.normal(size=(n, k)), axis=1))
    fmap = features.rff_features(jax.random.key(0), 6, 96, 1.0)
    p = fmap.apply(jnp.asarray(x))
    model = models.softmax_model(k)
    theta = solvers.fit_newton(model, p, y, l2=1.0, weights=jnp.ones(n)).params
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
