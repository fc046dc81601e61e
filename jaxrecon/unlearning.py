"""Exact unlearning: the parameters θ⁻ the operator publishes after deleting samples (DESIGN §3.5).

Every function here handles ONE deletion (a set of positions, or a 0/1 weight mask) and is pure,
so the caller vmaps it over a batch of B deletions and jits the result once; the compiled kernel
then serves every deleted index without recompiling.

- Ridge: no retraining. With one Cholesky factor of H = PᵀP + l2·I shared by all deletions, the
  Woodbury identity gives θ⁻ exactly in O(D²k + k³) per deletion of k samples (k = 1 is
  Sherman–Morrison): θ⁻ = θ⁺ + U (I − P_S U)⁻¹ r_S, U = H⁻¹P_Sᵀ, r_S = P_S θ⁺ − y_S.
  `ridge_system` adds H and Pᵀy, so the exactness check costs O(D²) instead of O(nD).
- Logistic / softmax, moderate P = D·K (`unlearn_glm`, the one batched function here): chord
  iterations with the exact retained-data Hessian at θ⁺, H₋(θ⁺) = H⁺ − (p_j p_jᵀ) ⊗ ℓ''(z_j),
  inverted by Woodbury from one explicit H⁺⁻¹ shared by every deletion (`glm_system`). The first
  step needs no pass over the data; each later one costs one gradient on the retained data
  (which is also the exactness check). Lanes that converge leave the batch: every pass works on
  a dense block of unconverged deletions, so B deletions cost their mean pass count, not B times
  the slowest one's.
- Approximate (`gradient_ascent`, `gradient_descent` for fine-tuning and descent-to-delete): a
  fixed number of first-order steps from θ⁺; the composition layer adds one Newton step
  (`unlearn_glm` with max_passes=1, or `unlearn_retrain` with max_steps=1) as influence removal.
- Logistic / softmax / SVM / one-hot ridge: retraining to convergence on the weight mask,
  warm-started at θ⁺ (Newton; the Newton systems are solved by conjugate gradients preconditioned
  by something built once at θ⁺ and shared by every deletion). The result is exact to the
  reported gradient norm whatever the preconditioner; the preconditioner only sets the speed:
  - small P = D·K: the Cholesky factor of H⁺ = ∇²L(θ⁺) (`hessian_cholesky`, a [P, P] matrix),
    which differs from the retained-data Hessian by a rank-K term, so a few CG steps suffice;
  - large P (4096 Fourier features × 10 classes = 40,970 parameters): never form a [P, P]
    matrix. A Kronecker-factored approximation A ⊗ C of H⁺'s data term (`hessian_kfac`: the
    curvature-weighted input second moment and the mean output curvature, each eigendecomposed
    once, memory D² + K²) preconditions CG on Hessian-vector products: a handful of CG steps
    per Newton system; `kfac_system(key=...)` adds a spectral correction (block Lanczos, once)
    that maps the directions where A ⊗ C errs most to 1 and cuts CG 2-3x on real RFF data.
    (`hessian_nystrom`, a rank-r randomised Nyström sketch from r Hessian-vector products,
    memory r·P, is the structure-free alternative.) Memory per deletion is O(P + n·K), so B
    deletions vmapped need O(B·(D·K + n·K) + n·D + D²).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import _validate
from jaxrecon import models as _models
from jaxrecon import solvers as _solvers
from jaxrecon.models import Model

# The spectral correction of the chord-kfac system (`kfac_system(key=...)`): Ritz pairs kept, and
# the block Lanczos that finds them (block x steps Hessian-vector products, once). On real MNIST
# RFF-4096 softmax (benchmarks/kfac_correction.py), CG steps per pass: 20.9 none, 9.8 rank 32,
# 7.9 rank 64, 6.8 rank 128 (time per deletion within run-to-run noise of rank 64's).
CORRECTION_RANK = 64
CORRECTION_BLOCK = 32
CORRECTION_STEPS = 8


class UnlearnResult(NamedTuple):
    """Parameters after deletion and their optimality.

    Attributes:
      params: θ⁻, same shape as θ⁺.
      grad_norm: relative gradient norm ‖∇L₋(θ⁻)‖ / ‖∇L₋(0)‖ on the retained data.
      steps: Newton steps taken (0 for closed forms).
      cg_steps: conjugate-gradient iterations (= Hessian-vector products) over all Newton steps,
        for retraining; None for closed forms.
      exact_distance: ‖θ⁻ − θ_exact‖ / ‖θ_exact‖ against exact retraining (approximate methods,
        filled in by `unlearners.Unlearner`), or None.
      residual_bound: certified removal's bound on ‖∇L₋(θ⁻)‖ (Guo et al. 2020), or None.
    """

    params: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    cg_steps: jax.Array | None = None
    exact_distance: jax.Array | None = None
    residual_bound: jax.Array | None = None


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


class RidgeSystem(NamedTuple):
    """What every ridge deletion shares (`ridge_system`): arrays only, so pass it to jitted kernels.

    Attributes:
      inverse: H⁻¹ [D, D], H = PᵀP + l2·I on the full training set.
      hessian: H [D, D].
      rhs: b = Pᵀy [D] or [D, K].
    """

    inverse: jax.Array
    hessian: jax.Array
    rhs: jax.Array


def ridge_system(features: jax.Array, targets: jax.Array, *, l2) -> RidgeSystem:
    """H⁻¹ (from one Cholesky factor), H and Pᵀy on the full training set; O(nD² + D³) once."""
    weights = jnp.ones(features.shape[0], features.dtype)
    hessian = _solvers.ridge_hessian(features, l2=l2, weights=weights)
    return RidgeSystem(_spd_inverse(hessian), hessian, features.T @ targets)


def unlearn_ridge(
    params: jax.Array,
    factor: jax.Array | RidgeSystem,
    features: jax.Array,
    targets: jax.Array,
    deleted: jax.Array,
    *,
    l2,
) -> UnlearnResult:
    """Exact ridge unlearning of the samples at `deleted` by the Woodbury identity.

    θ⁻ = θ⁺ + U (I − P_S U)⁻¹ r_S with U = H⁻¹ P_Sᵀ and r_S = P_S θ⁺ − y_S (exact; needs
    l2 > 0 or a retained PᵀP that stays positive definite).

    With a `RidgeSystem` the cost per deletion of k samples is O(D²k + k³): U is a product with
    the shared H⁻¹ (vmapped over deletions: one matrix product), and the reported gradient
    norm on the retained data uses ∇L₋(θ⁻) = H θ⁻ − b − P_Sᵀ(P_S θ⁻ − y_S) and
    ∇L₋(0) = −(b − P_Sᵀ y_S) with the shared H and b = Pᵀy: an independent check of θ⁻, never a
    pass over the n training rows. With a bare Cholesky factor the check is recomputed from the
    [n, D] data (O(nD) per deletion).

    Args:
      params: θ⁺ [D] or [D, K] (multi-output ridge).
      factor: `ridge_system(...)`, or the lower Cholesky factor of H = PᵀP + l2·I on the full
        training set (`ridge_cholesky`).
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
    y_s = targets[deleted]  # [k] or [k, K]
    if isinstance(factor, RidgeSystem):
        u = (p_s @ factor.inverse).T  # [D, k]; H⁻¹ is symmetric
    else:
        u = jax.scipy.linalg.cho_solve((factor, True), p_s.T)  # [D, k]
    capacitance = jnp.eye(p_s.shape[0], dtype=p_s.dtype) - p_s @ u
    residual = p_s @ params - y_s  # [k] or [k, K]
    new = params + u @ jnp.linalg.solve(capacitance, residual)
    if isinstance(factor, RidgeSystem):
        grad = factor.hessian @ new - factor.rhs - p_s.T @ (p_s @ new - y_s)
        grad0 = factor.rhs - p_s.T @ y_s
        norm = jnp.linalg.norm(grad) / jnp.maximum(
            jnp.linalg.norm(grad0), jnp.finfo(grad.dtype).tiny
        )
    else:
        weights = 1 - jnp.zeros(features.shape[0], features.dtype).at[deleted].set(1)
        norm = _solvers.ridge_relative_grad_norm(new, features, targets, l2=l2, weights=weights)
    return UnlearnResult(new, norm, jnp.zeros((), jnp.int32))


def ridge_cholesky(features: jax.Array, *, l2) -> jax.Array:
    """Lower Cholesky factor of H = PᵀP + l2·I on the full training set, shared by all deletions."""
    weights = jnp.ones(features.shape[0], features.dtype)
    return jnp.linalg.cholesky(_solvers.ridge_hessian(features, l2=l2, weights=weights))


def hessian_cholesky(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    *,
    l2,
    labels: jax.Array | None = None,
    weights: jax.Array | None = None,
) -> jax.Array:
    """Lower Cholesky factor of the dense Hessian ∇²L(θ) on the full training set, [P, P].

    Built once at θ⁺ and shared by every deletion's Newton solves as the CG preconditioner.
    Forms a [P, P] matrix: only for a small parameter count P = D·K. `labels` [n] are needed
    when `model.hessian_uses_labels` (SVM). `weights` [n]: the Hessian of L_w (default: all n).
    """
    if weights is None:
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
    weights: jax.Array | None = None,
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
      weights: [n] sample weights of the objective (default: all ones).

    Returns:
      solvers.NystromPreconditioner (arrays only: pass it to jitted kernels as an argument).
    """
    if weights is None:
        weights = jnp.ones(features.shape[0], features.dtype)

    def matvec(v):
        return _models.hvp(model, params, features, weights, v, labels)

    return _solvers.nystrom_preconditioner(key, matvec, params, rank=rank, shift=l2)


def hessian_kfac(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    *,
    l2,
    labels: jax.Array | None = None,
    weights: jax.Array | None = None,
    basis_dtype=None,
) -> _solvers.KroneckerPreconditioner:
    """Kronecker-factored preconditioner of H⁺ = Σ_i w_i (p_i p_iᵀ) ⊗ C_i + l2·I (large P).

    Approximates the GLM Hessian by A ⊗ C with the curvature-weighted input second moment
    A = Σ_i w_i tr(C_i) p_i p_iᵀ [D, D] and the mean normalised output curvature
    C = Σ_i w_i C_i / Σ_i w_i tr(C_i) [K, K] (C_i = ℓ''(θᵀp_i) from `models.curvature_matrices`),
    both inverted once by `solvers.kronecker_preconditioner` (memory D² + K², never [P, P]). The
    weights tr(C_i) make A see the records the Hessian sees: confidently classified records carry
    almost no curvature, and an unweighted Σ p pᵀ (plain K-FAC) over-counts them. Exact for
    scalar-output models (K = 1: A ⊗ C is the Hessian's data term) and for softmax at θ = 0 (every
    C_i equal). Measured on CIFAR-10 linear softmax (n = 4,000, P = 30,730, one deletion's
    Newton system at θ⁺): CG needs 15 steps to a relative residual of 1e-6, against 64 with plain
    K-FAC, 495 with a rank-200 Nyström preconditioner and 893 without.

    Args:
      model: the model family.
      params: θ⁺ [D] or [D, K].
      features: [n, D] training features.
      l2: regulariser λ (the shift μ).
      labels: [n] labels, needed when `model.hessian_uses_labels` (SVM).
      weights: [n] sample weights of the objective (default: all ones).
      basis_dtype: dtype of the [D, D] eigenbasis (default the features'; float32 halves its
        memory and cost and leaves θ⁻ exact to the float64 gradient check).

    Returns:
      solvers.KroneckerPreconditioner (arrays only: pass it to jitted kernels as an argument).
    """
    dtype = features.dtype
    if weights is None:
        weights = jnp.ones(features.shape[0], dtype)
    curv = _models.curvature_matrices(model, params, features, labels)
    if curv.ndim == 1:  # scalar output: C_i is a number, A ⊗ C is exact
        curv = curv[:, None, None]
    curv = curv * weights[:, None, None]
    trace = jnp.trace(curv, axis1=1, axis2=2)  # [n]
    total = jnp.sum(trace)
    k = curv.shape[1]
    output = jnp.where(
        total > 0,
        jnp.sum(curv, axis=0) / jnp.maximum(total, jnp.finfo(dtype).tiny),
        jnp.eye(k, dtype=dtype) / k,
    )
    inputs = (features * trace[:, None]).T @ features
    return _solvers.kronecker_preconditioner(inputs, output, shift=l2, basis_dtype=basis_dtype)


class KFACSystem(NamedTuple):
    """The shared quantities of `unlearn_glm_kfac` at θ⁺ (`kfac_system`): no [P, P] matrix.

    Attributes:
      precond: the Kronecker-factored preconditioner of H⁺ (`hessian_kfac`).
      logits: Z⁺ = P θ⁺ [n, K] (the curvature of every record at θ⁺).
      grad: ∇L(θ⁺), shaped like θ.
      grad_zero: ∇L(0), shaped like θ.
      features_t: Pᵀ [D, n], contiguous.
      solve_features: P [n, D] in the eigenbasis' lower precision (e.g. float32), in which the
        CG solves run (mixed precision: the chord pass's gradient check stays in P's dtype), or
        None to solve in P's dtype.
      solve_features_t: its transpose [D, n], or None.
    """

    precond: _solvers.KroneckerPreconditioner
    logits: jax.Array
    grad: jax.Array
    grad_zero: jax.Array
    features_t: jax.Array
    solve_features: jax.Array | None = None
    solve_features_t: jax.Array | None = None


def kfac_system(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    *,
    l2,
    basis_dtype=None,
    key: jax.Array | None = None,
    correction_rank: int = CORRECTION_RANK,
) -> KFACSystem:
    """What every deletion of `unlearn_glm_kfac` shares: the Kronecker factors of H⁺ (one
    [D, D] eigendecomposition), the logits, ∇L(θ⁺) and ∇L(0); memory D² + n·(D + K).

    `basis_dtype` lower than the features' (float32 for float64 data) stores the eigenbasis and a
    copy of the features in it, and the kernel's CG solves run in it (twice the matmul rate on
    CPUs, more on accelerators; + n·D memory); θ⁻ stays exact to the gradient norm checked in
    the features' dtype, since every chord pass re-evaluates the gradient there.

    With a `key`, the factors get a spectral correction (`solvers.deflate_kronecker`): block
    Lanczos on the K-FAC-preconditioned H⁺ (CORRECTION_BLOCK × CORRECTION_STEPS Hessian-vector
    products, once, in the solve dtype) finds the `correction_rank` directions where A ⊗ C is
    farthest from H⁺ and maps them to 1 (memory + correction_rank·P). On real MNIST RFF-4096
    softmax (n = 10,000) it cut CG from 20.9 to 7.9 steps per chord pass and the kernel's time
    per deletion 2.1x, for about 13 s once; θ⁻ is unchanged (a preconditioner only).
    """
    _validate.integer("correction_rank", correction_rank, minimum=0)
    weights = jnp.ones(features.shape[0], features.dtype)
    low = basis_dtype is not None and jnp.dtype(basis_dtype) != features.dtype
    solve_features = features.astype(basis_dtype) if low else None
    precond = hessian_kfac(model, params, features, l2=l2, labels=labels, basis_dtype=basis_dtype)
    logits = _models.logits(params, features)
    if key is not None and correction_rank:
        x_s = features if solve_features is None else solve_features
        precond = _spectral_correction(
            key, model, precond, x_s, logits.astype(x_s.dtype), labels, params, l2, correction_rank
        )
    return KFACSystem(
        precond=precond,
        logits=logits,
        grad=_models.gradient(model, params, features, labels, l2=l2, weights=weights),
        grad_zero=_models.gradient(
            model, jnp.zeros_like(params), features, labels, l2=l2, weights=weights
        ),
        features_t=features.T,
        solve_features=solve_features,
        solve_features_t=None if solve_features is None else solve_features.T,
    )


def _spectral_correction(key, model, precond, x, z, labels, params, l2, rank):
    """`solvers.deflate_kronecker` on H⁺ = Σ_i (p_i p_iᵀ) ⊗ C_i + l2·I at θ⁺ (features x and
    logits z in the solve dtype), the Lanczos sizes clamped to the parameter count."""
    size, dim = params.size, x.shape[1]
    block = min(CORRECTION_BLOCK, size)
    steps = max(1, min(CORRECTION_STEPS, size // block))
    shift = jnp.asarray(l2).astype(x.dtype)
    z = z.reshape(x.shape[0], 1, -1)

    def hessian_times(v):
        block_v = v.reshape(1, dim, -1)
        out = _hessian_block_times(model, params.ndim == 1, x, x.T, z, labels, shift, block_v)
        return out.reshape(params.shape)

    like = jnp.zeros(params.shape, x.dtype)
    return _solvers.deflate_kronecker(
        key, precond, hessian_times, like, rank=min(rank, block * steps), block=block, steps=steps
    )


def _hessian_block_times(model: Model, scalar: bool, x, x_t, z, labels, shift, v):
    """H⁺v = Σ_i (p_i p_iᵀ) ⊗ C_i v + shift·v for a block v [b, D, K]: features x [n, D] and
    x_t = xᵀ, logits at θ⁺ z [n, 1, K], all in one dtype; two matrix products with the features."""
    dz = jnp.einsum("nd,bdk->nbk", x, v)
    r = _curvature_times(model, scalar, z, dz, labels[:, None])
    return jnp.einsum("dn,nbk->bdk", x_t, r) + shift * v


def _curvature_times(model: Model, scalar: bool, z, dz, y):
    """ℓ''(z) dz over a trailing output axis [..., K] (`scalar`: K = 1, a scalar-output model)."""
    if scalar:
        return model.curvature(z[..., 0], dz[..., 0], y)[..., None]
    return model.curvature(z, dz, y)


def unlearn_glm_kfac(
    model: Model,
    system: KFACSystem,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    deleted: jax.Array,
    *,
    l2,
    tol: float | None = None,
    max_passes: int = 50,
    block: int | None = None,
    cg_max_steps: int = 200,
) -> UnlearnResult:
    """Exact unlearning of B single-sample deletions of a GLM with large P, batched (not vmapped).

    The chord iterations of `unlearn_glm`, θ ← θ − H₋⁻¹ ∇L₋(θ) with the retained-data Hessian at
    θ⁺, H₋ = H⁺ − (p_j p_jᵀ) ⊗ C_j, without any [P, P] matrix: each H₋⁻¹ is applied by conjugate
    gradients on Hessian-vector products with H⁺ (the curvature of every record at θ⁺ is shared,
    so a block of deletions costs two matrix products of the [n, D] features with [D, block·K]
    tangents per CG step) minus the rank-K term of the deleted record, preconditioned by the
    shared Kronecker factors (`hessian_kfac`: a handful of CG steps). CG stops once its residual
    — the next gradient, to first order — is below a tenth of the target. ∇L₋(θ⁺) and ∇L₋(0)
    cost O(P) from the shared ∇L(θ⁺) and ∇L(0); each later pass evaluates ∇L₋ on the n − 1
    retained rows, which is also the exactness check: a lane stops when its relative gradient
    norm ‖∇L₋(θ)‖ / ‖∇L₋(0)‖ <= tol. Convergence is linear with a small rate (the Hessian moves by
    O(‖θ⁻ − θ⁺‖)); usually two passes.

    Lanes that still need a pass are gathered into a dense block of `block` deletions per
    iteration (the last few into blocks of a quarter of that), as in `unlearn_glm`, so a batch
    costs the sum of its lanes' passes.

    Args:
      model: a GLM with a smooth loss (logistic, softmax).
      system: `kfac_system(model, params, features, labels, l2=l2)`.
      params: θ⁺ [D] or [D, K].
      features: [n, D] training features.
      labels: [n] training labels.
      deleted: [B] positions, one deletion each.
      l2: regulariser λ.
      tol: relative gradient tolerance (default `solvers.default_tol`).
      max_passes: passes over the data at most per deletion; a lane that reaches it is reported
        with its (larger) gradient norm, never hidden.
      block: deletions per pass (default min(B, 16)).
      cg_max_steps: CG steps at most per pass.

    Returns:
      UnlearnResult batched over B: θ⁻ [B, *θ.shape], relative gradient norms [B], passes over
      the retained data [B] (as `steps`) and CG steps [B] (as `cg_steps`).

    Raises:
      ValueError: `deleted` is not one-dimensional.
    """
    deleted, tol, loss_grad = _chord_lanes(model, params, features, deleted, tol)
    dtype = features.dtype
    scalar = params.ndim == 1
    k = 1 if scalar else params.shape[1]
    n, dim = features.shape
    count = deleted.shape[0]
    block = min(count, 16 if block is None else block)
    shape = (dim, k)
    tiny = jnp.finfo(dtype).tiny

    def precondition(v):  # v [D, K]
        return _solvers.apply_kronecker(system.precond, v)

    # Per-deletion constants, all B lanes at once: no pass over the data.
    p = features[deleted]  # [B, D]
    y = labels[deleted]
    z_j = system.logits[deleted].reshape(count, k)
    grad0 = (
        system.grad_zero.reshape(shape)[None]
        - p[:, :, None] * loss_grad(jnp.zeros_like(z_j), y)[:, None]
    )
    scale = jnp.maximum(jnp.linalg.norm(grad0.reshape(count, -1), axis=1), tiny)
    grad_plus = system.grad.reshape(shape)[None] - p[:, :, None] * loss_grad(z_j, y)[:, None]
    z_all = system.logits.reshape(n, 1, k)
    rows = jnp.arange(n)

    if system.solve_features is None:
        solve_dtype, x_solve, x_solve_t = dtype, features, system.features_t
    else:
        x_solve, x_solve_t = system.solve_features, system.solve_features_t
        solve_dtype = x_solve.dtype
    # The relative residual a CG solve can reach in its dtype (float32: ~1e-5).
    rel_floor = 100 * float(jnp.finfo(solve_dtype).eps)
    z_all = z_all.astype(solve_dtype)
    l2_solve = jnp.asarray(l2).astype(solve_dtype)

    def hvp(v, p_b, z_b, y_b):  # H₋(θ⁺) v for a block: v [b, D, K] in the solve dtype
        full = _hessian_block_times(model, scalar, x_solve, x_solve_t, z_all, labels, l2_solve, v)
        own = _curvature_times(
            model, scalar, z_b, jnp.einsum("bd,bdk->bk", p_b, v), y_b
        )  # C_j p_jᵀV
        return full - p_b[:, :, None] * own[:, None, :]

    def solve(g, p_b, z_b, y_b, scale_b):  # H₋⁻¹ g by PCG, all lanes of the block together
        g_norm = jnp.maximum(jnp.linalg.norm(g.reshape(g.shape[0], -1), axis=1), tiny)
        rel = jnp.clip(_solvers.CG_TARGET_MARGIN * tol * scale_b / g_norm, rel_floor, 1e-2)
        unit = (g / g_norm[:, None, None]).astype(solve_dtype)  # no underflow in float32
        p_s, z_s = p_b.astype(solve_dtype), z_b.astype(solve_dtype)
        step, iters = _block_cg(
            lambda v: hvp(v, p_s, z_s, y_b),
            jax.vmap(precondition),
            unit,
            rel.astype(solve_dtype),
            cg_max_steps,
        )
        return step.astype(dtype) * g_norm[:, None, None], iters

    def body(state, *, size):
        thetas, grads, norms, passes, active, rounds, cg_total = state
        (idx,) = jnp.nonzero(active, size=size, fill_value=count)
        take = jnp.minimum(idx, count - 1)
        p_b, z_b, y_b = p[take], z_j[take], y[take]
        step, iters = solve(grads[take], p_b, z_b, y_b, scale[take])
        th = thetas[take] - step
        z = jnp.einsum("nd,bdk->nbk", features, th)
        keep = (rows[:, None] != deleted[take][None, :]).astype(dtype)  # [n, b]
        r = loss_grad(z, labels[:, None]) * keep[:, :, None]
        g = jnp.einsum("dn,nbk->bdk", system.features_t, r) + l2 * th
        norm = jnp.linalg.norm(g.reshape(size, -1), axis=1) / scale[take]
        count_b = passes[take] + 1
        again = (norm > tol) & (count_b < max_passes)
        return (
            thetas.at[idx].set(th, mode="drop"),
            grads.at[idx].set(g, mode="drop"),
            norms.at[idx].set(norm, mode="drop"),
            passes.at[idx].set(count_b, mode="drop"),
            active.at[idx].set(again, mode="drop"),
            rounds + 1,
            cg_total.at[idx].add(iters, mode="drop"),
        )

    norm0 = jnp.linalg.norm(grad_plus.reshape(count, -1), axis=1) / scale
    # Per-lane carries derived from `deleted` (typed as varying under `shard_map`).
    lanes = (deleted * 0).astype(jnp.int32)
    state = (
        jnp.broadcast_to(params.reshape(shape), (count,) + shape) + lanes[:, None, None],
        grad_plus,
        norm0 + lanes,
        lanes,
        norm0 > tol,
        jnp.zeros((), jnp.int32),
        lanes,
    )
    thetas, _, norms, passes, _, _, cg_total = _compacted_loop(
        body, state, active=4, rounds=5, block=block, max_rounds=count * max_passes
    )
    return UnlearnResult(thetas.reshape((count,) + params.shape), norms, passes, cg_total)


def _chord_lanes(model: Model, params, features, deleted, tol):
    """What both chord kernels start from: the [B] deleted positions (checked), the tolerance
    (default `solvers.default_tol`) and z [..., K] -> ℓ'(z, y) [..., K] for θ [D] or [D, K]."""
    deleted = jnp.asarray(deleted)
    if deleted.ndim != 1:
        raise ValueError(f"deleted must be [B] positions, got shape {deleted.shape}")
    tol = _solvers.default_tol(features.dtype) if tol is None else tol

    def loss_grad(z, y):
        if params.ndim == 1:
            return model.dloss_z(z[..., 0], y)[..., None]
        return model.dloss_z(z, y)

    return deleted, tol, loss_grad


def _compacted_loop(body, state, *, active, rounds, block, max_rounds):
    """Runs `body(state, size=...)` — one pass over a dense block of unconverged lanes — until no
    lane is active (`state[active]` [B] bool) or after `max_rounds` rounds (`state[rounds]`).

    While at least `block` lanes are active every round is full; the last few run in blocks of
    `_tail_block(block)` lanes, so that they do not drag a mostly idle block along (B = 100
    deletions with the softmax pass counts of benchmarks/run.py, block 32: 81% of the lane slots
    did work; with a tail of 8, 96%). Two compiled loop bodies, one per block size.
    """
    tail = _tail_block(block)

    def more(size):
        def check(state):
            live = jnp.sum(state[active].astype(jnp.int32))
            return (live >= size) & (state[rounds] < max_rounds)

        return check

    if tail < block:
        state = jax.lax.while_loop(more(block), functools.partial(body, size=block), state)
    return jax.lax.while_loop(more(1), functools.partial(body, size=tail), state)


def _tail_block(block: int) -> int:
    """Lanes per pass of the chord kernels once fewer than `block` deletions are left."""
    return max(1, -(-block // 4))


def _block_cg(matvec, precond, rhs, rel_tol, max_steps):
    """Preconditioned CG on a block of independent systems A_b x_b = r_b ([b, ...] arrays; the
    operator and preconditioner act on the whole block, so every step is batched products).
    Lane b stops updating once ‖r_b‖ <= rel_tol[b]·‖rhs_b‖; the loop ends when all have (or
    after `max_steps`). Returns (x [b, ...], steps per lane [b])."""
    axes = tuple(range(1, rhs.ndim))

    def dot(a, b):
        return jnp.sum(a * b, axis=axes)

    def expand(c):
        return c.reshape((-1,) + (1,) * (rhs.ndim - 1))

    target = rel_tol * jnp.sqrt(dot(rhs, rhs))
    x = jnp.zeros_like(rhs)
    z = precond(rhs)
    rz = dot(rhs, z)
    steps = jnp.zeros(rhs.shape[0], jnp.int32)

    def cond(state):
        _, r, _, _, _, k = state
        return jnp.any(jnp.sqrt(dot(r, r)) > target) & (k < max_steps)

    def body(state):
        x, r, p, rz, steps, k = state
        live = jnp.sqrt(dot(r, r)) > target
        ap = matvec(p)
        alpha = jnp.where(live, rz / jnp.where(live, dot(p, ap), 1), 0)
        x = x + expand(alpha) * p
        r = r - expand(alpha) * ap
        z = precond(r)
        rz_new = dot(r, z)
        beta = jnp.where(live, rz_new / jnp.where(live, rz, 1), 0)
        p = jnp.where(expand(live), z + expand(beta) * p, p)
        return x, r, p, jnp.where(live, rz_new, rz), steps + live, k + 1

    x, _, _, _, steps, _ = jax.lax.while_loop(
        cond, body, (x, rhs, z, rz, steps, jnp.zeros((), jnp.int32))
    )
    return x, steps


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
    preconditioner: _solvers.NystromPreconditioner | _solvers.KroneckerPreconditioner | None = None,
    tol: float | None = None,
    max_steps: int = 50,
    cg_max_steps: int = 200,
) -> UnlearnResult:
    """Exact unlearning by retraining on the retained data, warm-started at θ⁺.

    Newton's method on L_w (w = the deletion mask) with conjugate-gradient Newton systems on
    Hessian-vector products, preconditioned by the shared Cholesky factor of H⁺ (small P,
    `hessian_cholesky`) or shared Kronecker factors (large P, `hessian_kfac`; or a Nyström
    sketch, `hessian_nystrom`), or not at all. Exact to the reported relative gradient norm
    (<= tol; the default reaches round-off in float64) whichever preconditioner is used. Needs
    l2 > 0. For the SVM the Hessian is the generalised one (squared hinge); Newton still
    converges.

    Args:
      model: the model family.
      params: θ⁺, the model trained on all n samples.
      features: [n, D].
      labels: [n].
      weights: [n] 0/1 retained-data mask for this deletion.
      l2: regulariser λ.
      precond_factor: lower Cholesky factor of M ≈ ∇²L(θ⁺) over the flattened parameters
        (`hessian_cholesky`), or None.
      preconditioner: a `solvers.KroneckerPreconditioner` (`hessian_kfac`) or
        `solvers.NystromPreconditioner` (`hessian_nystrom`), or None. At most
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
        precond = _solvers.preconditioner_fn(preconditioner)
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


def gradient_ascent(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    l2,
    steps: int,
    lr,
) -> UnlearnResult:
    """Approximate unlearning by gradient ascent on the deleted records' loss.

        θ_{t+1} = θ_t + lr·Σ_i (1 − w_i)·∇ℓ(θ_t; p_i, y_i),   θ_0 = θ⁺,

    for `steps` steps (the deleted records are those with w_i = 0). Approximate: it moves away
    from the deleted records, not to the retained optimum; the reported relative gradient norm
    of the retained objective says how far it stays from it.

    Args:
      model, params, features, labels: the family, θ⁺, [n, D], [n].
      weights: [n] 0/1 mask, 0 at the deleted records.
      l2: λ (for the reported gradient norm only).
      steps: T >= 1.
      lr: step size (in parameter units per unit of gradient).

    Returns:
      UnlearnResult(θ_T, relative gradient norm of L_w at θ_T, T).
    """
    forget = 1 - weights

    def step(theta, _):
        grad = _models.gradient(model, theta, features, labels, l2=0.0, weights=forget)
        return theta + lr * grad, None

    theta, _ = jax.lax.scan(step, params, None, length=steps)
    norm = _solvers.relative_grad_norm(model, theta, features, labels, l2=l2, weights=weights)
    return UnlearnResult(theta, norm, jnp.asarray(steps, jnp.int32))


def gradient_descent(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    l2,
    steps: int,
    lr,
    radius=None,
) -> UnlearnResult:
    """Fine-tuning on the retained data: (projected) gradient descent on L_w from θ⁺.

        θ_{t+1} = Π(θ_t − lr·∇L_w(θ_t)),   θ_0 = θ⁺,

    Π the projection onto the ball ‖θ‖ <= `radius` (none when None). With lr = 2/(λ + M) on the
    λ-strongly convex, M-smooth L_w each step contracts the distance to the retained optimum by
    (M − λ)/(M + λ) (descent-to-delete, Neel et al. 2021, uses exactly this). Approximate.

    Returns:
      UnlearnResult(θ_T, relative gradient norm of L_w at θ_T, T).
    """

    def step(theta, _):
        grad = _models.gradient(model, theta, features, labels, l2=l2, weights=weights)
        theta = theta - lr * grad
        if radius is not None:
            norm = jnp.linalg.norm(theta)
            theta = theta * jnp.minimum(
                1.0, radius / jnp.maximum(norm, jnp.finfo(theta.dtype).tiny)
            )
        return theta, None

    theta, _ = jax.lax.scan(step, params, None, length=steps)
    norm = _solvers.relative_grad_norm(model, theta, features, labels, l2=l2, weights=weights)
    return UnlearnResult(theta, norm, jnp.asarray(steps, jnp.int32))


class GLMSystem(NamedTuple):
    """What every GLM deletion shares, computed once at θ⁺ (`glm_system`); arrays only.

    Attributes:
      inverse: H⁺⁻¹ [P, P], the inverse Hessian of the full-data objective at θ⁺ (P = D·K).
      logits: z⁺ = Pθ⁺, [n] or [n, K].
      grad: ∇L(θ⁺) on all n samples (≈ 0; kept so nothing assumes θ⁺ is exact).
      grad_zero: ∇L(0) on all n samples (the scale of the relative gradient norm).
      features_t: Pᵀ [D, n], a contiguous copy: Pᵀ R is then a plain matrix product (on CPU
        about 1.7x faster than contracting the long axis of P).
      linear: b, shaped like θ, when the objective carries a linear term bᵀθ (objective
        perturbation, Guo et al. 2020), else None; `grad` and `grad_zero` include it.
    """

    inverse: jax.Array
    logits: jax.Array
    grad: jax.Array
    grad_zero: jax.Array
    features_t: jax.Array
    linear: jax.Array | None = None


def glm_system(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    *,
    l2,
    inverse_dtype=None,
    linear: jax.Array | None = None,
) -> GLMSystem:
    """The shared quantities of `unlearn_glm` at θ⁺; O(n·D²·K² + P³) time, 2·P² + nD memory.

    `linear` (b, shaped like θ) adds bᵀθ to the objective (objective perturbation): the Hessian
    is unchanged, every gradient gains b.

    `inverse_dtype` (default: the features' dtype) stores H⁺⁻¹ in another precision: float32
    halves its memory and the cost of every solve on CPUs and accelerators. It only acts as the
    chord iterations' preconditioner, so θ⁻ stays exact to the gradient norm checked in the
    features' dtype; the iterations converge while κ(H⁺)·eps(inverse_dtype) stays well below
    the per-pass contraction (about 1e-2), e.g. κ up to ~1e4 for float32.
    """
    weights = jnp.ones(features.shape[0], features.dtype)
    hessian = _models.dense_hessian(model, params, features, l2=l2, weights=weights, labels=labels)
    inverse = _spd_inverse(hessian)
    shift = 0 if linear is None else linear
    return GLMSystem(
        inverse=inverse if inverse_dtype is None else inverse.astype(inverse_dtype),
        logits=_models.logits(params, features),
        grad=_models.gradient(model, params, features, labels, l2=l2, weights=weights) + shift,
        grad_zero=_models.gradient(
            model, jnp.zeros_like(params), features, labels, l2=l2, weights=weights
        )
        + shift,
        features_t=features.T,
        linear=linear,
    )


def unlearn_glm(
    model: Model,
    system: GLMSystem,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    deleted: jax.Array,
    *,
    l2,
    tol: float | None = None,
    max_passes: int = 50,
    block: int | None = None,
) -> UnlearnResult:
    """Exact unlearning of B single-sample deletions of a GLM, batched (not vmapped).

    For deletion j, θ⁻ solves ∇L₋(θ) = ∇L(θ) − ∇ℓ_j(θ) = 0. Everything at θ⁺ is shared, so
    ∇L₋(θ⁺) = ∇L(θ⁺) − p_j ⊗ ℓ'(z⁺_j) costs O(P). The retained-data Hessian at θ⁺ is
    H₋ = H⁺ − V C Vᵀ with V = p_j ⊗ I_K and C = ℓ''(z⁺_j) [K, K], so by Woodbury

        H₋⁻¹ v = H⁺⁻¹ v + U (I − C VᵀU)⁻¹ C Vᵀ H⁺⁻¹ v,   U = H⁺⁻¹ V [P, K],

    with the shared explicit H⁺⁻¹ (products over a batch are matrix products). Then chord
    iterations θ ← θ − H₋⁻¹ ∇L₋(θ): the first is an exact Newton step and needs no pass over the
    data; each later one evaluates ∇L₋ on the n − 1 retained rows (4nP FLOPs), which is also the
    exactness check: a lane stops when its relative gradient norm ‖∇L₋(θ)‖ / ‖∇L₋(0)‖ <= tol.
    Convergence is linear with a small rate (the Hessian moves by O(‖θ⁻ − θ⁺‖)).

    The lanes that still need a pass are gathered into a dense block of `block` deletions per
    iteration (`jnp.nonzero` with a static size; once fewer than `block` are left, blocks of a
    quarter of that), so the batch costs the sum of its lanes' passes rather than B times the
    slowest lane's, and every pass is two matrix products of the [n, D] features with
    [D, block·K] parameters.

    Args:
      model: a GLM with a smooth loss (logistic, softmax); `model.curvature` gives C.
      system: `glm_system(model, params, features, labels, l2=l2)`.
      params: θ⁺ [D] or [D, K].
      features: [n, D] training features.
      labels: [n] training labels.
      deleted: [B] positions, one deletion each.
      l2: regulariser λ.
      tol: relative gradient tolerance (default `solvers.default_tol`).
      max_passes: passes over the data at most per deletion; a lane that reaches it is reported
        with its (larger) gradient norm, never hidden.
      block: deletions per pass (default min(B, 32); on a 2-core CPU 24-32 was fastest for
        MNIST-sized softmax, larger blocks stream more [n, block, K] temporaries).

    Returns:
      UnlearnResult batched over B: θ⁻ [B, *θ.shape], relative gradient norms [B] and passes
      over the retained data [B] (as `steps`; at least 1, since the last pass is the check).

    Raises:
      ValueError: `deleted` is not one-dimensional.
    """
    deleted, tol, loss_grad = _chord_lanes(model, params, features, deleted, tol)
    dtype = features.dtype
    scalar = params.ndim == 1
    k = 1 if scalar else params.shape[1]
    n, dim = features.shape
    size = dim * k
    count = deleted.shape[0]
    block = min(count, 32 if block is None else block)
    theta = params.reshape(dim, k)
    inverse = system.inverse
    basis = jnp.eye(k, dtype=dtype)

    def curvature(z, y):  # C = ℓ''(z) [K, K] at one sample
        if scalar:
            return model.curvature(z[0], jnp.ones((), dtype), y).reshape(1, 1)
        return jax.vmap(lambda e: model.curvature(z, e, y), out_axes=1)(basis)

    # Per-deletion constants, all B lanes at once.
    p = features[deleted]  # [B, D]
    y = labels[deleted]
    z_j = system.logits[deleted].reshape(count, k)
    grad0 = (
        system.grad_zero.reshape(dim, k)[None]
        - p[:, :, None] * jax.vmap(loss_grad)(jnp.zeros_like(z_j), y)[:, None]
    )
    scale = jnp.maximum(jnp.linalg.norm(grad0.reshape(count, -1), axis=1), jnp.finfo(dtype).tiny)
    curv = jax.vmap(curvature)(z_j, y)  # [B, K, K]
    # Uᵀ[b, q, x] = (H⁺⁻¹ V_b)[x, q] = Σ_a p_b[a] H⁺⁻¹[(a, q), x] (H⁺⁻¹ is symmetric).
    u_t = jnp.einsum("ba,aqx->bqx", p.astype(inverse.dtype), inverse.reshape(dim, k, size))
    vtu = jnp.einsum("bqar,ba->brq", u_t.reshape(count, k, dim, k).astype(dtype), p)
    capacitance = basis[None] - curv @ vtu
    mix = jnp.linalg.solve(capacitance, curv)  # (I − C VᵀU)⁻¹ C, [B, K, K]

    def woodbury(x, p_b, u_b, mix_b):  # H₋⁻¹ g from x = H⁺⁻¹ g, [b, P] in the inverse's dtype
        vx = jnp.einsum("bak,ba->bk", x.reshape(x.shape[0], dim, k), p_b.astype(x.dtype))
        mixed = jnp.einsum("bqr,br->bq", mix_b.astype(x.dtype), vx)
        return (x + jnp.einsum("bqx,bq->bx", u_b, mixed)).astype(dtype)

    def solve(g, p_b, u_b, mix_b):  # H₋⁻¹ g for a block: g [b, D, K]
        x = g.reshape(g.shape[0], size).astype(inverse.dtype) @ inverse
        return woodbury(x, p_b, u_b, mix_b).reshape(g.shape)

    # The first step, an exact Newton step from θ⁺ without a pass over the data: H₋⁻¹V =
    # U (I − C VᵀU)⁻¹ and ∇L₋(θ⁺) = ∇L(θ⁺) − V ℓ'(z⁺_j), where H⁺⁻¹∇L(θ⁺) is shared by all lanes.
    step0 = jnp.linalg.solve(capacitance, jax.vmap(loss_grad)(z_j, y)[..., None])[..., 0]
    shared_x = system.grad.reshape(1, size).astype(inverse.dtype) @ inverse  # [1, P]
    towards = jnp.einsum("bqx,bq->bx", u_t, step0.astype(u_t.dtype)).astype(dtype)
    residual = woodbury(jnp.broadcast_to(shared_x, (count, size)), p, u_t, mix)
    thetas = theta[None] + (towards - residual).reshape(count, dim, k)
    rows = jnp.arange(n)

    def body(state, *, size):
        thetas, norms, passes, active, rounds = state
        (idx,) = jnp.nonzero(active, size=size, fill_value=count)
        take = jnp.minimum(idx, count - 1)
        th = thetas[take]  # [b, D, K]
        z = jnp.einsum("nd,bdk->nbk", features, th)
        keep = (rows[:, None] != deleted[take][None, :]).astype(dtype)  # [n, b]
        r = loss_grad(z, labels[:, None]) * keep[:, :, None]  # labels broadcast over lanes
        g = jnp.einsum("dn,nbk->dbk", system.features_t, r).transpose(1, 0, 2) + l2 * th
        if system.linear is not None:
            g = g + system.linear.reshape(1, dim, k)
        norm = jnp.linalg.norm(g.reshape(size, -1), axis=1) / scale[take]
        count_b = passes[take] + 1
        step = (norm > tol) & (count_b < max_passes)
        th = jnp.where(step[:, None, None], th - solve(g, p[take], u_t[take], mix[take]), th)
        return (
            thetas.at[idx].set(th, mode="drop"),
            norms.at[idx].set(norm, mode="drop"),
            passes.at[idx].set(count_b, mode="drop"),
            active.at[idx].set(step, mode="drop"),
            rounds + 1,
        )

    # Per-lane carries derived from `deleted`, so that under `shard_map` they are typed as
    # varying over the deletion axis like the values the loop body writes into them.
    lanes = (deleted * 0).astype(jnp.int32)
    state = (
        thetas,
        lanes.astype(dtype) + jnp.inf,
        lanes,
        lanes == 0,
        jnp.zeros((), jnp.int32),
    )
    thetas, norms, passes, _, _ = _compacted_loop(
        body, state, active=3, rounds=4, block=block, max_rounds=count * max_passes
    )
    return UnlearnResult(thetas.reshape((count,) + params.shape), norms, passes)


def _spd_inverse(matrix: jax.Array) -> jax.Array:
    """A⁻¹ = L⁻ᵀ (L⁻¹ I) of a symmetric positive definite A from its Cholesky factor A = L Lᵀ.

    Two triangular solves (2P³ FLOPs) that overwrite the identity in place (LAPACK trsm), so
    under jit only L and one [P, P] right-hand side are alive; forming L⁻¹ and then the product
    L⁻ᵀL⁻¹ (3P³ FLOPs) kept L⁻¹, its transpose and the product alive at once.
    """
    factor = jnp.linalg.cholesky(matrix)
    # + 0·L₀₀ (exactly the identity, NaN where the factorisation failed) makes the identity
    # depend on L, so XLA does not allocate it next to A and L: one [P, P] buffer fewer.
    eye = jnp.eye(matrix.shape[0], dtype=matrix.dtype) + 0 * factor[0, 0]
    return jax.scipy.linalg.cho_solve((factor, True), eye)
