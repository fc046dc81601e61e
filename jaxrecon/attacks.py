"""Reconstruction attacks on one deletion: HRec, gradient matching, embedding inversion, the
informed adversary and the Avg / MaxDiff / Updates-Leak baselines (DESIGN §3.2-§3.4).

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

From the recovered features p̂ back to the input: exact for identity features
(`FeatureMap.invert`); for random Fourier features by numerical inversion of φ, batched matrix
products with the known W (`invert_rff`) or autodiff for any φ (`invert_features`); pass
`feature_inverter(...)`, which picks one, as `hrec(..., invert=...)`.

Layering: attacks never import `unlearning` (siblings, DESIGN §5). The Updates-Leak baseline is
split: the decoder pieces live here; the shadow models that produce its training data are
trained and unlearned in `jaxrecon.shadow`, which sits above both.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax
from jax.flatten_util import ravel_pytree

from jaxrecon import _validate
from jaxrecon import features as _features
from jaxrecon import metrics as _metrics
from jaxrecon import models as _models
from jaxrecon import solvers as _solvers
from jaxrecon.features import FeatureMap
from jaxrecon.models import BINARY, REGRESSION, Model


class AttackResult(NamedTuple):
    """One reconstruction.

    Attributes:
      x_hat: [d] reconstructed input.
      y_hat: recovered label: class id (int) for classifiers, real target for regression.
      score: attack-specific confidence. HRec / informed: |g_bias| / ‖g‖ (vector models) or the
        share of ‖G‖² in the top singular pair (multi-output); 0 means "no signal". gradmatch:
        the best cosine reached. MaxDiff: the largest prediction change. Updates-Leak: the
        decoder's probability of ŷ (classification) or 0. Avg: 0.
    """

    x_hat: jax.Array
    y_hat: jax.Array
    score: jax.Array


def public_hessian_matvec(
    model: Model,
    params: jax.Array,
    public_features: jax.Array,
    *,
    n_train: int | jax.Array,
    l2,
    public_labels: jax.Array | None = None,
) -> Callable[[jax.Array], jax.Array]:
    """v -> Ĥv with Ĥ = ((n−1)/m) Σ_k ∇²ℓ(θ; p_k) + l2·I over the m public samples.

    The (n−1)/m factor scales the public average to the size of the retained training set. For
    canonical-link GLMs the Hessian needs no labels; the squared-hinge SVM's does
    (`model.hessian_uses_labels`: pass `public_labels`). Never forms Ĥ: each product costs two
    multiplications by the [m, D] public feature matrix, so it serves any parameter count; vmap
    the returned function (or `hrec`) over deletions to batch the products into matrix products.

    `l2` is a scalar (l2·I), or an array shaped like θ for a per-coordinate regulariser
    diag(l2) (e.g. scikit-learn's unpenalised intercept: 0 on the bias row).

    Raises:
      ValueError: `public_labels` missing for a model whose Hessian needs them, or an array
        `l2` not shaped like θ.
    """
    _check_public_labels(model, public_labels)
    _check_l2(params, l2)
    m = public_features.shape[0]
    weights = jnp.full((m,), _public_scale(n_train, m, public_features.dtype))

    def matvec(v):
        return _models.hvp(model, params, public_features, weights, v, public_labels) + l2 * v

    return matvec


def public_hessian_matrix(
    model: Model,
    params: jax.Array,
    public_features: jax.Array,
    *,
    n_train: int | jax.Array,
    l2,
    public_labels: jax.Array | None = None,
) -> jax.Array:
    """Ĥ of `public_hessian_matvec` formed once as a dense [P, P] matrix (moderate P only).

    Forming it costs m·D²·K(K+1) FLOPs (`models.dense_hessian`); each product then costs 2P²
    instead of the matrix-free 4mP, so it pays off from about P/2 deletions on (a ridge or
    logistic model on 785 pixels: ~400). Wrap it with `dense_matvec`. `l2` as for
    `public_hessian_matvec` (a scalar, or per coordinate shaped like θ).
    """
    _check_public_labels(model, public_labels)
    _check_l2(params, l2)
    m = public_features.shape[0]
    weights = jnp.full((m,), _public_scale(n_train, m, public_features.dtype))
    return _models.dense_hessian(
        model, params, public_features, l2=l2, weights=weights, labels=public_labels
    )


def dense_matvec(matrix: jax.Array) -> Callable[[jax.Array], jax.Array]:
    """v -> M v over flattened parameters (vmapped over deletions: one matrix product)."""

    def matvec(v):
        return (matrix @ v.reshape(-1)).reshape(v.shape)

    return matvec


def hrec(
    model: Model,
    feature_map: FeatureMap,
    params_before: jax.Array,
    params_after: jax.Array,
    hessian_matvec: Callable[[jax.Array], jax.Array],
    *,
    invert: Callable[[jax.Array], jax.Array] | None = None,
    fallback: AttackResult | None = None,
    min_change: float | None = None,
) -> AttackResult:
    """Hessian-based reconstruction of one deleted record (Bertran et al., 2024).

    g = Ĥ(θ⁻ − θ⁺) estimates ∇ℓ(θ⁺; z_j) = p_j ⊗ ℓ'(θ⁺ᵀp_j, y_j); `decode_gradient` reads the
    features p̂, the label and a score from it:

    - Scalar-output models (ridge, logistic, binary SVM): p̂ = g / g[-1] and q̂ = g[-1] ≈ ℓ'.
    - Multi-output models (softmax, one-vs-rest SVM, one-hot ridge): the top singular pair of
      G = σ u vᵀ; a = σu = Gv is ∝ p_j, p̂ = a / a[-1], and q̂ = a[-1]·v ≈ ℓ'(Θ⁺ᵀp_j, y).
    - The label is `model.label_from_gradient(θ⁺ᵀp̂, q̂)`, one rule per family: ridge
      ŷ = ẑ − q̂; logistic and binary SVM ŷ = [q̂ < 0]; softmax ŷ = argmin q̂; one-vs-rest SVM
      the class whose ℓ'(ẑ, y) matches q̂; one-hot ridge argmax(ẑ − q̂) (see `models`).

    Exact (to round-off) when Ĥ is the true retained-data Hessian and θ⁻ comes from ridge or a
    Newton step with that Hessian; otherwise as accurate as Ĥ and the Newton-step approximation.
    The step p̂ -> x̂ is exact for identity features and numerical (`invert_features`) otherwise.

    Args:
      model: the model family.
      feature_map: the attacker-known φ; its `invert` maps p̂ back to input space.
      params_before: θ⁺.
      params_after: θ⁻ for this deletion.
      hessian_matvec: v -> Ĥv, e.g. `public_hessian_matvec(...)`.
      invert: p̂ [D] -> x̂ [d], overriding `feature_map.invert`; required for maps without a
        closed-form inverse (random Fourier features: `feature_inverter(...)`).
      fallback: what to answer when the deletion left no trace (‖θ⁻ − θ⁺‖ <= min_change·‖θ⁺‖):
        e.g. `avg(...)`, the attacker's prior guess. None: `no_signal` (zero reconstruction,
        unknown label, score 0).
        A deleted record with ℓ'(z_j, y_j) = 0 — an SVM record beyond the margin — does not
        move the optimum at all, so nothing can recover it; falling back to the prior is what a
        real attacker who sees θ⁻ = θ⁺ would do. The fallback's score is replaced by 0.
      min_change: relative parameter change below which a deletion counts as traceless
        (default √eps of the dtype: 1.5e-8 in float64, well above exact unlearning's round-off
        and well below the O(1/n) change of a real deletion).

    Returns:
      AttackResult(x̂ [d], ŷ, score).

    Raises:
      ValueError: no way back from p̂ to x (no `invert` and none on the feature map).

    References:
      Bertran, M. et al. "Reconstruction Attacks on Machine Unlearning: Simple Models are
      Vulnerable", NeurIPS 2024, §3 (Eq. for the Newton-step identity).
    """
    invert = _inverse(feature_map, invert)
    delta = params_after - params_before
    p_hat, y_hat, score = decode_gradient(model, params_before, hessian_matvec(delta))
    result = AttackResult(invert(p_hat), y_hat, score)
    limit = _min_change(min_change, delta.dtype) * jnp.linalg.norm(params_before)
    if fallback is None:
        fallback = no_signal(model, result)
    return _select(jnp.linalg.norm(delta) <= limit, fallback, result)


class Ingredients(NamedTuple):
    """The switches of `hrec_plus` (all off: HRec exactly).

    Attributes:
      box: clip x̂ to the data box (the attacker's prior on the input domain).
      shrinkage: each public sample's curvature blended toward its class mean
        (`shrunk_curvatures`, the intensity from `shrinkage_by_validation`,
        `shrinkage_intensity` or the caller); off: the raw public Ĥ. `hrec_plus` reads the Ĥ it
        is given; the switch tells its caller which one to build.
      path: Gauss–Legendre points of the path average ∫₀¹ Ĥ(θ⁺ + t(θ⁻ − θ⁺)) dt (0: Ĥ at θ⁺).
      sign_rule: where the bias coordinate of the decoded direction is not well determined,
        take sign and scale from the public data (`robust_direction`).
      refine: Adam steps of gradient matching started from the closed-form answer (0: none).
    """

    box: bool = True
    shrinkage: bool = True
    path: int = 0
    sign_rule: bool = True
    refine: int = 0


# A decoded direction's bias coordinate is "well determined" when |a₀|·r >= this·‖a‖, r the
# median public feature norm (exact gradients give r / ‖p_j‖, about 1 for a typical record).
SIGN_RULE_THRESHOLD = 0.2


def hrec_plus(
    model: Model,
    feature_map: FeatureMap,
    params_before: jax.Array,
    params_after: jax.Array,
    hessian_matvec: Callable[[jax.Array], jax.Array],
    *,
    ingredients: Ingredients,
    hessian_at: Callable[[jax.Array], Callable[[jax.Array], jax.Array]] | None = None,
    public_features: jax.Array,
    lower,
    upper,
    invert: Callable[[jax.Array], jax.Array] | None = None,
    fallback: AttackResult | None = None,
    label: jax.Array | None = None,
    loss_fn: Callable[[jax.Array, jax.Array, jax.Array], jax.Array] | None = None,
    min_change: float | None = None,
) -> AttackResult:
    """HRec with the attacker's other knowledge put to use (`Ingredients`, each switchable).

    g = Ĥ(θ⁻ − θ⁺) as in `hrec` (`hessian_matvec`: shrunk or not, the caller's choice), or with
    `ingredients.path` = q > 0 the path average Σ_t w_t Ĥ(θ_t)(θ⁻ − θ⁺) over
    q Gauss–Legendre points θ_t of the segment θ⁺ → θ⁻ (exact retraining satisfies
    ∇ℓ(θ⁺; z_j) = ∫₀¹ H₋(θ⁺ + tδ) dt · δ exactly, so this removes the Newton-step error; it
    matters where the loss is far from quadratic over δ). Then:

    - sign rule (`robust_direction`): a record whose decoded bias coordinate is small against
      the rest of the direction (exact gradients give |a₀|/‖a‖ = 1/‖p_j‖; the errors of Ĥ or of
      an inexact θ⁻ can swamp it, most easily for a well-fit record with ℓ' ≈ 0) gets its sign
      and scale from the public data instead of from dividing by noise;
    - `label` (the attacker knows it): used as ŷ and for the refinement;
    - refinement: `match_gradient` (Adam in the box) from x̂ with label ŷ;
    - box: x̂ clipped to [lower, upper].

    With every ingredient off (and the raw Ĥ) it is `hrec` exactly.

    Args:
      model, feature_map, params_before, params_after, invert, fallback, min_change: as `hrec`.
      hessian_matvec: v -> Ĥv at θ⁺.
      ingredients: the switches.
      hessian_at: θ -> (v -> Ĥ(θ)v), the same Ĥ at any point of the path (path > 0 only).
      public_features: [m, D] the attacker's public features (the sign rule's prior).
      lower, upper: the data box.
      label: the deleted record's label when the attacker knows it, else None.
      loss_fn: (θ, x [d], y) -> ℓ (the refinement needs it; `refine` > 0 only).

    Returns:
      AttackResult(x̂ [d], ŷ, score); score as `hrec`.
    """
    invert = _inverse(feature_map, invert)
    delta = params_after - params_before
    if ingredients.path:
        if hessian_at is None:
            raise ValueError("path > 0 needs hessian_at")
        grad = path_hessian_product(hessian_at, params_before, delta, ingredients.path)
    else:
        grad = hessian_matvec(delta)
    direction, v, score = gradient_direction(model, grad)
    if ingredients.sign_rule:
        scale = robust_direction(direction, public_features)
    else:
        scale = direction[-1]
    p_hat = direction / _nonzero(scale)
    q_hat = scale if v is None else scale * v
    y_hat = model.label_from_gradient(p_hat @ params_before, q_hat)
    if label is not None:
        y_hat = jnp.asarray(label).astype(y_hat.dtype)
    x_hat = invert(p_hat)
    if ingredients.refine:
        if loss_fn is None:
            raise ValueError("refine > 0 needs loss_fn")
        x_hat, y_hat, _ = match_gradient(
            loss_fn,
            params_before,
            grad,
            x_hat[None],
            y_hat[None],
            lower=lower,
            upper=upper,
            steps=ingredients.refine,
            learning_rate=0.01,
        )
    if ingredients.box:
        x_hat = jnp.clip(x_hat, jnp.asarray(lower, x_hat.dtype), jnp.asarray(upper, x_hat.dtype))
    result = AttackResult(x_hat, y_hat, score)
    limit = _min_change(min_change, delta.dtype) * jnp.linalg.norm(params_before)
    if fallback is None:
        fallback = no_signal(model, result)
    return _select(jnp.linalg.norm(delta) <= limit, fallback, result)


def path_hessian_product(
    hessian_at: Callable[[jax.Array], Callable[[jax.Array], jax.Array]],
    params: jax.Array,
    delta: jax.Array,
    points: int,
) -> jax.Array:
    """∫₀¹ H(θ + tδ) dt · δ by `points`-point Gauss–Legendre quadrature on [0, 1].

    For any twice-differentiable objective the integral is exactly ∇L(θ + δ) − ∇L(θ) (so with
    the retained-data Hessian and δ = θ⁻ − θ⁺ of exact retraining it is ∇ℓ(θ⁺; z_j)); the
    quadrature is exact for quadratic losses with one point and converges fast for smooth ones.
    """
    _validate.integer("points", points, minimum=1)
    nodes, weights = np.polynomial.legendre.leggauss(points)
    return sum(
        float(w) / 2 * hessian_at(params + float((t + 1) / 2) * delta)(delta)
        for t, w in zip(nodes, weights, strict=True)
    )


def gradient_direction(
    model: Model, grad: jax.Array
) -> tuple[jax.Array, jax.Array | None, jax.Array]:
    """(a, v, score) from g ≈ ∇ℓ(θ⁺; z_j) = p_j ⊗ ℓ'(z_j, y_j): a ∝ p_j [D] and, for
    multi-output models, the unit right singular vector v ∝ ℓ' (None for scalar outputs: a = g).
    `decode_gradient` divides by the bias coordinate a[-1]; score as there."""
    tiny = jnp.finfo(grad.dtype).tiny
    if model.num_outputs is None:
        return grad, None, jnp.abs(grad[-1]) / jnp.maximum(jnp.linalg.norm(grad), tiny)
    v, score = _top_right_singular(grad)
    return grad @ v, v, score


def robust_direction(
    direction: jax.Array, public_features: jax.Array, *, threshold: float = SIGN_RULE_THRESHOLD
) -> jax.Array:
    """The scale c to divide a direction a ∝ p_j = [φ(x_j), 1] by (p̂ = a / c, q̂ = c or c·v).

    Well determined (|a₀|·r >= threshold·‖a‖, r the median public feature norm): c = a₀, as
    HRec. Otherwise a₀ is at the noise level (a well-fit record, ℓ' ≈ 0) and dividing by it
    picks a random sign and a huge scale; then the public data decide: ‖p̂[:-1]‖ is the median
    public norm of φ(x) and the sign is the one whose p̂ lies nearer to a public sample (the
    data box and the data distribution are not symmetric about 0). Never changes a well
    determined answer.
    """
    tiny = jnp.finfo(direction.dtype).tiny
    body = public_features[:, :-1]
    radius = jnp.median(jnp.linalg.norm(body, axis=1))
    full = jnp.median(jnp.linalg.norm(public_features, axis=1))
    head, bias = direction[:-1], direction[-1]
    well = jnp.abs(bias) * full >= threshold * jnp.linalg.norm(direction)
    unit = head / jnp.maximum(jnp.linalg.norm(head), tiny)
    # ‖±r·u − b_k‖² = r² ∓ 2r·uᵀb_k + ‖b_k‖²: the nearer sign has the larger max of ±uᵀb_k
    # after the ‖b_k‖² terms.
    sq = jnp.sum(body * body, axis=1)
    proj = body @ unit
    plus = jnp.min(sq - 2 * radius * proj)
    minus = jnp.min(sq + 2 * radius * proj)
    sign = jnp.where(plus <= minus, 1.0, -1.0).astype(direction.dtype)
    prior = sign * jnp.linalg.norm(head) / jnp.maximum(radius, tiny)
    return jnp.where(well, bias, prior)


def shrinkage_intensity(
    features: jax.Array,
    curvatures: jax.Array,
    groups: jax.Array,
    num_groups: int,
    *,
    block: int = 512,
) -> jax.Array:
    """The Ledoit–Wolf intensity α ∈ [0, 1] for Ĥ_α = (1 − α)·S + α·T, from the public data.

    S = (1/m) Σ_k X_k with X_k = (p_k p_kᵀ) ⊗ C_k (the public Hessian's data term, up to its
    scale), T the same with each C_k replaced by its group's mean C̄_g (`shrunk_curvatures`;
    groups = the public labels: a class-structured target with far fewer free numbers). The
    Frobenius-optimal α is E‖S − H‖² / E‖S − T‖²; Ledoit & Wolf's estimate from the samples:

        β² = (1/m²) Σ_k ‖X_k − S‖² = (mean_k ‖X_k‖² − ‖S‖²) / m,   δ² = ‖S − T‖²,   α = β²/δ²

    clipped to [0, 1] (0 when T = S, e.g. ridge, whose curvature is constant). Every term is a
    sum of (p_kᵀp_l)²·⟨C_k, C_l⟩ over pairs, computed in row blocks of the [m, m] Gram matrix
    (never [P, P]): m²(D + K²) FLOPs.

    Args:
      features: [m, D] public features.
      curvatures: [m] or [m, K, K] per-sample curvatures C_k (`models.curvature_matrices`).
      groups: [m] int group of each sample in [0, num_groups).
      num_groups: G.
      block: rows per block of the Gram matrix.

    References:
      Ledoit, O. & Wolf, M. "A well-conditioned estimator for large-dimensional covariance
      matrices", J. Multivariate Anal. 88 (2004).
    """
    m = features.shape[0]
    flat = curvatures.reshape(m, -1)
    resid = flat - group_means(flat, groups, num_groups)[groups]
    sq = jnp.sum(features * features, axis=1)
    own = jnp.mean(sq**2 * jnp.sum(flat * flat, axis=1))
    rows = -(-m // block) * block
    pad = ((0, rows - m), (0, 0))
    blocks = [jnp.pad(a, pad).reshape(rows // block, block, -1) for a in (features, flat, resid)]

    def pair_sums(args):
        f, c, r = args
        gram2 = (f @ features.T) ** 2  # padded rows are zero and add nothing
        return jnp.stack([jnp.sum(gram2 * (c @ flat.T)), jnp.sum(gram2 * (r @ resid.T))])

    total, target = jnp.sum(lax.map(pair_sums, tuple(blocks)), axis=0) / m**2
    beta2 = jnp.maximum(own - total, 0) / m
    tiny = jnp.finfo(features.dtype).eps * total
    return jnp.where(target > tiny, jnp.clip(beta2 / jnp.maximum(target, tiny), 0, 1), 0.0)


# Candidate intensities of `shrinkage_by_validation`.
SHRINKAGE_GRID = tuple(i / 10 for i in range(11))


def shrinkage_by_validation(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    groups: jax.Array,
    num_groups: int,
    *,
    n_train,
    l2,
    records: int = 64,
    grid: Sequence[float] = SHRINKAGE_GRID,
    cg_steps: int = 200,
) -> jax.Array:
    """The shrinkage intensity α of the grid under which HRec reconstructs held-out public
    records best, from the public data alone (two folds, each in turn the "training" side).

    Fold B plays the retained training set: its Hessian H_B (scaled to n − 1 samples) and a
    Newton-step deletion δ_j = H_B⁻¹ ∇ℓ(θ; z_j) of `records` of its samples; fold A plays the
    attacker's public data: g_j(α) = Ĥ_A(α) δ_j with each of A's curvatures shrunk toward its
    group mean (`shrunk_curvatures`). g_j(α) is linear in α, so two products per record serve
    the whole grid. Score: the median cosine between the decoded features p̂ (without the bias
    coordinate, so no inversion is needed) and p_j (HRec's figure of merit; a mean would follow
    the few sign flips of tiny public sets). Each fold holds m/2 samples, so the α chosen is, if
    anything, larger than the full m needs: a conservative choice. Tiny public sets (folds that
    do not span the feature space) make the simulation noisy: Adult with m = 100 picks 0.7
    where 0.2–0.3 is best (RESULTS.md).

    Unlike a Frobenius-optimal intensity (`shrinkage_intensity`) it weighs the Hessian's errors
    the way HRec feels them: along H⁻¹g, where Ĥ is least well estimated.

    Args:
      model, params: the model family and θ⁺.
      features: [m] public features; labels: [m] their labels; groups: [m] their groups.
      num_groups: G.
      n_train, l2: the attacker's beliefs.
      records: held-out records per fold.
      grid: candidate intensities.
      cg_steps: CG steps of each δ_j (a rough solve suffices to rank α).

    Returns:
      α, a scalar of the grid.
    """
    m = features.shape[0]
    half = m // 2
    grid = jnp.asarray(grid, features.dtype)
    uses_labels = model.hessian_uses_labels

    def fold(a_rows, b_rows):
        fa, fb = features[a_rows], features[b_rows]
        la, lb = labels[a_rows], labels[b_rows]
        curv_a = _models.curvature_matrices(model, params, fa, la if uses_labels else None)
        curv_b = _models.curvature_matrices(model, params, fb, lb if uses_labels else None)
        scale_a = (jnp.asarray(n_train, fa.dtype) - 1) / fa.shape[0]
        scale_b = (jnp.asarray(n_train, fa.dtype) - 1) / fb.shape[0]
        target_a = group_means(curv_a, groups[a_rows], num_groups)[groups[a_rows]]
        count = min(records, fb.shape[0])

        def h_b(v):
            return scale_b * _models.curvature_hvp(fb, curv_b, v) + l2 * v

        def one(p, y):
            g = _models.per_example_grad(model, params, p, y)
            delta = _solvers.conjugate_gradient(h_b, g, tol=1e-6, max_steps=cg_steps)
            raw = scale_a * _models.curvature_hvp(fa, curv_a, delta) + l2 * delta
            shrunk = scale_a * _models.curvature_hvp(fa, target_a, delta) + l2 * delta

            def cosine(alpha):
                a, _, _ = gradient_direction(model, (1 - alpha) * raw + alpha * shrunk)
                p_hat = a / _nonzero(a[-1])
                return _metrics.cosine_similarity(p_hat[:-1], p[:-1])

            return jax.vmap(cosine)(grid)

        return jax.vmap(one)(fb[:count], lb[:count])  # [count, grid]

    rows = jnp.arange(2 * half)
    even, odd = rows[0::2], rows[1::2]
    scores = jnp.concatenate([fold(even, odd), fold(odd, even)])
    return grid[jnp.argmax(jnp.median(scores, axis=0))]


def group_means(values: jax.Array, groups: jax.Array, num_groups: int) -> jax.Array:
    """[G, ...] the mean of `values` [m, ...] over each group (0 for an empty group)."""
    sums = jax.ops.segment_sum(values, groups, num_groups)
    counts = jax.ops.segment_sum(jnp.ones_like(groups, values.dtype), groups, num_groups)
    counts = counts.reshape(counts.shape + (1,) * (values.ndim - 1))
    return sums / jnp.maximum(counts, 1)


def shrunk_curvatures(
    curvatures: jax.Array, groups: jax.Array, num_groups: int, alpha: jax.Array
) -> jax.Array:
    """(1 − α)·C_k + α·C̄_{g(k)}: each sample's curvature blended toward its group's mean, so
    Σ_k (p_k p_kᵀ) ⊗ C̃_k = (1 − α)·S + α·T of `shrinkage_intensity` (scaled by m)."""
    means = group_means(curvatures, groups, num_groups)
    return (1 - alpha) * curvatures + alpha * means[groups]


def no_signal(model: Model, like: AttackResult) -> AttackResult:
    """The answer for a deletion that left no trace: a zero reconstruction, an unknown label
    (NaN target for regression, class -1 otherwise) and score 0 — never noise divided by noise
    (e.g. a ridge record with zero residual r_j = 0 leaves θ⁻ = θ⁺)."""
    unknown = jnp.nan if model.task == REGRESSION else -1
    return AttackResult(
        jnp.zeros_like(like.x_hat),
        jnp.full_like(like.y_hat, unknown),
        jnp.zeros_like(like.score),
    )


def decode_gradient(
    model: Model, params_before: jax.Array, grad: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reads (p̂, ŷ, score) from an estimate g ≈ ∇ℓ(θ⁺; z_j) = p_j ⊗ ℓ'(z_j, y_j) of a GLM.

    See `hrec` for the rules. Exact when g is (the bias coordinate p[-1] = 1 fixes scale and
    sign), provided ℓ'(z_j, y_j) ≠ 0; a record with zero loss derivative (an SVM record beyond
    the margin) leaves no trace: then p̂ is undefined and score is 0.

    Args:
      model: the model family (needs `label_from_gradient`).
      params_before: θ⁺ [D] or [D, K].
      grad: g, same shape.

    Returns:
      p̂ [D], ŷ (int32 class, or a real target for regression), score in [0, 1].
    """
    if model.label_from_gradient is None:
        raise ValueError(f"model {model.name!r} has no label_from_gradient rule")
    a, v, score = gradient_direction(model, grad)
    p_hat = a / _nonzero(a[-1])
    q_hat = a[-1] if v is None else a[-1] * v
    y_hat = model.label_from_gradient(p_hat @ params_before, q_hat)
    return p_hat, y_hat, score


def informed(
    model: Model,
    feature_map: FeatureMap,
    params_before: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    weights: jax.Array,
    *,
    l2,
    invert: Callable[[jax.Array], jax.Array] | None = None,
    fallback: AttackResult | None = None,
    min_change: float | None = None,
) -> AttackResult:
    """The informed adversary (upper bound): knows every training record except the deleted one.

    At θ⁺ the full gradient vanishes, so ∇ℓ(θ⁺; z_j) = −∇L₋(θ⁺) = −(Σ_{i≠j} ∇ℓ(θ⁺; z_i) + l2·θ⁺)
    EXACTLY: no Hessian, no θ⁻ and no approximation; the rest is `decode_gradient` as in HRec.
    Exact up to the optimality of θ⁺ (its residual gradient adds to g) and, for features
    without a closed-form inverse, the numerical inversion.

    Args:
      model: the model family.
      feature_map: φ (its `invert` maps p̂ back to x).
      params_before: θ⁺, trained to convergence on all n records.
      features: [n, D] ALL training features (the adversary knows the retained ones; the
        deleted row is masked out by `weights`, its values are never used).
      labels: [n] training labels.
      weights: [n] 0/1 mask with 0 at the deleted record.
      l2: regulariser λ.
      invert: as for `hrec`.
      fallback: as for `hrec`, answered when ‖g‖ <= min_change·‖l2·θ⁺‖ (at the optimum the
        per-record gradients sum to −l2·θ⁺, which sets their scale): the record's gradient is
        zero up to θ⁺'s optimality residual.
      min_change: as for `hrec` (default √eps).

    Returns:
      AttackResult(x̂ [d], ŷ, score).

    References:
      Balle, B., Cherubin, G. & Hayes, J. "Reconstructing Training Data with Informed
      Adversaries", IEEE S&P 2022 (the informed adversary); DESIGN §3.4.
    """
    invert = _inverse(feature_map, invert)
    g = -_models.gradient(model, params_before, features, labels, l2=l2, weights=weights)
    p_hat, y_hat, score = decode_gradient(model, params_before, g)
    result = AttackResult(invert(p_hat), y_hat, score)
    if fallback is None:
        return result
    traceless = jnp.linalg.norm(g) <= _min_change(min_change, g.dtype) * jnp.linalg.norm(
        l2 * params_before
    )
    return _select(traceless, fallback, result)


def decode_records(
    model: Model, params_before: jax.Array, grad: jax.Array, count: int, *, iterations: int = 50
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Reads `count` records (p̂ [k, D], ŷ [k], score [k]) from g ≈ Σ_r p_r ⊗ ℓ'(z_r, y_r), the
    update of a request that deleted k records together.

    Multi-output models (softmax, one-hot ridge, one-vs-rest SVM): ℓ'(z_r, y_r) is negative in
    the column of the record's label, so the k most negative entries of the bias row
    g[-1] = Σ_r ℓ'_r name the labels and the columns G[:, c] / G[-1, c] start the records; then
    the records are refined by matching the model's own structure, min over p_1..p_k (bias
    coordinate 1) of ‖Σ_r p_r ℓ'(θ⁺ᵀp_r, y_r)ᵀ − G‖² (Gauss–Newton, CG on Jacobian products): a
    low-rank factorisation alone is not unique, this one is. Exact when g is exactly such a sum
    with distinct labels and the refinement reaches it; approximate otherwise (records of one
    label share a column and start alike).
    Scalar-output models (ridge, logistic, binary SVM): g is one vector, a weighted sum of the
    k records; nothing separates them, so every slot holds `decode_gradient`'s single answer.

    Args:
      model: the model family.
      params_before: θ⁺ [D] or [D, K].
      grad: g, same shape.
      count: k, records per request.
      iterations: Gauss–Newton steps of the refinement.

    Returns:
      p̂ [k, D], ŷ [k], score [k] (1 − the relative squared residual of the match).
    """
    _validate.integer("count", count, minimum=1)
    if model.num_outputs is None or count == 1:
        p_hat, y_hat, score = decode_gradient(model, params_before, grad)
        tile = lambda a: jnp.broadcast_to(a, (count,) + jnp.shape(a))  # noqa: E731
        return tile(p_hat), tile(y_hat), tile(score)
    tiny = jnp.finfo(grad.dtype).tiny
    labels = jnp.argsort(grad[-1])[:count].astype(jnp.int32)  # the k most negative bias entries
    start = grad[:, labels] / _nonzero(grad[-1, labels])[None, :]  # [D, k], bias row 1

    def residual(free):  # free [k, D-1]: the records without their bias coordinate
        p = jnp.concatenate([free, jnp.ones((count, 1), free.dtype)], axis=1)
        q = jax.vmap(lambda pr, yr: model.dloss_z(pr @ params_before, yr))(p, labels)
        return (p.T @ q - grad).reshape(-1)

    free = _gauss_newton_cg(residual, start.T[:, :-1], iterations)
    p_hat = jnp.concatenate([free, jnp.ones((count, 1), free.dtype)], axis=1)
    q = jax.vmap(lambda pr, yr: model.dloss_z(pr @ params_before, yr))(p_hat, labels)
    y_hat = jax.vmap(lambda p, qr: model.label_from_gradient(p @ params_before, qr))(p_hat, q)
    explained = 1 - jnp.sum(residual(free) ** 2) / jnp.maximum(jnp.sum(grad * grad), tiny)
    return p_hat, y_hat, jnp.full((count,), explained)


def _gauss_newton_cg(residual, x0, steps, cg_steps=30):
    """Damped Gauss–Newton on ‖r(x)‖², the normal equations solved by CG on J products (jvp,
    vjp), each step kept only if it lowers the loss."""

    def step(x, _):
        r, pullback = jax.vjp(residual, x)
        rhs = pullback(r)[0]
        scale = jnp.sum(rhs * rhs) / jnp.maximum(jnp.sum(r * r), jnp.finfo(x.dtype).tiny)
        damping = 1e-8 * scale + jnp.finfo(x.dtype).tiny

        def normal(v):
            jv = jax.jvp(residual, (x,), (v,))[1]
            return pullback(jv)[0] + damping * v

        move = _solvers.conjugate_gradient(normal, rhs, tol=1e-10, max_steps=cg_steps)
        new = x - move
        better = jnp.sum(residual(new) ** 2) < jnp.sum(r * r)
        return jnp.where(better, new, x), None

    x, _ = lax.scan(step, x0, None, length=steps)
    return x


def hrec_records(
    model: Model,
    feature_map: FeatureMap,
    params_before: jax.Array,
    params_after: jax.Array,
    hessian_matvec: Callable[[jax.Array], jax.Array],
    count: int,
    *,
    invert: Callable[[jax.Array], jax.Array] | None = None,
    fallback: AttackResult | None = None,
) -> AttackResult:
    """HRec for a request that deleted `count` records: g = Ĥ(θ⁻ − θ⁺) ≈ Σ_r ∇ℓ(θ⁺; z_r), read
    by `decode_records`. Returns AttackResult with x̂ [k, d], ŷ [k], score [k]; `fallback` (the
    prior, tiled) where the update left no trace, as in `hrec`."""
    invert = _inverse(feature_map, invert)
    delta = params_after - params_before
    p_hat, y_hat, score = decode_records(model, params_before, hessian_matvec(delta), count)
    result = AttackResult(jax.vmap(invert)(p_hat), y_hat, score)
    traceless = jnp.linalg.norm(delta) <= _min_change(None, delta.dtype) * jnp.linalg.norm(
        params_before
    )
    if fallback is None:
        fallback = no_signal(model, AttackResult(result.x_hat[0], result.y_hat[0], score[0]))
    tiled = jax.tree.map(lambda a: jnp.broadcast_to(a, (count,) + jnp.shape(a)), fallback)
    return _select(traceless, tiled, result)


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


def maxdiff_records(
    model: Model,
    params_before: jax.Array,
    params_after: jax.Array,
    public_features: jax.Array,
    public_x: jax.Array,
    public_labels: jax.Array,
    count: int,
) -> AttackResult:
    """MaxDiff for a request of `count` records: the `count` public samples whose predictions
    change most (x̂ [k, d], ŷ [k], score [k] the changes), the multi-record form of `maxdiff`."""
    before = _models.predict(model, params_before, public_features)
    after = _models.predict(model, params_after, public_features)
    change = (
        jnp.abs(after - before) if before.ndim == 1 else jnp.linalg.norm(after - before, axis=-1)
    )
    top, idx = lax.top_k(change, count)
    y_hat = public_labels[idx]
    if model.task != REGRESSION:
        y_hat = y_hat.astype(jnp.int32)
    return AttackResult(public_x[idx], y_hat, top)


class InversionResult(NamedTuple):
    """A numerical inversion of a feature map.

    Attributes:
      x_hat: [d] the best input found (inside the box).
      loss: its objective: ‖φ(x̂) − p̂‖² ("l2") or 1 − cos(φ(x̂), p̂) ("cosine").
    """

    x_hat: jax.Array
    loss: jax.Array


def invert_features(
    feature_fn: Callable[[jax.Array], jax.Array],
    target: jax.Array,
    starts: jax.Array,
    *,
    lower,
    upper,
    steps: int = 300,
    learning_rate: float = 0.05,
    objective: str = "l2",
    polish_steps: int = 5,
) -> InversionResult:
    """Embedding inversion: x̂ = argmin_{lower <= x <= upper} ‖φ(x) − p̂‖² (or max cos(φ(x), p̂)).

    From each start, `steps` of Adam (optax) with a cosine-decayed learning rate, projecting onto
    the box after every step; then, for "l2", `polish_steps` damped Gauss–Newton steps
    x ← clip(x − (JᵀJ + δI)⁻¹Jᵀ(φ(x) − p̂)), each kept only if it lowers the loss, which take a
    near-solution to round-off when p̂ is (close to) an exact image φ(x). The start with the
    lowest final loss wins. Approximate in general (non-convex: φ = cos(Wx + b) is periodic, so
    starts matter — the public mean and the nearest public samples in feature space
    (`inversion_starts`) sit in the right basin when σ is the median distance); exact to
    round-off given an exact p̂ and a start in its basin. Pure and vmappable over targets.

    Args:
      feature_fn: x [d] -> p [D] (e.g. `fmap.apply`, or `lambda x: rff_apply(params, x)`).
      target: p̂ [D] (bias coordinate included; it is 1 for both and cancels).
      starts: [S, d] starting inputs (clipped into the box).
      lower, upper: the data box (scalars or [d]).
      steps: Adam steps per start (>= 1).
      learning_rate: initial Adam learning rate, in input units.
      objective: "l2" or "cosine".
      polish_steps: Gauss–Newton steps after Adam ("l2" only; 0 to skip).

    Returns:
      InversionResult(x̂ [d], loss).

    Raises:
      ValueError: bad shapes, counts, rates or objective (naming the argument).
    """
    if objective not in ("l2", "cosine"):
        raise ValueError(f"objective must be 'l2' or 'cosine', got {objective!r}")
    _validate.integer("steps", steps, minimum=1)
    _validate.integer("polish_steps", polish_steps, minimum=0)
    _validate.positive("learning_rate", learning_rate)
    if starts.ndim != 2:
        raise ValueError(f"starts must be [S, d], got shape {starts.shape}")
    if target.ndim != 1:
        raise ValueError(f"target must be [D], got shape {target.shape}")
    dtype = starts.dtype

    def clip(x):
        return jnp.clip(x, jnp.asarray(lower, dtype), jnp.asarray(upper, dtype))

    def residual(x):
        return feature_fn(x) - target

    def loss(x):
        if objective == "l2":
            r = residual(x)
            return jnp.sum(r * r)
        p = feature_fn(x)
        cos = jnp.sum(p * target) / jnp.maximum(
            jnp.linalg.norm(p) * jnp.linalg.norm(target), jnp.finfo(dtype).tiny
        )
        return 1 - cos

    x, _ = _adam_box(loss, starts, clip, steps=steps, learning_rate=learning_rate)
    if objective == "l2" and polish_steps:
        x = jax.vmap(lambda x0: _gauss_newton(residual, x0, clip, polish_steps))(x)
    losses = jax.vmap(loss)(x)
    best = jnp.argmin(losses)
    return InversionResult(x[best], losses[best])


def inversion_starts(
    target: jax.Array,
    public_x: jax.Array,
    public_features: jax.Array,
    *,
    num_nearest: int = 2,
) -> jax.Array:
    """Starting points for `invert_features`: the public mean and the nearest public samples.

    Returns [1 + num_nearest, d]: the mean public input, then the `num_nearest` public inputs
    whose features are closest to p̂ (Euclidean, in feature space).
    """
    _validate.integer("num_nearest", num_nearest, minimum=0)
    mean = jnp.mean(public_x, axis=0, keepdims=True)
    if num_nearest == 0:
        return mean
    # ‖p_k − p̂‖² up to the constant ‖p̂‖², without an [m, D] temporary per target.
    dist = jnp.sum(public_features * public_features, axis=-1) - 2 * (public_features @ target)
    _, idx = lax.top_k(-dist, num_nearest)
    return jnp.concatenate([mean, public_x[idx]], axis=0)


# `feature_inverter(method="auto")` takes the batched RFF path when F >= this many times d.
RFF_INVERSION_MIN_RATIO = 4


def feature_inverter(
    feature_fn: Callable[[jax.Array], jax.Array],
    public_x: jax.Array,
    public_features: jax.Array,
    *,
    lower,
    upper,
    num_nearest: int = 2,
    steps: int = 300,
    learning_rate: float = 0.05,
    objective: str = "l2",
    polish_steps: int = 5,
    method: str = "auto",
) -> Callable[[jax.Array], jax.Array]:
    """p̂ -> x̂ from `inversion_starts`: pass as `hrec(..., invert=...)`.

    Two algorithms behind one interface. "rff" (`invert_rff`): for a random-Fourier-feature map
    (`feature_fn` is `FeatureMap.apply` of an "rff" map, i.e. `partial(rff_apply, params)`) and
    the "l2" objective — matrix products with W, so p̂ [D] or a batch [B, D] (or a vmap over
    deletions) is one batched problem; the Adam settings `steps` and `learning_rate` are then
    unused. "generic" (`invert_features`): Adam then Gauss–Newton by autodiff, for any
    differentiable φ. "auto" picks "rff" when it applies and the map has at least
    `RFF_INVERSION_MIN_RATIO` times more features than inputs: its phase step is a least-squares
    fit of x to F phases, which with F close to d fits the noise of p̂ (digits with 64 features
    of 64 pixels: median cosine 0.69 against 0.99 for "generic", which the Adam path's start near
    the public data keeps).

    Args:
      feature_fn: x [d] -> p [D] (e.g. `fmap.apply`).
      public_x: [m, d] the attacker's public inputs.
      public_features: [m, D] their features.
      lower, upper: the data box (scalars or [d]).
      num_nearest: nearest public samples used as starts, besides the public mean.
      steps, learning_rate, objective, polish_steps: as in `invert_features`.
      method: "auto", "rff" or "generic".

    Returns:
      invert: p̂ [..., D] -> x̂ [..., d].

    Raises:
      ValueError: bad `method` (or "rff" for a map that is not RFF or a "cosine" objective).
    """
    _validate.choice("method", method, ("auto", "rff", "generic"))
    params = _features.rff_params_of(feature_fn)
    structured = params is not None and objective == "l2"
    if method == "rff" and not structured:
        raise ValueError(
            "method: 'rff' needs feature_fn = FeatureMap.apply of an 'rff' map and objective "
            f"'l2', got objective {objective!r}"
        )
    overdetermined = structured and params.weights.shape[0] >= (
        RFF_INVERSION_MIN_RATIO * params.weights.shape[1]
    )
    if method == "rff" or (method == "auto" and overdetermined):
        _validate.integer("num_nearest", num_nearest, minimum=0)
        _validate.integer("polish_steps", polish_steps, minimum=0)
        gram_inverse = rff_gram_inverse(params, public_x.dtype)

        def invert_rff_batch(p_hat):
            starts = jnp.vectorize(
                lambda t: inversion_starts(t, public_x, public_features, num_nearest=num_nearest),
                signature="(D)->(s,d)",
            )(p_hat)
            return invert_rff(
                params,
                p_hat,
                starts,
                lower=lower,
                upper=upper,
                gram_inverse=gram_inverse,
                gn_steps=polish_steps,
            ).x_hat

        return invert_rff_batch

    def invert(p_hat):
        starts = inversion_starts(p_hat, public_x, public_features, num_nearest=num_nearest)
        return invert_features(
            feature_fn,
            p_hat,
            starts,
            lower=lower,
            upper=upper,
            steps=steps,
            learning_rate=learning_rate,
            objective=objective,
            polish_steps=polish_steps,
        ).x_hat

    return invert


def rff_gram_inverse(params: _features.RFFParams, dtype=None) -> jax.Array:
    """(WᵀW + δI)⁻¹ [d, d] for the RFF weights W [F, d]: `invert_rff`'s preconditioner.

    JᵀJ = (2/F) Wᵀ diag(sin²(Wx + b)) W and sin² averages 1/2 over the random phases, so WᵀW is
    JᵀJ up to a scale and an O(√(d/F)) relative error (random W): one Cholesky factor serves
    every target and start. δ = 1e-10·tr(WᵀW)/d keeps it invertible when F < d. Costs
    2Fd² + O(d³) once; compute it outside a loop over batches and pass it on.
    """
    dtype = params.weights.dtype if dtype is None else dtype
    weights = params.weights.astype(dtype)
    dim = weights.shape[1]
    gram = weights.T @ weights
    gram = gram + (1e-10 * jnp.trace(gram) / dim) * jnp.eye(dim, dtype=dtype)
    factor = jax.scipy.linalg.cho_factor(gram, lower=True)
    return jax.scipy.linalg.cho_solve(factor, jnp.eye(dim, dtype=dtype))


def invert_rff(
    params: _features.RFFParams,
    targets: jax.Array,
    starts: jax.Array,
    *,
    lower,
    upper,
    gram_inverse: jax.Array | None = None,
    keep: int = 1,
    phase_steps: int = 5,
    gn_steps: int = 5,
    cg_steps: int = 12,
) -> InversionResult:
    """Batched inversion of random Fourier features: x̂_b = argmin_{lower<=x<=upper} ‖φ(x) − p̂_b‖².

    φ(x) = √(2/F) cos(u), u = Wx + b, is known in closed form, so every step is a product with
    W or Wᵀ over all B targets at once ([B, d] x [d, F]) instead of autodiff per target:

    1. Starts: of the S starts per target, the `keep` with the lowest loss are refined.
    2. Phase steps (a closed-form start from arccos p̂): the phases that p̂ allows are
       u*_f ∈ ±arccos(p̂_f √(F/2)) + 2πℤ; take the branch nearest the current u_f and solve
       W Δ = u* − u in least squares, x ← clip(x + (WᵀW)⁻¹Wᵀ(u* − u)). Exact in one step when
       every branch is right; converges from phase errors of about a radian (the public mean
       or a nearest public sample at the median-distance bandwidth), where gradient steps need
       hundreds of iterations.
    3. Projected Gauss–Newton on the l2 objective (the right noise weighting near the folds
       of arccos): J = −√(2/F) diag(sin u) W; the free variables are those not held at a bound
       by the gradient (Bertsekas' projected Newton); (JᵀJ + δI) s = Jᵀr on them by `cg_steps`
       of conjugate gradients with matvecs Wᵀ(sin²u ⊙ Wv), preconditioned by (WᵀW)⁻¹
       (`rff_gram_inverse`); x ← clip(x − s), kept only if the loss drops.

    Exact to round-off from an exact p̂ = φ(x) and a start in its basin (Gauss–Newton converges
    quadratically on a zero residual); with noisy p̂ it reaches the same local minimum as
    `invert_features` (a box-constrained stationary point). Approximate in general: the problem
    is non-convex and the starts decide the basin. Cost per target, in units of F·d flops:
    2·S for the starts' losses, then per kept start 4·phase_steps + gn_steps·(6 + 4·cg_steps) + 2.

    Args:
      params: `RFFParams` (W [F, d], b [F]) of the map (`FeatureMap.params`).
      targets: p̂ [..., F + 1] (bias coordinate last; it is ignored).
      starts: [..., S, d] starting inputs per target (clipped into the box).
      lower, upper: the data box (scalars or [d]).
      gram_inverse: `rff_gram_inverse(params)` if already computed, else computed here.
      keep: starts refined per target (the best by initial loss; all if S <= keep).
      phase_steps: arccos phase steps (>= 0).
      gn_steps: projected Gauss–Newton steps (>= 0).
      cg_steps: conjugate-gradient iterations per Gauss–Newton step (>= 1).

    Returns:
      InversionResult(x̂ [..., d], loss [...]), in the dtype of `starts`.

    Raises:
      ValueError: bad shapes or counts, naming the argument.

    References:
      Rahimi & Recht, NeurIPS 2007 (the map); Bertsekas, "Projected Newton methods for
      optimization problems with simple constraints", SIAM J. Control Optim. 1982.
    """
    if not isinstance(params, _features.RFFParams):
        raise ValueError(f"params must be features.RFFParams, got {type(params).__name__}")
    num_features, dim = params.weights.shape
    targets, starts = jnp.asarray(targets), jnp.asarray(starts)
    if targets.ndim < 1 or targets.shape[-1] != num_features + 1:
        raise ValueError(f"targets must be [..., {num_features + 1}], got shape {targets.shape}")
    if starts.shape[:-2] != targets.shape[:-1] or starts.ndim < 2 or starts.shape[-1] != dim:
        raise ValueError(
            f"starts must be [..., S, {dim}] with leading shape {targets.shape[:-1]}, got shape "
            f"{starts.shape}"
        )
    _validate.integer("keep", keep, minimum=1)
    _validate.integer("phase_steps", phase_steps, minimum=0)
    _validate.integer("gn_steps", gn_steps, minimum=0)
    _validate.integer("cg_steps", cg_steps, minimum=1)
    dtype = starts.dtype
    if gram_inverse is None:
        gram_inverse = rff_gram_inverse(params, dtype)
    weights = params.weights.astype(dtype)
    gram_inverse = gram_inverse.astype(dtype)
    scale = jnp.sqrt(jnp.asarray(2.0 / num_features, dtype))
    x = starts
    target = targets[..., None, :-1].astype(dtype)  # [..., 1, F] against [..., S, F]

    def lead(a):  # a [] or [k] -> broadcastable against [..., S, k] (rank promotion is explicit)
        a = jnp.asarray(a, dtype)
        return a.reshape((1,) * (x.ndim - a.ndim) + a.shape)

    lo, hi, phases, row_norms = (
        lead(lower),
        lead(upper),
        lead(params.phases),
        lead(jnp.sum(weights * weights, axis=-1)),
    )

    def clip(x):
        return jnp.clip(x, lo, hi)

    def forward(v):  # [..., d] -> [..., F]: one matrix product over the whole batch
        return jnp.einsum("...d,fd->...f", v, weights)

    def backward(v):  # [..., F] -> [..., d]
        return jnp.einsum("...f,fd->...d", v, weights)

    def precond(v):
        return jnp.einsum("...d,de->...e", v, gram_inverse)

    def loss_at(u):
        r = scale * jnp.cos(u) - target
        return jnp.sum(r * r, axis=-1)

    x = clip(x)
    if keep < x.shape[-2]:
        _, best = lax.top_k(-loss_at(forward(x) + phases), keep)
        x = jnp.take_along_axis(x, best[..., None], axis=-2)
    folded = jnp.arccos(jnp.clip(target / scale, -1, 1))  # in [0, π]

    def phase_step(x, _):
        u = forward(x) + phases
        up = folded + 2 * jnp.pi * jnp.round((u - folded) / (2 * jnp.pi))
        down = -folded + 2 * jnp.pi * jnp.round((u + folded) / (2 * jnp.pi))
        nearest = jnp.where(jnp.abs(up - u) <= jnp.abs(down - u), up, down)
        return clip(x + precond(backward(nearest - u))), None

    x, _ = lax.scan(phase_step, x, None, length=phase_steps)

    def gn_step(x, _):
        u = forward(x) + phases
        slope = -scale * jnp.sin(u)  # dφ_f/du_f
        r = scale * jnp.cos(u) - target
        grad = backward(slope * r)  # Jᵀr
        free = ~(((x <= lo) & (grad > 0)) | ((x >= hi) & (grad < 0)))
        free = free.astype(dtype)
        curv = slope * slope
        damping = 1e-10 * jnp.sum(curv * row_norms, axis=-1, keepdims=True) / dim
        step = _batched_pcg(
            lambda v: free * backward(curv * forward(v)) + damping * v,
            free * grad,
            lambda v: free * precond(free * v),
            cg_steps,
        )
        new = clip(x - step)
        better = loss_at(forward(new) + phases) < jnp.sum(r * r, axis=-1)
        return jnp.where(better[..., None], new, x), None

    x, _ = lax.scan(gn_step, x, None, length=gn_steps)
    losses = loss_at(forward(x) + phases)
    best = jnp.argmin(losses, axis=-1)
    x_hat = jnp.take_along_axis(x, best[..., None, None], axis=-2)[..., 0, :]
    return InversionResult(x_hat, jnp.take_along_axis(losses, best[..., None], axis=-1)[..., 0])


def _batched_pcg(matvec, rhs, precond, steps):
    """`steps` of preconditioned CG from 0 on every row of rhs [..., d] at once (A acts row-wise).

    A fixed count (no data-dependent loop) keeps it one batched matrix product per iteration;
    rows that converge early stop moving (their α and β become 0).
    """

    def dot(a, b):
        return jnp.sum(a * b, axis=-1, keepdims=True)

    def safe_div(a, b):
        return jnp.where(b > 0, a / jnp.where(b > 0, b, 1), 0)

    def body(_, state):
        x, r, p, rz = state
        ap = matvec(p)
        alpha = safe_div(rz, dot(p, ap))
        x, r = x + alpha * p, r - alpha * ap
        z = precond(r)
        rz_new = dot(r, z)
        return x, r, z + safe_div(rz_new, rz) * p, rz_new

    z = precond(rhs)
    x, *_ = lax.fori_loop(0, steps, body, (jnp.zeros_like(rhs), rhs, z, dot(rhs, z)))
    return x


def gradmatch(
    loss_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
    params_before: Any,
    params_after: Any,
    hessian_matvec: Callable[[Any], Any],
    starts: jax.Array,
    candidate_labels: jax.Array,
    *,
    lower,
    upper,
    steps: int = 300,
    learning_rate: float = 0.05,
) -> AttackResult:
    """Gradient matching: the input whose loss gradient at θ⁺ points along g = Ĥ(θ⁻ − θ⁺).

        (x̂, ŷ) = argmax_{y ∈ candidates, lower <= x <= upper} cos(∇_θ ℓ(θ⁺; x, y), g)

    For every candidate label (vmapped) and start, Adam (optax, cosine-decayed learning rate) on
    x with projection onto the box; the best cosine wins. Works for any model differentiable in
    θ and x (the feature map goes inside `loss_fn`), so it needs no GLM structure and no known
    label; it is how HRec applies to non-GLMs. Approximate: non-convex in x, and as accurate as
    the Newton-step identity ∇ℓ(θ⁺; z_j) ≈ H₋(θ⁻ − θ⁺) and Ĥ. For a GLM with identity features
    the true record is a global maximiser when Ĥ is exact (cos = 1).

    Args:
      loss_fn: (θ, x [d], y) -> ℓ, e.g. `lambda t, x, y: models.loss(model, t, fmap.apply(x), y)`.
      params_before: θ⁺ (any pytree).
      params_after: θ⁻, same structure.
      hessian_matvec: v -> Ĥv on that structure (e.g. `public_hessian_matvec`).
      starts: [S, d] starting inputs (e.g. the public mean).
      candidate_labels: [C] labels to try (all classes when the label is unknown, or the one
        known label).
      lower, upper: the data box.
      steps: Adam steps per (label, start).
      learning_rate: initial Adam learning rate in input units.

    Returns:
      AttackResult(x̂ [d], ŷ, score = the best cosine).

    Raises:
      ValueError: bad shapes, counts or rates.

    References:
      Zhu, L., Liu, Z. & Han, S. "Deep Leakage from Gradients", NeurIPS 2019; Geiping, J. et al.
      "Inverting Gradients", NeurIPS 2020 (the cosine objective); DESIGN §3.2.
    """
    delta = jax.tree.map(lambda a, b: a - b, params_after, params_before)
    return match_gradient(
        loss_fn,
        params_before,
        hessian_matvec(delta),
        starts,
        candidate_labels,
        lower=lower,
        upper=upper,
        steps=steps,
        learning_rate=learning_rate,
    )


def match_gradient(
    loss_fn: Callable[[Any, jax.Array, jax.Array], jax.Array],
    params_before: Any,
    target: Any,
    starts: jax.Array,
    candidate_labels: jax.Array,
    *,
    lower,
    upper,
    steps: int = 300,
    learning_rate: float = 0.05,
) -> AttackResult:
    """argmax over y ∈ candidates and x in the box of cos(∇_θ ℓ(θ⁺; x, y), target): the search
    of `gradmatch` for a given target gradient (e.g. `hrec_plus`'s g, started from its answer).
    Arguments as `gradmatch`; `target` is shaped like θ."""
    _validate.integer("steps", steps, minimum=1)
    _validate.positive("learning_rate", learning_rate)
    if starts.ndim != 2:
        raise ValueError(f"starts must be [S, d], got shape {starts.shape}")
    if jnp.ndim(candidate_labels) != 1 or jnp.shape(candidate_labels)[0] < 1:
        raise ValueError(f"candidate_labels must be [C] with C >= 1, got {candidate_labels!r}")
    dtype = starts.dtype
    target, _ = ravel_pytree(target)
    target_norm = jnp.linalg.norm(target)
    tiny = jnp.finfo(dtype).tiny

    def clip(x):
        return jnp.clip(x, jnp.asarray(lower, dtype), jnp.asarray(upper, dtype))

    def neg_cos(x, y):
        grad, _ = ravel_pytree(jax.grad(loss_fn)(params_before, x, y))
        return -jnp.sum(grad * target) / jnp.maximum(jnp.linalg.norm(grad) * target_norm, tiny)

    def per_label(y):
        x, losses = _adam_box(
            lambda x: neg_cos(x, y), starts, clip, steps=steps, learning_rate=learning_rate
        )
        best = jnp.argmin(losses)
        return x[best], losses[best]

    xs, losses = jax.vmap(per_label)(jnp.asarray(candidate_labels))
    best = jnp.argmin(losses)
    return AttackResult(xs[best], jnp.asarray(candidate_labels)[best], -losses[best])


class UpdatesLeakDecoder(NamedTuple):
    """A trained Updates-Leak decoder (arrays only, so it can be a jit argument).

    Attributes:
      params: flax parameters of the MLP (hidden ReLU layers, an input head for x and, when
        trained with labels, a label head).
      in_mean, in_scale: [s] standardisation of the unit-normalised signatures.
      out_mean, out_scale: [d] standardisation of the targets.
      lower, upper: [d] the data box the reconstruction is clipped to.
    """

    params: Any
    in_mean: jax.Array
    in_scale: jax.Array
    out_mean: jax.Array
    out_scale: jax.Array
    lower: jax.Array
    upper: jax.Array


@functools.cache
def _decoder_class():
    """The decoder's flax module, defined on first use (`import jaxrecon` does not import flax)."""
    import flax.linen as nn

    class Decoder(nn.Module):
        """MLP: signature -> (x, label logits); widths fixed by the parameter shapes."""

        hidden: Sequence[int]
        out_dim: int
        label_dim: int

        @nn.compact
        def __call__(self, s):
            h = s
            for i, width in enumerate(self.hidden):
                h = nn.relu(nn.Dense(width, name=f"hidden_{i}")(h))
            x = nn.Dense(self.out_dim, name="x_head")(h)
            if self.label_dim == 0:
                return x, jnp.zeros(s.shape[:-1] + (0,), s.dtype)
            return x, nn.Dense(self.label_dim, name="label_head")(h)

    return Decoder


def updates_leak_signature(
    model: Model, params_before: jax.Array, params_after: jax.Array, probe_features: jax.Array
) -> jax.Array:
    """The update signature of Updates-Leak: posterior differences on a fixed probe set.

        s = vec(f_θ⁻(P_probe) − f_θ⁺(P_probe))     ([r] or [r·K] for r probes)

    where f is the model's prediction (probability, class probabilities, or scores). Exact.

    Args:
      model: the model family.
      params_before: θ⁺.
      params_after: θ⁻.
      probe_features: [r, D] features of r fixed public probe samples.
    """
    before = _models.predict(model, params_before, probe_features)
    after = _models.predict(model, params_after, probe_features)
    return (after - before).reshape(-1)


def fit_updates_leak_decoder(
    key: jax.Array,
    signatures: jax.Array,
    targets: jax.Array,
    labels: jax.Array | None = None,
    *,
    num_classes: int | None = None,
    lower,
    upper,
    hidden: Sequence[int] = (256,),
    steps: int = 2000,
    learning_rate: float = 1e-3,
    weight_decay: float = 1e-4,
) -> UpdatesLeakDecoder:
    """Trains the Updates-Leak decoder: update signature -> deleted record (Salem et al., 2020).

    Full-batch AdamW on the mean squared error of the standardised record, plus (with `labels`)
    the cross-entropy of the label head (classification, `num_classes` >= 2) or the squared
    error of a scalar label head (regression, `num_classes` None). Each signature is divided by
    its norm first (posterior changes shrink like 1/n, so the direction transfers between shadow
    and target models of different sizes), then standardised per coordinate. A learned,
    approximate baseline: as good as the shadow models imitate the target.

    Args:
      key: PRNG key (the initial weights).
      signatures: [N, s] from `updates_leak_signature` on shadow models.
      targets: [N, d] the shadow models' deleted inputs.
      labels: [N] their labels, or None (no label head; ŷ = -1).
      num_classes: classes of `labels`; None for real-valued labels.
      lower, upper: the data box (reconstructions are clipped to it).
      hidden: widths of the hidden ReLU layers.
      steps: full-batch optimisation steps.
      learning_rate: AdamW learning rate.
      weight_decay: AdamW weight decay.

    Returns:
      UpdatesLeakDecoder.

    Raises:
      ValueError: bad shapes, widths, counts or rates.

    References:
      Salem, A. et al. "Updates-Leak: Data Set Inference and Reconstruction Attacks in Online
      Learning", USENIX Security 2020, §6 (single-sample reconstruction).
    """
    if signatures.ndim != 2 or targets.ndim != 2 or signatures.shape[0] != targets.shape[0]:
        raise ValueError(
            f"signatures [N, s] and targets [N, d] must share N, got shapes {signatures.shape} "
            f"and {targets.shape}"
        )
    if labels is not None and jnp.shape(labels) != (signatures.shape[0],):
        raise ValueError(f"labels must be [N], got shape {jnp.shape(labels)}")
    if num_classes is not None and (isinstance(num_classes, bool) or int(num_classes) < 2):
        raise ValueError(f"num_classes must be None or an integer >= 2, got {num_classes!r}")
    if not hidden or any(isinstance(h, bool) or int(h) != h or h < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {hidden!r}")
    _validate.integer("steps", steps, minimum=1)
    _validate.positive("learning_rate", learning_rate)
    dtype = targets.dtype
    sig = _unit_rows(signatures.astype(dtype))
    in_mean = jnp.mean(sig, axis=0)
    in_scale = jnp.std(sig, axis=0) + 1e-8
    out_mean = jnp.mean(targets, axis=0)
    out_scale = jnp.std(targets, axis=0) + 1e-8
    inputs = (sig - in_mean[None, :]) / in_scale[None, :]
    outputs = (targets - out_mean[None, :]) / out_scale[None, :]
    label_dim = 0 if labels is None else (1 if num_classes is None else int(num_classes))
    net = _decoder_class()(tuple(int(h) for h in hidden), targets.shape[1], label_dim)
    params = jax.tree.map(lambda a: a.astype(dtype), net.init(key, inputs[:1]))

    def objective(params):
        x_pred, y_pred = net.apply(params, inputs)
        value = jnp.mean((x_pred - outputs) ** 2)
        if labels is None:
            return value
        if num_classes is None:
            return value + jnp.mean((y_pred[:, 0] - labels) ** 2)
        return value + jnp.mean(optax.softmax_cross_entropy_with_integer_labels(y_pred, labels))

    opt = optax.adamw(learning_rate, weight_decay=weight_decay)

    def step(carry, _):
        params, state = carry
        grads = jax.grad(objective)(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), None

    (params, _), _ = lax.scan(step, (params, opt.init(params)), None, length=steps)
    box = jnp.broadcast_to(jnp.asarray(lower, dtype), out_mean.shape)
    top = jnp.broadcast_to(jnp.asarray(upper, dtype), out_mean.shape)
    return UpdatesLeakDecoder(params, in_mean, in_scale, out_mean, out_scale, box, top)


def apply_updates_leak_decoder(decoder: UpdatesLeakDecoder, signature: jax.Array) -> AttackResult:
    """The Updates-Leak reconstruction from one target update signature [s].

    x̂ = clip(out_mean + out_scale·MLP_x(ŝ)), ŝ the standardised unit signature; ŷ = argmax of
    the label head (score: its probability), the real-valued head for regression, or -1 without
    a label head (score 0). Pure; vmap over signatures.
    """
    layers = decoder.params["params"]
    hidden = tuple(
        layers[f"hidden_{i}"]["kernel"].shape[1]
        for i in range(sum(name.startswith("hidden_") for name in layers))
    )
    label_dim = layers["label_head"]["kernel"].shape[1] if "label_head" in layers else 0
    net = _decoder_class()(hidden, decoder.out_mean.shape[0], label_dim)
    sig = _unit_rows(signature[None].astype(decoder.in_mean.dtype))[0] - decoder.in_mean
    x_std, y_out = net.apply(decoder.params, sig / decoder.in_scale)
    x_hat = jnp.clip(decoder.out_mean + decoder.out_scale * x_std, decoder.lower, decoder.upper)
    if label_dim == 0:
        return AttackResult(x_hat, jnp.asarray(-1, jnp.int32), jnp.zeros((), x_hat.dtype))
    if label_dim == 1:
        return AttackResult(x_hat, y_out[0], jnp.zeros((), x_hat.dtype))
    probs = jax.nn.softmax(y_out)
    y_hat = jnp.argmax(probs).astype(jnp.int32)
    return AttackResult(x_hat, y_hat, probs[y_hat])


def _adam_box(loss, starts, clip, *, steps, learning_rate):
    """Projected Adam from each start (vmapped); returns final x [S, d] and losses [S]."""
    schedule = optax.cosine_decay_schedule(learning_rate, steps)
    opt = optax.adam(schedule)

    def run(x0):
        x0 = clip(x0)

        def step(carry, _):
            x, state = carry
            grad = jax.grad(loss)(x)
            updates, state = opt.update(grad, state, x)
            return (clip(optax.apply_updates(x, updates)), state), None

        (x, _), _ = lax.scan(step, (x0, opt.init(x0)), None, length=steps)
        return x, loss(x)

    return jax.vmap(run)(starts)


def _gauss_newton(residual, x0, clip, num_steps):
    """Damped Gauss–Newton on ‖r(x)‖², each step kept only if it lowers the loss."""
    dim = x0.shape[0]

    def step(x, _):
        r = residual(x)
        jac = jax.jacfwd(residual)(x)
        jtj = jac.T @ jac
        damping = 1e-10 * jnp.trace(jtj) / dim + jnp.finfo(x.dtype).tiny
        # CG rather than LAPACK (see `_top_right_singular`); JᵀJ + δI is SPD and d is small.
        system = jtj + damping * jnp.eye(dim, dtype=x.dtype)
        step = _solvers.conjugate_gradient(
            lambda v: system @ v, jac.T @ r, tol=1e-14, max_steps=2 * dim
        )
        new = clip(x - step)
        r_new = residual(new)
        return jnp.where(jnp.sum(r_new * r_new) < jnp.sum(r * r), new, x), None

    x, _ = lax.scan(step, x0, None, length=num_steps)
    return x


def _top_right_singular(g: jax.Array, iterations: int = 100) -> tuple[jax.Array, jax.Array]:
    """Top right singular vector v of g [D, K] and σ₁² / ‖g‖²_F, by power iteration on gᵀg.

    Pure XLA ops instead of LAPACK's eigh: a vmapped eigh next to other batched work in one jitted
    kernel wedged XLA's CPU thread pool (jax 0.10.1). Starts from the column of gᵀg with the
    largest diagonal entry, which is exactly the top vector when g is rank one; otherwise the
    error shrinks like (σ₂/σ₁)^(2·iterations).
    """
    tiny = jnp.finfo(g.dtype).tiny
    gram = g.T @ g
    gram = gram / jnp.maximum(jnp.trace(gram), tiny)

    def unit(v):
        return v / jnp.maximum(jnp.linalg.norm(v), tiny)

    start = gram[:, jnp.argmax(jnp.diagonal(gram))]
    v = lax.fori_loop(0, iterations, lambda _, v: unit(gram @ v), unit(start))
    return v, v @ gram @ v


def _min_change(min_change, dtype) -> float:
    return float(jnp.finfo(dtype).eps) ** 0.5 if min_change is None else min_change


def _select(traceless: jax.Array, fallback: AttackResult, result: AttackResult) -> AttackResult:
    """`fallback` (score 0) where `traceless`, else `result`; dtypes follow `result`."""
    return AttackResult(
        jnp.where(traceless, fallback.x_hat.astype(result.x_hat.dtype), result.x_hat),
        jnp.where(traceless, jnp.asarray(fallback.y_hat).astype(result.y_hat.dtype), result.y_hat),
        jnp.where(traceless, jnp.zeros_like(result.score), result.score),
    )


def _unit_rows(x: jax.Array) -> jax.Array:
    norm = jnp.linalg.norm(x, axis=-1, keepdims=True)
    return x / jnp.where(norm > 0, norm, 1)


def _inverse(feature_map: FeatureMap, invert):
    if invert is not None:
        return invert
    if feature_map.invert is None:
        raise ValueError(
            f"feature map {feature_map.name!r} has no closed-form inverse; pass invert= "
            "(e.g. attacks.feature_inverter(...))"
        )
    return feature_map.invert


def _public_scale(n_train, m: int, dtype) -> jax.Array:
    """(n − 1)/m in `dtype`: scales the m public samples to the n − 1 retained training samples.

    `n_train` may be a traced scalar (an attacker's belief about n, swept under vmap)."""
    return (jnp.asarray(n_train, dtype) - 1) / m


def _check_public_labels(model: Model, public_labels) -> None:
    if model.hessian_uses_labels and public_labels is None:
        raise ValueError(
            f"public_labels is None, but the {model.name!r} Hessian depends on the labels"
        )


def _check_l2(params: jax.Array, l2) -> None:
    if jnp.ndim(l2) != 0 and jnp.shape(l2) != params.shape:
        raise ValueError(
            f"l2 must be a scalar or shaped like the parameters {params.shape}, got shape "
            f"{jnp.shape(l2)}"
        )


def _nonzero(x: jax.Array) -> jax.Array:
    """x, pushed away from zero to the smallest normal number (keeps the sign; 0 -> +tiny)."""
    tiny = jnp.finfo(x.dtype).tiny
    return jnp.where(jnp.abs(x) < tiny, jnp.where(x < 0, -tiny, tiny), x)
