"""Reconstruction attacks on one deletion: HRec and the Avg / MaxDiff baselines (DESIGN §3.2, §3.4).

Threat model (DESIGN §2): the attacker sees θ⁺ and θ⁻, knows the model family, l2, the training
set size n and the feature map, and holds m public samples from the same distribution. Every
function attacks one deletion and is pure; the caller vmaps over the B deletions and jits once.

HRec: at θ⁺ the full gradient vanishes, so one Newton step on the retained objective gives

    ∇ℓ(θ⁺; z_j) ≈ H₋(θ⁺) (θ⁻ − θ⁺),

exact for ridge and for Newton-step unlearning, second-order accurate for exact retraining of
logistic / softmax models. The attacker replaces H₋ by the public estimate
Ĥ = ((n−1)/m) Σ_pub ∇²ℓ(θ⁺; p_k) + l2·I and reads the deleted record from g = Ĥ(θ⁻ − θ⁺):
for a GLM, ∇ℓ = p_j ⊗ ℓ'(z_j, y_j), so g is (close to) rank one with the feature vector p_j on the
left; the bias coordinate p_j[-1] = 1 fixes its scale and sign.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import models as _models
from jaxrecon.features import FeatureMap
from jaxrecon.models import BINARY, REGRESSION, Model


class AttackResult(NamedTuple):
    """One reconstruction.

    Attributes:
      x_hat: [d] reconstructed input.
      y_hat: recovered label: class id (int) for classifiers, real target for regression.
      score: attack-specific confidence. HRec: |g_bias| / ‖g‖ (vector models) or the share of
        ‖G‖² in the top singular pair (softmax); 0 means "no signal". MaxDiff: the largest
        prediction change. Avg: 0.
    """

    x_hat: jax.Array
    y_hat: jax.Array
    score: jax.Array


def public_hessian_matvec(
    model: Model, params: jax.Array, public_features: jax.Array, *, n_train: int, l2
) -> Callable[[jax.Array], jax.Array]:
    """v -> Ĥv with Ĥ = ((n−1)/m) Σ_k ∇²ℓ(θ; p_k) + l2·I over the m public samples.

    The (n−1)/m factor scales the public average to the size of the retained training set. For
    canonical-link GLMs the Hessian needs no labels. Never forms Ĥ: each product costs two
    multiplications by the [m, D] public feature matrix.
    """
    m = public_features.shape[0]
    scale = (n_train - 1) / m
    weights = jnp.full((m,), scale, public_features.dtype)

    def matvec(v):
        return _models.hvp(model, params, public_features, weights, v) + l2 * v

    return matvec


def hrec(
    model: Model,
    feature_map: FeatureMap,
    params_before: jax.Array,
    params_after: jax.Array,
    hessian_matvec: Callable[[jax.Array], jax.Array],
) -> AttackResult:
    """Hessian-based reconstruction of one deleted record (Bertran et al., 2024).

    g = Ĥ(θ⁻ − θ⁺) estimates ∇ℓ(θ⁺; z_j) = p_j ⊗ ℓ'(θ⁺ᵀp_j, y_j).

    - Scalar-output models (ridge, logistic): p̂ = g / g[-1]. Ridge: g[-1] = r_j = θ⁺ᵀp_j − y_j,
      so ŷ = θ⁺ᵀp̂ − g[-1] (the real target). Logistic: g[-1] = σ(θ⁺ᵀp_j) − y_j, negative iff
      y_j = 1.
    - Multi-output models (softmax): the top singular pair of G = σ u vᵀ; a = σu = Gv is ∝ p_j,
      p̂ = a / a[-1], and q = a[-1]·v ≈ softmax(Θ⁺ᵀp_j) − e_y has its one negative entry at the
      label: ŷ = argmin q.

    Exact (to round-off) when Ĥ is the true retained-data Hessian and θ⁻ comes from ridge or a
    Newton step with that Hessian; otherwise as accurate as Ĥ and the Newton-step approximation.

    Args:
      model: the model family.
      feature_map: the attacker-known φ; its `invert` maps p̂ back to input space.
      params_before: θ⁺.
      params_after: θ⁻ for this deletion.
      hessian_matvec: v -> Ĥv, e.g. `public_hessian_matvec(...)`.

    Returns:
      AttackResult(x̂ [d], ŷ, score).

    References:
      Bertran, M. et al. "Reconstruction Attacks on Machine Unlearning: Simple Models are
      Vulnerable", NeurIPS 2024, §3 (Eq. for the Newton-step identity).
    """
    if feature_map.invert is None:
        raise ValueError(f"feature map {feature_map.name!r} has no closed-form inverse")
    delta = params_after - params_before
    g = hessian_matvec(delta)
    tiny = jnp.finfo(g.dtype).tiny
    if model.num_outputs is None:
        bias = g[-1]
        p_hat = g / _nonzero(bias)
        score = jnp.abs(bias) / jnp.maximum(jnp.linalg.norm(g), tiny)
        if model.task == REGRESSION:
            y_hat = p_hat @ params_before - bias
        else:
            y_hat = (bias < 0).astype(jnp.int32)
    else:
        eigvals, eigvecs = jnp.linalg.eigh(g.T @ g)
        v = eigvecs[:, -1]
        a = g @ v
        p_hat = a / _nonzero(a[-1])
        q = a[-1] * v
        y_hat = jnp.argmin(q).astype(jnp.int32)
        score = eigvals[-1] / jnp.maximum(jnp.sum(eigvals), tiny)
    # No signal: the published update is round-off (e.g. a ridge sample with zero residual
    # leaves θ unchanged). Report it as score 0, a zero reconstruction and an unknown label
    # (NaN target / class -1) instead of dividing noise by noise.
    eps = jnp.finfo(g.dtype).eps
    silent = jnp.linalg.norm(delta) <= 16 * eps * jnp.maximum(jnp.linalg.norm(params_before), 1)
    p_hat = jnp.where(silent, 0, p_hat)
    score = jnp.where(silent, 0, score)
    y_hat = jnp.where(silent, jnp.nan if model.task == REGRESSION else -1, y_hat).astype(
        y_hat.dtype
    )
    return AttackResult(feature_map.invert(p_hat), y_hat, score)


def hessian_extreme_eigenvalues(
    matvec: Callable[[jax.Array], jax.Array],
    like: jax.Array,
    *,
    dense_limit: int = 2048,
    iterations: int = 200,
) -> tuple[jax.Array, jax.Array]:
    """Smallest and largest eigenvalue of a symmetric positive definite operator v -> Hv.

    Exact (dense `eigvalsh`) when the parameter count is at most `dense_limit`; otherwise power
    iterations on H and on λ_max·I − H (approximate, deterministic start). The ratio is the
    condition number of the attacker's Hessian estimate: large values mean HRec amplifies
    estimation noise in poorly sampled directions.

    Args:
      matvec: v -> Hv for v shaped like `like`.
      like: an array of the parameter shape and dtype.
    """
    size = like.size
    if size <= dense_limit:
        basis = jnp.eye(size, dtype=like.dtype).reshape((size,) + like.shape)
        dense = jax.vmap(matvec)(basis).reshape(size, size)
        eigs = jnp.linalg.eigvalsh(0.5 * (dense + dense.T))
        return eigs[0], eigs[-1]

    def power(op):
        def body(_, v):
            w = op(v)
            return w / jnp.linalg.norm(w)

        start = jnp.ones_like(like) / jnp.sqrt(size)
        v = jax.lax.fori_loop(0, iterations, body, start)
        return jnp.sum(v * op(v))

    hi = power(matvec)
    lo = hi - power(lambda v: hi * v - matvec(v))
    return lo, hi


def avg(
    public_x: jax.Array, public_labels: jax.Array, task: str, num_classes: int | None = None
) -> AttackResult:
    """Avg baseline: the mean public input, and the majority public label (mean target).

    The same guess for every deletion: what an attacker knows without θ⁺ and θ⁻.
    """
    x_hat = jnp.mean(public_x, axis=0)
    if task == REGRESSION:
        y_hat = jnp.mean(public_labels)
    else:
        k = 2 if task == BINARY else num_classes
        y_hat = jnp.argmax(jnp.bincount(public_labels, length=k)).astype(jnp.int32)
    return AttackResult(x_hat, y_hat, jnp.zeros((), x_hat.dtype))


def maxdiff(
    model: Model,
    params_before: jax.Array,
    params_after: jax.Array,
    public_features: jax.Array,
    public_x: jax.Array,
    public_labels: jax.Array,
) -> AttackResult:
    """MaxDiff baseline: the public sample whose prediction changes most from θ⁺ to θ⁻.

    The change is the Euclidean norm of the prediction difference (value, probability or the
    vector of class probabilities). Returns that sample and its label.
    """
    before = _models.predict(model, params_before, public_features)
    after = _models.predict(model, params_after, public_features)
    change = (
        jnp.abs(after - before) if before.ndim == 1 else jnp.linalg.norm(after - before, axis=-1)
    )
    k = jnp.argmax(change)
    y_hat = public_labels[k]
    if model.task != REGRESSION:
        y_hat = y_hat.astype(jnp.int32)
    return AttackResult(public_x[k], y_hat, change[k])


def _nonzero(x: jax.Array) -> jax.Array:
    """x, pushed away from zero to the smallest normal number (keeps the sign; 0 -> +tiny)."""
    tiny = jnp.finfo(x.dtype).tiny
    return jnp.where(jnp.abs(x) < tiny, jnp.where(x < 0, -tiny, tiny), x)
