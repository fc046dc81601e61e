"""Exact unlearning: the parameters θ⁻ the operator publishes after deleting samples (DESIGN §3.5).

Every function here handles ONE deletion (a set of positions, or a 0/1 weight mask) and is pure,
so the caller vmaps it over a batch of B deletions and jits the result once; the compiled kernel
then serves every deleted index without recompiling.

- Ridge: no retraining. With one Cholesky factor of H = PᵀP + l2·I shared by all deletions, the
  Woodbury identity gives θ⁻ exactly in O(D²k + k³) per deletion of k samples (k = 1 is
  Sherman–Morrison): θ⁻ = θ⁺ + U (I − P_S U)⁻¹ r_S, U = H⁻¹P_Sᵀ, r_S = P_S θ⁺ − y_S.
- Logistic / softmax / SVM / one-hot ridge: retraining to convergence on the weight mask,
  warm-started at θ⁺ (Newton; the Newton systems are solved by conjugate gradients preconditioned
  by something built once at θ⁺ and shared by every deletion). The result is exact to the
  reported gradient norm whatever the preconditioner; the preconditioner only sets the speed:
  - small P = D·K: the Cholesky factor of H⁺ = ∇²L(θ⁺) (`hessian_cholesky`, a [P, P] matrix),
    which differs from the retained-data Hessian by a rank-K term, so a few CG steps suffice;
  - large P (4096 Fourier features × 10 classes = 40,970 parameters): never form a [P, P]
    matrix. A rank-r randomised Nyström approximation of H⁺'s data term (`hessian_nystrom`,
    r Hessian-vector products, memory r·P) preconditions CG on Hessian-vector products. Memory
    per deletion is O(P + n·K), so B deletions vmapped in chunks (`jax.lax.map(...,
    batch_size=...)`) need O(B·(D·K + n·K) + n·D + r·D·K).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import models as _models
from jaxrecon import solvers as _solvers
from jaxrecon.models import Model


class UnlearnResult(NamedTuple):
    """Parameters after deletion and their optimality.

    Attributes:
      params: θ⁻, same shape as θ⁺.
      grad_norm: relative gradient norm ‖∇L₋(θ⁻)‖ / ‖∇L₋(0)‖ on the retained data.
      steps: Newton steps taken (0 for closed forms).
      cg_steps: conjugate-gradient iterations (= Hessian-vector products) over all Newton steps,
        for retraining; None for closed forms.
    """

    params: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    cg_steps: jax.Array | None = None


def deletion_masks(deleted: jax.Array, num_train: int, dtype=jnp.float64) -> jax.Array:
    """0/1 weights with zeros at the deleted positions.

    Args:
      deleted: [B] positions (one deletion each) or [B, k] (k deleted together per row).
      num_train: n.
      dtype: weight dtype (match the features).

    Returns:
      [B, n] weights.
    """
    deleted = jnp.asarray(deleted)
    if deleted.ndim == 1:
        deleted = deleted[:, None]
    hits = jax.nn.one_hot(deleted, num_train, dtype=dtype).sum(axis=1)
    return 1 - jnp.minimum(hits, 1)


def unlearn_ridge(
    params: jax.Array,
    factor: jax.Array,
    features: jax.Array,
    targets: jax.Array,
    deleted: jax.Array,
    *,
    l2,
) -> UnlearnResult:
    """Exact ridge unlearning of the samples at `deleted` by the Woodbury identity.

    θ⁻ = θ⁺ + U (I − P_S U)⁻¹ r_S with U = H⁻¹ P_Sᵀ and r_S = P_S θ⁺ − y_S (exact; needs
    l2 > 0 or a retained PᵀP that stays positive definite).

    Args:
      params: θ⁺ [D] or [D, K] (multi-output ridge).
      factor: lower Cholesky factor of H = PᵀP + l2·I on the full training set
        (`ridge_cholesky`).
      features: [n, D] training features.
      targets: [n] or [n, K] training targets.
      deleted: [k] distinct positions removed together.
      l2: the regulariser (for the reported gradient norm).

    Returns:
      UnlearnResult(θ⁻, relative gradient norm on the retained data, 0).

    References:
      Sherman & Morrison (1950); DESIGN §3.1.
    """
    deleted = jnp.atleast_1d(deleted)
    p_s = features[deleted]  # [k, D]
    u = jax.scipy.linalg.cho_solve((factor, True), p_s.T)  # [D, k]
    capacitance = jnp.eye(p_s.shape[0], dtype=p_s.dtype) - p_s @ u
    residual = p_s @ params - targets[deleted]  # [k] or [k, K]
    new = params + u @ jnp.linalg.solve(capacitance, residual)
    weights = 1 - jnp.zeros(features.shape[0], features.dtype).at[deleted].set(1)
    norm = _solvers.ridge_relative_grad_norm(new, features, targets, l2=l2, weights=weights)
    return UnlearnResult(new, norm, jnp.zeros((), jnp.int32))


def ridge_cholesky(features: jax.Array, *, l2) -> jax.Array:
    """Lower Cholesky factor of H = PᵀP + l2·I on the full training set, shared by all deletions."""
    weights = jnp.ones(features.shape[0], features.dtype)
    return jnp.linalg.cholesky(_solvers.ridge_hessian(features, l2=l2, weights=weights))


def hessian_cholesky(
    model: Model, params: jax.Array, features: jax.Array, *, l2, labels: jax.Array | None = None
) -> jax.Array:
    """Lower Cholesky factor of the dense Hessian ∇²L(θ) on the full training set, [P, P].

    Built once at θ⁺ and shared by every deletion's Newton solves as the CG preconditioner.
    Forms a [P, P] matrix: only for a small parameter count P = D·K. `labels` [n] are needed
    when `model.hessian_uses_labels` (SVM).
    """
    weights = jnp.ones(features.shape[0], features.dtype)
    return jnp.linalg.cholesky(
        _models.dense_hessian(model, params, features, l2=l2, weights=weights, labels=labels)
    )


def hessian_nystrom(
    key: jax.Array,
    model: Model,
    params: jax.Array,
    features: jax.Array,
    *,
    l2,
    rank: int = 200,
    labels: jax.Array | None = None,
) -> _solvers.NystromPreconditioner:
    """Rank-r Nyström preconditioner of H⁺ = ∇²L(θ⁺) on the full training set (large P).

    Approximates the data term Σ_i ∇²ℓ_i(θ⁺) from r Hessian-vector products and shifts by l2
    (`solvers.nystrom_preconditioner`); never forms a [P, P] matrix (memory r·P). Pass it to
    `unlearn_retrain(..., preconditioner=...)`; it is shared by every deletion. r = 100-200 is a
    good default for Fourier features and pixels: on 4096 features × 10 classes (digits-like,
    n = 2000, l2 = 1) each Newton system then needs ~10-20 CG steps against ~50 unpreconditioned.

    Args:
      key: PRNG key for the random test matrix.
      model: the model family.
      params: θ⁺.
      features: [n, D] training features.
      l2: regulariser λ (the shift μ).
      rank: r, 1 <= r <= D·K.
      labels: [n] training labels, needed when `model.hessian_uses_labels` (SVM).

    Returns:
      solvers.NystromPreconditioner (arrays only: pass it to jitted kernels as an argument).
    """
    weights = jnp.ones(features.shape[0], features.dtype)

    def matvec(v):
        return _models.hvp(model, params, features, weights, v, labels)

    return _solvers.nystrom_preconditioner(key, matvec, params, rank=rank, shift=l2)


def _cholesky_solver(factor: jax.Array) -> Callable[[jax.Array], jax.Array]:
    def apply(v):
        return jax.scipy.linalg.cho_solve((factor, True), v.reshape(-1)).reshape(v.shape)

    return apply


def unlearn_retrain(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    l2,
    precond_factor: jax.Array | None = None,
    preconditioner: _solvers.NystromPreconditioner | None = None,
    tol: float | None = None,
    max_steps: int = 50,
    cg_max_steps: int = 200,
) -> UnlearnResult:
    """Exact unlearning by retraining on the retained data, warm-started at θ⁺.

    Newton's method on L_w (w = the deletion mask) with conjugate-gradient Newton systems on
    Hessian-vector products, preconditioned by the shared Cholesky factor of H⁺ (small P,
    `hessian_cholesky`) or a shared Nyström preconditioner (large P, `hessian_nystrom`), or not at
    all. Exact to the reported relative gradient norm (<= tol; the default reaches round-off in
    float64) whichever preconditioner is used. Needs l2 > 0. For the SVM the Hessian is the
    generalised one (squared hinge); Newton still converges.

    Args:
      model: the model family.
      params: θ⁺, the model trained on all n samples.
      features: [n, D].
      labels: [n].
      weights: [n] 0/1 retained-data mask for this deletion.
      l2: regulariser λ.
      precond_factor: lower Cholesky factor of M ≈ ∇²L(θ⁺) over the flattened parameters
        (`hessian_cholesky`), or None.
      preconditioner: a `solvers.NystromPreconditioner` (`hessian_nystrom`), or None. At most
        one of `precond_factor` and `preconditioner`; neither means unpreconditioned CG.
      tol: relative gradient tolerance (default `solvers.default_tol`).
      max_steps: Newton steps at most.
      cg_max_steps: CG iterations at most per Newton step.

    Returns:
      UnlearnResult(θ⁻, relative gradient norm, Newton steps, CG steps).

    Raises:
      ValueError: both preconditioners given.
    """
    if precond_factor is not None and preconditioner is not None:
        raise ValueError("pass at most one of precond_factor and preconditioner, got both")
    if preconditioner is not None:
        precond = functools.partial(_solvers.apply_nystrom, preconditioner)
    elif precond_factor is not None:
        precond = _cholesky_solver(precond_factor)
    else:
        precond = None
    fit = _solvers.fit_newton(
        model,
        features,
        labels,
        l2=l2,
        weights=weights,
        init=params,
        tol=tol,
        max_steps=max_steps,
        linear_solver="cg",
        precond=precond,
        cg_max_steps=cg_max_steps,
    )
    return UnlearnResult(fit.params, fit.grad_norm, fit.steps, fit.cg_steps)
