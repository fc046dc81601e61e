"""Audits of released models: the attack half of a scenario on snapshots read from files.

    result = jaxrecon.audit("before.skops", ["after.skops"], "public.npz", n=1000)
    result.hrec.x_hat                # [B, d]: the deleted records HRec rebuilds
    summary(result)                  # what `jaxrecon audit` writes to summary.json

`audit` is the front door (the mirror of `jaxrecon audit`): snapshots as files, `Snapshot`s,
fitted scikit-learn estimators or arrays, public data as a file or arrays. Below it
`run_audit(before, afters, public_x, public_y, ...)` takes `Snapshot`s and arrays, and
`run_audit_sequence` attacks a sequence of releases pair by pair (the attacker's n one smaller
each step, as `jaxrecon run --sequential`).

No training data and no training: θ⁺ and each θ⁻ come from the released files (`snapshots`), and
the attacker's knowledge is a `scenario.Attacker` built from public data (DESIGN §2): the
training-set size n and the regulariser it believes, its public samples (inputs as the model
sees them, with labels). HRec, Avg and MaxDiff then run exactly as in `reconstruction` (the
same `attacks` kernels with the `reconstruction.attacker_hessian_matvec` Hessian,
Ĥ = ((n−1)/m) Σ_pub ∇²ℓ(θ⁺) + diag(λ), here with a per-coordinate λ: scikit-learn leaves the
intercept unpenalised). Features: identity, p = [x, 1], or random Fourier features
p = [√(2/F) cos(Wx + b), 1] whose draw (W, b) the auditor holds; HRec then recovers p̂ and the
embedding inversion of `jaxrecon run --features rff` (`attacks.feature_inverter`) maps it back
to x. On jaxrecon's own runs (`w`, `b` snapshots, its n and λ) the audit reproduces
`reconstruction.make_attack`'s HRec to round-off (tested).

What the snapshots identify, and what they do not (the honest part of an audit). Write
Ĥ = (n−1)·A + λΛ with A the mean public Hessian and Λ the penalty pattern.

- HRec reads p̂ = g / g_bias from g = Ĥ(θ⁻ − θ⁺): scaling Ĥ does not change p̂, so the
  reconstruction depends on n and λ only through ρ = λ/(n−1), and so do the labels of
  classifiers (a sign or an argmin). Doubling n − 1 and λ together changes nothing (tested);
  ridge's label ŷ = θ⁺ᵀp̂ − g_bias also needs the scale n − 1.
- ρ from θ⁺ alone (`stationarity_l2_per_sample`): at θ⁺, Σ_train ∇ℓ_i + λΛθ⁺ = 0; the public
  analogue ḡ = mean_pub ∇ℓ(θ⁺) ≈ −(λ/n)Λθ⁺ gives λ/n by least squares. Exact when the public
  data are the training set; otherwise biased low by θ⁺'s optimism (≈ tr(ΣH⁻¹)/(n‖Λθ⁺‖²))
  and noisy (≈ ‖Λθ⁺‖⁻¹ √(θᵀΣθ/n)), so informative only for strongly regularised models. The
  residual ‖ḡ + ρ̂Λθ⁺‖/‖ḡ‖ says how much of ḡ stationarity explains (near 1: nothing; on
  digits with λ = 1 it is 0.95-0.99 and the estimate is useless).
- n − 1 from the updates (`update_scale`, classifiers): the bias row of g is the deleted
  record's loss derivative ℓ'(θ⁺ᵀp_j, y_j), which the recovered p̂ and ŷ predict; the ratio,
  pooled over the deletions, fixes the scale of Ĥ, i.e. n − 1 (for a known λ by secant
  iterations, as ρ = λ/(n−1)). Exact when Ĥ is the retained data's Hessian and θ⁻ a Newton
  step (tested). With public data and exact refits it is rough: 0.8-0.9·n on digits, 2.6·n on
  a near-separable 3-class subset whose records the model fits with certainty (ℓ' ≈ 0).
  Ridge: ℓ' = z − y with y unknown, so the scale comes from the residuals' moments instead
  (`residual_scale`: deleted records' residuals are spread like the public ones).

`run_audit` uses, for each of n and λ, what the user gives, else what the file records (λ from
`alpha`/`C`; SGD's n), else these estimates, and says which (`Beliefs`). Because the estimates
can be weak, it reports the sensitivity: the reconstruction rerun with n and with λ scaled by
0.5 and 2, and its cosine to the nominal one; values near 1 mean the beliefs do not matter.

SGD (`l2_per_sample` snapshots) minimises (1/n)Σℓ + α·½‖w‖², so its λ = n·α shrinks with the
deletion: ∇ℓ(θ⁺; z_j) = H₋(θ⁻ − θ⁺) + (λ⁻ − λ⁺)Λθ⁺ with λ⁻ − λ⁺ = −α, a known shift added to g.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import _validate
from jaxrecon import attacks as _attacks
from jaxrecon import features as _features
from jaxrecon import metrics as _metrics
from jaxrecon import models as _models
from jaxrecon import snapshots as _snapshots
from jaxrecon.attacks import AttackResult
from jaxrecon.errors import InputError
from jaxrecon.models import REGRESSION, Model
from jaxrecon.scenario import Attacker, Data

# Beliefs scaled by these factors, one at a time, for the sensitivity report.
SENSITIVITY = (("n_train", 0.5), ("n_train", 2.0), ("l2", 0.5), ("l2", 2.0))
SCALE_ITERATIONS = 30
_FEATURES = ("identity", "rff")


class Beliefs(NamedTuple):
    """What the audit's attacker uses, and where each value came from.

    Attributes:
      n_train: n (Ĥ is scaled to n − 1 public samples).
      l2: λ on the weight rows of θ⁺'s objective.
      l2_bias: λ on the bias row.
      l2_after: λ on the weight rows of θ⁻'s objective (differs from `l2` only for SGD).
      n_source, l2_source: "given", "snapshot: ..." or "estimated: ...".
    """

    n_train: float
    l2: float
    l2_bias: float
    l2_after: float
    n_source: str
    l2_source: str


class Estimates(NamedTuple):
    """What the snapshots and the public data say about n and λ (computed in every audit).

    Attributes:
      l2_per_sample: λ/n from stationarity at θ⁺ on the public data (may be <= 0: uninformative).
      stationarity_residual: ‖ḡ + ρ̂Λθ⁺‖ / ‖ḡ‖ (near 1: stationarity explains nothing).
      n_train: n from the deletions pooled (`update_scale` for classifiers, `residual_scale`
        for ridge), NaN when no deletion left a usable trace.
      n_train_per_deletion: [B] one deletion's value each (noisy; for inspection).
    """

    l2_per_sample: float
    stationarity_residual: float
    n_train: float
    n_train_per_deletion: np.ndarray


class AuditResult(NamedTuple):
    """One audit: reconstructions of B deletions from θ⁺ and θ⁻_1..B.

    Attributes:
      model: the model family.
      before: θ⁺'s snapshot; after_sources: where each θ⁻ came from.
      public_count: m.
      beliefs, estimates: see `Beliefs`, `Estimates`.
      hrec, avg, maxdiff: `AttackResult`s batched over the B deletions (labels as class
        indices; `class_label` maps them to the estimator's classes).
      sensitivity: {"n_train x0.5": [B] cosine to the nominal HRec reconstruction, ...}.
      label_spread: [B] how far HRec's label moves under the perturbed beliefs: the largest
        |ŷ' − ŷ| (ridge), or 1 when some perturbation changes the class and 0 when none does.
      hessian_extremes: smallest and largest eigenvalue of Ĥ (condition number: how much HRec
        amplifies estimation noise; a zero minimum is an unpenalised flat direction, e.g.
        softmax's intercepts, which HRec never inverts).
      truth: when the deleted records were given: {attack: {"cosine": [B], "mse": [B],
        "label_correct": [B] (classifiers, labels given) or None, "label_error": |ŷ − y| [B]
        (ridge, labels given) or None}}, else None.
      feature_params: the random Fourier draw θ is over (reconstructions are inputs x,
        inverted from φ), or None (identity features).
    """

    model: Model
    before: _snapshots.Snapshot
    after_sources: tuple[str, ...]
    public_count: int
    beliefs: Beliefs
    estimates: Estimates
    hrec: AttackResult
    avg: AttackResult
    maxdiff: AttackResult
    sensitivity: dict[str, np.ndarray]
    label_spread: np.ndarray
    hessian_extremes: tuple[float, float]
    truth: dict[str, dict[str, Any]] | None
    feature_params: _features.RFFParams | None = None


# ---------------------------------------------------------------------------------------------
# The composition (pure, jittable): the attacker, its Hessian, HRec, the estimates.


def make_audit_attacker(
    public_x: jax.Array,
    public_labels: jax.Array,
    *,
    n_train,
    l2: jax.Array,
    feature_params: _features.RFFParams | None = None,
) -> Attacker:
    """An `Attacker` holding public data as the released model sees it.

    Args:
      public_x: [m, d] inputs (raw inputs x; the model's features are φ(x)).
      public_labels: [m] labels as the model learns them (class indices or real targets).
      n_train: the believed n (a scalar; a float is fine, e.g. n scaled for a sensitivity run).
      l2: the believed λ, a scalar or per coordinate shaped like θ.
      feature_params: the random Fourier draw of φ (`features.RFFParams`), None for identity.
    """
    x = jnp.asarray(public_x)
    fmap = _features.feature_map(feature_params)
    public = Data(x, fmap.apply(x), jnp.asarray(public_labels))
    return Attacker(public, jnp.asarray(n_train, x.dtype), jnp.asarray(l2, x.dtype))


def hessian_matvec(model: Model, params: jax.Array, attacker: Attacker):
    """v -> Ĥv, Ĥ = ((n−1)/m) Σ_pub ∇²ℓ(θ⁺; p_k) + diag(λ) with the attacker's beliefs (the
    semantics of `reconstruction.attacker_hessian_matvec`, without a scenario)."""
    labels = attacker.public.labels if model.hessian_uses_labels else None
    return _attacks.public_hessian_matvec(
        model,
        params,
        attacker.public.features,
        n_train=attacker.n_train,
        l2=attacker.l2,
        public_labels=labels,
    )


def hrec_batch(
    model: Model,
    params: jax.Array,
    thetas_after: jax.Array,
    attacker: Attacker,
    shift: jax.Array | None = None,
    feature_params: _features.RFFParams | None = None,
) -> AttackResult:
    """HRec on each θ⁻ [B, ...] with the attacker's Ĥ; the Avg guess where θ⁻ = θ⁺.

    `shift` (shaped like θ) is added to g = Ĥ(θ⁻ − θ⁺) (SGD: (λ⁻ − λ⁺)Λθ⁺, see the module
    docstring); None adds nothing. With random Fourier features (`feature_params`) HRec recovers
    p̂ ≈ φ(x_j) and `attacks.feature_inverter` maps it back to the input, as `jaxrecon run
    --features rff` does, inside the box [min, max] of the public inputs.
    """
    matvec = hessian_matvec(model, params, attacker)
    target = matvec if shift is None else (lambda v: matvec(v) + shift)
    prior = _prior(model, attacker)
    fmap = _features.feature_map(feature_params)
    invert = None
    if fmap.invert is None:
        x = attacker.public.x
        invert = _attacks.feature_inverter(
            fmap.apply, x, attacker.public.features, lower=jnp.min(x), upper=jnp.max(x)
        )
    return jax.vmap(
        lambda t: _attacks.hrec(model, fmap, params, t, target, invert=invert, fallback=prior)
    )(thetas_after)


def stationarity_l2_per_sample(
    model: Model, params: jax.Array, public: Data, pattern: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """λ/n from θ⁺'s stationarity on public data: ρ̂ = −⟨ḡ, Λθ⁺⟩ / ‖Λθ⁺‖², ḡ the mean public
    gradient at θ⁺ and Λ = `pattern` (shaped like θ: 1 on the weights, the bias penalty on the
    bias row). Exact when the public data are the training set. Returns (ρ̂, residual)."""
    m = public.features.shape[0]
    weights = jnp.full((m,), 1.0 / m, public.features.dtype)
    mean_grad = _models.gradient(
        model, params, public.features, public.labels, l2=0.0, weights=weights
    )
    v = pattern * params
    rho = -jnp.sum(mean_grad * v) / jnp.maximum(jnp.sum(v * v), jnp.finfo(v.dtype).tiny)
    residual = jnp.linalg.norm(mean_grad + rho * v) / jnp.maximum(
        jnp.linalg.norm(mean_grad), jnp.finfo(v.dtype).tiny
    )
    return rho, residual


def update_scale(
    model: Model,
    params: jax.Array,
    thetas_after: jax.Array,
    public: Data,
    pattern: jax.Array,
    *,
    l2=None,
    rho=None,
    shift_per_sample=0.0,
    iterations: int = SCALE_ITERATIONS,
) -> tuple[jax.Array, jax.Array]:
    """n − 1 from the size of the updates (classifiers; see the module docstring).

    With u_j = (A + ρΛ)(θ⁻_j − θ⁺) (A the mean public Hessian) deleted record j's gradient is
    g_j = s·u_j + c, s = n − 1, c = −shift_per_sample·Λθ⁺ (SGD); its bias row must equal
    ℓ'(θ⁺ᵀp̂_j, ŷ_j) of the record HRec reads from g_j. Pooled over the B deletions by least
    squares, s = Σ_j ⟨ℓ'_j − c_b, u_j,b⟩ / Σ_j ‖u_j,b‖², solved by secant iterations with
    ρ = l2 / s (λ known) or ρ = `rho` (fixed), from the ρ = 0 value. Records with a large
    |ℓ'| (near or across the decision boundary) weigh most, and their ℓ' is the best
    recovered. Exact when A·(n−1) + λΛ is the retained data's Hessian and θ⁻ a Newton step;
    with a public A and exact retraining it inherits the gap between public and training
    curvature (a model is more confident on its training records: about 15% low on digits).
    Ridge (ℓ' = z − y, y unknown) is not identified this way (`residual_scale`).

    Returns:
      (pooled s, per-deletion s_j [B] at the pooled ρ: noisy, for inspection).
    """
    # n_train = 2 scales the public sum by 1/m: A, the mean public Hessian.
    two = jnp.asarray(2.0, params.dtype)
    c = -shift_per_sample * pattern * params
    deltas = thetas_after - params[None]
    tiny = jnp.finfo(params.dtype).tiny

    def terms(s, r):
        """⟨ℓ'_j − c_b, u_j,b⟩ and ‖u_j,b‖² per deletion."""
        matvec = hessian_matvec(model, params, Attacker(public, two, r * pattern))

        def one(delta):
            u = matvec(delta)
            p_hat, y_hat, _ = _attacks.decode_gradient(model, params, s * u + c)
            predicted = model.dloss_z(p_hat @ params, y_hat)
            return jnp.sum((predicted - c[-1]) * u[-1]), jnp.sum(u[-1] * u[-1])

        return jax.vmap(one)(deltas)

    def ratio(s, r):
        num, den = terms(s, r)
        return jnp.sum(num) / jnp.maximum(jnp.sum(den), tiny)

    def rho_at(s):
        return jnp.asarray(rho if l2 is None else l2 / jnp.maximum(s, 1.0), params.dtype)

    def residual(s):
        return ratio(s, rho_at(s)) - s

    # Secant iterations on map(s) − s = 0 (plain iteration of the map converges slowly).
    s0 = ratio(jnp.ones((), params.dtype), jnp.zeros((), params.dtype))
    s1 = s0 + residual(s0)

    def body(_, state):
        s0, h0, s1, h1 = state
        slope = h1 - h0
        ok = (jnp.abs(slope) > tiny) & (s1 != s0)
        s2 = jnp.where(ok, s1 - h1 * (s1 - s0) / jnp.where(ok, slope, 1.0), s1)
        s2 = jnp.maximum(s2, 1e-3 * jnp.abs(s1))  # stay on the positive side
        return s1, h1, s2, residual(s2)

    state = (s0, residual(s0), s1, residual(s1))
    pooled = jax.lax.fori_loop(0, iterations, body, state)[2]
    num, den = terms(pooled, rho_at(pooled))
    return pooled, num / jnp.maximum(den, tiny)


def residual_scale(
    model: Model,
    params: jax.Array,
    thetas_after: jax.Array,
    public: Data,
    pattern: jax.Array,
    *,
    l2=None,
    rho=None,
    iterations: int = 10,
) -> tuple[jax.Array, jax.Array]:
    """n − 1 for ridge (scalar squared loss), from the moments of the residuals.

    The bias coordinate of the record's gradient is its residual r_j = θ⁺ᵀp_j − y_j = s·u_b
    (u as in `update_scale`, s = n − 1), and residuals of deleted records are spread like the
    public residuals r_k = θ⁺ᵀp_k − y_k, so s² ≈ mean_pub r_k² / mean_B u_b². A moment
    estimate: it needs several deletions (one gives a χ²₁-noisy value), and is biased high by
    about D/n (training residuals are smaller than fresh ones). ρ = l2 / s (λ known, iterated)
    or `rho`. Returns (pooled s, per-deletion s_j = rms(r) / |u_b,j|).
    """
    two = jnp.asarray(2.0, params.dtype)
    resid = public.features @ params - public.labels
    rms = jnp.sqrt(jnp.mean(resid * resid))
    deltas = thetas_after - params[None]

    def u_bias(r):
        matvec = hessian_matvec(model, params, Attacker(public, two, r * pattern))
        return jax.vmap(matvec)(deltas)[:, -1]

    def pooled(u):
        return rms / jnp.sqrt(jnp.maximum(jnp.mean(u * u), jnp.finfo(u.dtype).tiny))

    def body(_, s):
        r = rho if l2 is None else l2 / jnp.maximum(s, 1.0)
        return pooled(u_bias(jnp.asarray(r, params.dtype)))

    s = jax.lax.fori_loop(0, iterations, body, pooled(u_bias(jnp.zeros((), params.dtype))))
    r = rho if l2 is None else l2 / jnp.maximum(s, 1.0)
    return s, rms / jnp.abs(u_bias(jnp.asarray(r, params.dtype)))


def _prior(model: Model, attacker: Attacker) -> AttackResult:
    return _attacks.avg(attacker.public.x, attacker.public.labels, model.task, model.num_outputs)


def _hrec_configs(model, ns, l2s, shifts, public, params, thetas, feature_params):
    """HRec [C, B] for C belief configurations (n [C], λ rows [C, ...], shifts [C, ...])."""

    def one(n, lam, shift):
        attacker = Attacker(public, n, lam)
        return hrec_batch(model, params, thetas, attacker, shift, feature_params)

    return jax.vmap(one)(ns, l2s, shifts)


def _maxdiff(model, params, thetas, public) -> AttackResult:
    return jax.vmap(
        lambda t: _attacks.maxdiff(model, params, t, public.features, public.x, public.labels)
    )(thetas)


def _extremes(model, params, attacker):
    return _attacks.hessian_extreme_eigenvalues(hessian_matvec(model, params, attacker), params)


# The outermost jits, the model static: one compilation per family and shape across audits.
_family = functools.lru_cache(maxsize=None)(_models.make_model)
_stationarity_jit = jax.jit(stationarity_l2_per_sample, static_argnums=0)
_update_scale_jit = jax.jit(update_scale, static_argnames=("model", "iterations"))
_residual_scale_jit = jax.jit(residual_scale, static_argnames=("model", "iterations"))
_hrec_configs_jit = jax.jit(_hrec_configs, static_argnums=0)
_maxdiff_jit = jax.jit(_maxdiff, static_argnums=0)
_extremes_jit = jax.jit(_extremes, static_argnums=0)


# ---------------------------------------------------------------------------------------------
# The audit (host side: checks, beliefs, reports).


def run_audit(
    before: _snapshots.Snapshot,
    afters: Sequence[_snapshots.Snapshot],
    public_x,
    public_y,
    *,
    n_train: int | None = None,
    l2: float | None = None,
    model: str | None = None,
    truth_x=None,
    truth_y=None,
    feature_params: _features.RFFParams | None = None,
) -> AuditResult:
    """Reconstructs the record deleted between `before` (θ⁺) and each of `afters` (θ⁻).

    Args:
      before: θ⁺'s snapshot (`snapshots.load_snapshot` / `from_estimator`).
      afters: one snapshot per deletion, each θ⁻ of one record deleted from θ⁺'s training set
        (what they leave unstated, e.g. the family, is taken from `before`).
      public_x: [m, d] public inputs, preprocessed as the model's inputs (identity features:
        d = D − 1; random Fourier features: the raw inputs that φ maps).
      public_y: [m] their labels: the estimator's class values (or 0..K−1), or real targets.
      n_train: the believed training-set size n (>= 2); None = the snapshot's, else estimated.
      l2: the believed λ on the weights (>= 0, jaxrecon units: the snapshot's conversion
        table); None = the snapshot's, else estimated. The bias row gets λ·bias_penalty.
      model: the family, for snapshots that do not record it.
      truth_x: [B, d] the deleted records, when the auditor knows them (the operator does):
        every attack is then scored against them (in input space).
      truth_y: [B] their labels (optional).
      feature_params: the random Fourier draw (`features.RFFParams`, W [F, d], b [F]) when θ
        is over φ(x) = [√(2/F) cos(Wx + b), 1] (D = F + 1); None = identity features.

    Returns:
      An `AuditResult`.

    Raises:
      InputError: naming the argument: mismatched snapshots, public data or truth of the wrong
        shape, labels outside the model's classes, bad beliefs, or n / λ that cannot be
        estimated (the message says which to give).
    """
    if n_train is not None:
        _validate.integer("n_train", n_train, minimum=2)
    return _run(
        before, afters, public_x, public_y, n_train, l2, model, truth_x, truth_y, feature_params
    )


def run_audit_sequence(
    releases: Sequence[_snapshots.Snapshot],
    public_x,
    public_y,
    *,
    n_train: int | None = None,
    l2: float | None = None,
    model: str | None = None,
    truth_x=None,
    truth_y=None,
    feature_params: _features.RFFParams | None = None,
) -> list[AuditResult]:
    """A sequence of releases θ0, θ1, θ2, ..., each one record fewer than the one before
    (`jaxrecon run --sequential`): HRec on each consecutive pair (θ_{i−1}, θ_i), Ĥ at θ_{i−1}.

    The attacker's n drops by one per step: step i (from 1) believes n − i + 1 where n is
    θ0's training-set size, given, else read from θ0's snapshot or estimated from the first
    pair. λ is resolved per step as in `run_audit`. Arguments as for `run_audit`; `truth_x`
    holds one row per step.

    Returns:
      One `AuditResult` per step (each with one deletion), in release order.

    Raises:
      InputError: fewer than two releases, or n too small for the sequence; else as
        `run_audit`.
    """
    releases = list(releases)
    if len(releases) < 2:
        raise _validate.fail("after", "a sequence needs at least two releases (before, after)")
    steps = len(releases) - 1
    if truth_x is not None:
        truth_x = _matrix_rows("truth", truth_x, steps)
    if truth_y is not None:
        truth_y = np.asarray(truth_y)
        if truth_y.shape != (steps,):
            raise _validate.fail(
                "truth", f"labels must have shape [{steps}], got {list(truth_y.shape)}"
            )
    results = []
    n = n_train
    for i in range(steps):
        rows = slice(i, i + 1)
        result = (run_audit if i == 0 else _run)(
            releases[i],
            [releases[i + 1]],
            public_x,
            public_y,
            n_train=n,
            l2=l2,
            model=model,
            truth_x=None if truth_x is None else truth_x[rows],
            truth_y=None if truth_y is None else truth_y[rows],
            feature_params=feature_params,
        )
        results.append(result)
        n = results[0].beliefs.n_train - (i + 1)
        if i + 1 < steps and n < 2:
            raise _validate.fail(
                "n_train",
                f"{results[0].beliefs.n_train:g} ({results[0].beliefs.n_source}) is too small "
                f"for {steps} consecutive deletions",
            )
    return results


def _run(
    before,
    afters,
    public_x,
    public_y,
    n_train=None,
    l2=None,
    model=None,
    truth_x=None,
    truth_y=None,
    feature_params=None,
) -> AuditResult:
    """`run_audit` after its check of n (a sequence's later steps believe a float n)."""
    before = _with_model(before, model)
    afters = [_snapshots.with_model(a, model) for a in afters]
    if not afters:
        raise _validate.fail("after", "give at least one snapshot after a deletion")
    for after in afters:
        _snapshots.check_pair(before, after)
    fam = _family(before.model, before.params.shape[1] if before.params.ndim == 2 else None)
    dtype = jnp.result_type(float)
    dim = _input_dim(before, feature_params)
    x = _matrix("public", public_x, dim, minimum=2)
    labels = _labels("public", public_y, len(x), fam, before)
    fp = None
    if feature_params is not None:
        fp = jax.tree.map(lambda a: jnp.asarray(a, dtype), feature_params)
    public = make_audit_attacker(
        jnp.asarray(x, dtype), labels, n_train=2, l2=0.0, feature_params=fp
    ).public
    params = jnp.asarray(before.params, dtype)
    thetas = jnp.asarray(np.stack([a.params for a in afters]), dtype)
    if l2 is not None and not (_finite(l2) and float(l2) >= 0):
        raise _validate.fail("l2", f"must be a finite number >= 0, got {l2!r}")
    truth = None
    if truth_x is not None:
        truth = (_matrix("truth", truth_x, dim, rows=len(afters)), truth_y)
        if truth_y is not None:
            truth = (truth[0], _labels("truth", truth_y, len(afters), fam, before))
    pattern = jnp.asarray(_snapshots.penalty_rows(before, 1.0), dtype)
    estimates = _estimate(fam, before, params, thetas, public, pattern, l2)
    beliefs = _beliefs(fam, before, estimates, n_train, l2)
    return _attack(fam, before, afters, params, thetas, public, beliefs, estimates, truth, fp)


def _input_dim(before: _snapshots.Snapshot, feature_params) -> int:
    """d: D − 1 for identity features, the RFF draw's input dimension otherwise (its F must be
    D − 1)."""
    features = before.params.shape[0] - 1
    if feature_params is None:
        return features
    weights, phases = (np.asarray(a) for a in feature_params)
    if weights.ndim != 2 or phases.shape != (weights.shape[0],):
        raise _validate.fail(
            "rff_params",
            f"need weights [F, d] and phases [F], got {list(weights.shape)} and "
            f"{list(phases.shape)}",
        )
    if weights.shape[0] != features:
        raise _validate.fail(
            "rff_params",
            f"{weights.shape[0]} random features, but {before.source}'s θ has {features} "
            "feature rows besides the bias",
        )
    return weights.shape[1]


def _estimate(fam, before, params, thetas, public, pattern, l2) -> Estimates:
    rho, residual = _stationarity_jit(fam, params, public, pattern)
    per_sample = before.l2_per_sample or 0.0
    known_l2 = l2 if l2 is not None else before.l2
    # ρ = λ⁻/(n−1): from a known λ (iterated with n), SGD's α (λ⁻ = (n−1)α), or stationarity.
    lam = None if known_l2 is None else float(known_l2) - per_sample
    fixed = before.l2_per_sample if before.l2_per_sample is not None else max(float(rho), 0)
    if fam.task == REGRESSION:
        pooled, per = _residual_scale_jit(fam, params, thetas, public, pattern, l2=lam, rho=fixed)
    else:
        pooled, per = _update_scale_jit(
            fam, params, thetas, public, pattern, l2=lam, rho=fixed, shift_per_sample=per_sample
        )
    per_deletion, n_hat = 1.0 + np.asarray(per), 1.0 + float(pooled)
    return Estimates(
        l2_per_sample=float(rho),
        stationarity_residual=float(residual),
        n_train=n_hat if math.isfinite(n_hat) and n_hat > 1 else math.nan,
        n_train_per_deletion=per_deletion,
    )


def _beliefs(fam, before, estimates: Estimates, n_train, l2) -> Beliefs:
    """n and λ: given, else the snapshot's, else estimated (module docstring); bias λ from the
    snapshot's bias penalty (1 when it does not say)."""
    rho = estimates.l2_per_sample
    known_l2 = l2 if l2 is not None else before.l2
    l2_source = "given" if l2 is not None else "snapshot" if before.l2 is not None else None
    if n_train is not None:
        n, n_source = float(n_train), "given"
    elif before.n_train is not None:
        n, n_source = float(before.n_train), f"snapshot ({before.kind})"
    elif math.isfinite(estimates.n_train):
        n = estimates.n_train
        n_source = (
            f"estimated: residual moments over {len(estimates.n_train_per_deletion)} deletion(s)"
            if fam.task == REGRESSION
            else f"estimated: update scale over {len(estimates.n_train_per_deletion)} deletion(s)"
        )
    else:
        raise _validate.fail(
            "n_train",
            "cannot be estimated: the recovered records' loss derivatives do not fit the size "
            "of the updates (a positive scale), e.g. records the model fits with certainty or "
            "poor public data; give it (n_train; --n)",
        )
    if known_l2 is None and before.l2_per_sample is not None:
        known_l2, l2_source = n * before.l2_per_sample, f"snapshot: n·alpha ({before.kind})"
    if known_l2 is None:
        known_l2 = max(rho, 0.0) * n
        l2_source = "estimated: stationarity (λ/n) · n" + (" (not positive: 0)" if rho <= 0 else "")
    factor = 1.0 if before.bias_penalty is None else before.bias_penalty
    after = known_l2 - (before.l2_per_sample or 0.0)
    return Beliefs(n, float(known_l2), float(known_l2) * factor, float(after), n_source, l2_source)


def _attack(fam, before, afters, params, thetas, public, beliefs, estimates, truth, fp):
    dtype = params.dtype
    pattern = jnp.asarray(_snapshots.penalty_rows(before, 1.0), dtype)
    per_sample = before.l2_per_sample or 0.0

    def beliefs_for(n_factor, l2_factor):
        n = beliefs.n_train * n_factor
        lam = beliefs.l2 * l2_factor
        # SGD: λ = n·α, so λ⁻ − λ⁺ = −λ/n (−α at the nominal beliefs).
        drop = lam / n if per_sample else 0.0
        return n, (lam - drop) * pattern, -drop * pattern * params

    configs = [(1.0, 1.0)] + [
        (f, 1.0) if name == "n_train" else (1.0, f) for name, f in SENSITIVITY
    ]
    ns, l2s, shifts = zip(*(beliefs_for(*c) for c in configs), strict=True)

    batched = _hrec_configs_jit(
        fam, jnp.asarray(ns, dtype), jnp.stack(l2s), jnp.stack(shifts), public, params, thetas, fp
    )
    hrec = jax.tree.map(lambda a: a[0], batched)
    sensitivity = {
        f"{name} x{f:g}": np.asarray(_metrics.cosine_similarity(batched.x_hat[i + 1], hrec.x_hat))
        for i, (name, f) in enumerate(SENSITIVITY)
    }
    moved = np.abs(np.asarray(batched.y_hat[1:], float) - np.asarray(hrec.y_hat, float)[None])
    spread = np.max(moved if fam.task == REGRESSION else moved > 0, axis=0).astype(float)
    nominal = Attacker(public, jnp.asarray(ns[0], dtype), l2s[0])
    avg = _prior(fam, nominal)
    maxdiff = _maxdiff_jit(fam, params, thetas, public)
    lo, hi = _extremes_jit(fam, params, nominal)
    results = {"hrec": hrec, "avg": _broadcast(avg, len(afters)), "maxdiff": maxdiff}
    return AuditResult(
        model=fam,
        before=before,
        after_sources=tuple(a.source for a in afters),
        public_count=int(public.x.shape[0]),
        beliefs=beliefs,
        estimates=estimates,
        hrec=hrec,
        avg=results["avg"],
        maxdiff=maxdiff,
        sensitivity=sensitivity,
        label_spread=spread,
        hessian_extremes=(float(lo), float(hi)),
        truth=None if truth is None else _score(fam, results, *truth),
        feature_params=fp,
    )


def _score(fam, results, truth_x, truth_y) -> dict[str, dict[str, Any]]:
    x = jnp.asarray(truth_x, results["hrec"].x_hat.dtype)
    out = {}
    for name, r in results.items():
        correct = error = None
        if truth_y is not None and fam.task != REGRESSION:
            correct = np.asarray(r.y_hat) == np.asarray(truth_y)
        elif truth_y is not None:
            error = np.abs(np.asarray(r.y_hat) - np.asarray(truth_y))
        out[name] = {
            "cosine": np.asarray(_metrics.cosine_similarity(r.x_hat, x)),
            "mse": np.asarray(_metrics.mse(r.x_hat, x)),
            "label_correct": correct,
            "label_error": error,
        }
    return out


def _broadcast(result: AttackResult, count: int) -> AttackResult:
    return jax.tree.map(lambda a: jnp.broadcast_to(a, (count,) + jnp.shape(a)), result)


def _with_model(snap, model):
    if model is not None:
        snap = _snapshots.with_model(snap, model)
    if snap.model is None:
        raise _validate.fail(
            "model",
            f"{snap.source} ({snap.kind}) does not say which model family it is; give the "
            f"family (one of {', '.join(_models.MODELS)})",
        )
    return snap


def _matrix_rows(argument, x, rows) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or len(x) != rows:
        raise _validate.fail(
            argument, f"need one row per deletion ({rows}), got shape {list(x.shape)}"
        )
    return x


def _finite(value) -> bool:
    try:
        return not isinstance(value, bool) and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _matrix(argument, x, dim, *, minimum=1, rows=None) -> np.ndarray:
    x = np.asarray(x)
    if x.dtype.kind not in "biuf" or x.ndim != 2 or x.shape[1] != dim:
        raise _validate.fail(
            argument,
            f"need a real [rows, {dim}] array (the model's {dim} inputs), got {x.dtype} of "
            f"shape {list(x.shape)}",
        )
    if rows is not None and len(x) != rows:
        raise _validate.fail(argument, f"need one row per deletion ({rows}), got {len(x)}")
    if len(x) < minimum:
        raise _validate.fail(argument, f"need at least {minimum} rows, got {len(x)}")
    if not np.all(np.isfinite(x)):
        raise _validate.fail(argument, "has non-finite values")
    return x.astype(np.float64)


def _labels(argument, y, count, fam: Model, snap) -> jax.Array:
    """Labels as the model learns them: real targets, or class indices via the snapshot's
    classes (0..K−1 when it has none)."""
    y = np.asarray(y)
    if y.shape != (count,):
        raise _validate.fail(argument, f"labels must have shape [{count}], got {list(y.shape)}")
    if fam.task == REGRESSION:
        if y.dtype.kind not in "biuf" or not np.all(np.isfinite(y.astype(np.float64))):
            raise _validate.fail(argument, "regression targets must be finite numbers")
        return jnp.asarray(y, jnp.result_type(float))
    classes = snap.classes
    k = snap.num_classes
    if classes is None:
        classes = np.arange(k)
    if (y.dtype.kind in "US") != (classes.dtype.kind in "US"):
        raise _validate.fail(
            argument, f"labels of dtype {y.dtype} cannot be the model's classes {list(classes)}"
        )
    lookup = {c.item() if hasattr(c, "item") else c: i for i, c in enumerate(classes)}
    try:
        index = np.array([lookup[v.item() if hasattr(v, "item") else v] for v in y], np.int32)
    except KeyError as err:
        raise _validate.fail(
            argument, f"label {err.args[0]!r} is not one of the model's classes {list(classes)}"
        ) from None
    return jnp.asarray(index)


# The front door speaks the command's names (`--n`, `--model-family`, `--truth`).
_FRONT_DOOR_NAMES = {"n_train": "n", "model": "model_family", "deleted": "truth"}


def audit(
    before,
    after,
    public,
    *,
    model_family: str | None = None,
    n: int | None = None,
    l2: float | None = None,
    features: str = "identity",
    rff_params=None,
    truth=None,
    sequence: bool = False,
    trust_pickle: bool = False,
) -> AuditResult | list[AuditResult]:
    """The audit of released models from whatever the caller holds (`jaxrecon audit`'s mirror).

        result = jaxrecon.audit("before.skops", ["after1.skops", "after2.skops"], "public.npz")
        result = jaxrecon.audit(est_before, est_after, (public_x, public_y), n=1000)

    Args:
      before: θ⁺: a file path (`snapshots.load_snapshot`), a `Snapshot`, a fitted scikit-learn
        estimator, or θ as an array ([D] or [D, K], bias row last, bias penalised like the
        weights).
      after: one θ⁻ like `before`, or a list of them (each one deletion from `before`; with
        `sequence`, consecutive releases).
      public: an .npz path with `x` [m, d] and `y` [m], or a tuple (x, y).
      model_family: the family, for snapshots that do not record it.
      n: the believed training-set size (of `before`); None = the snapshot's, else estimated.
      l2: the believed λ on the weights; None = the snapshot's, else estimated.
      features: "identity" (θ over [x, 1]) or "rff" (θ over random Fourier features of x;
        `public` and `truth` then hold raw inputs x).
      rff_params: with "rff": an .npz path with `weights` [F, d] and `phases` [F] (the draw
        of `features.rff_params`), an `RFFParams`, or a dict of those two arrays.
      truth: the deleted records, to score every attack: an .npz path with `x` [B, d] (and
        optionally `y` [B]), a tuple (x, y), or x.
      sequence: `before`, `after[0]`, `after[1]`, ... are consecutive releases, one record
        fewer each (`run_audit_sequence`: n drops by one per step).
      trust_pickle: read .pkl / .pickle / .joblib files (warns: this runs code from them).

    Returns:
      An `AuditResult` over the deletions; with `sequence`, a list with one `AuditResult`
      per consecutive pair.

    Raises:
      InputError: naming the argument (as above: "n", "model_family", "truth", ...).
    """
    try:
        args = (model_family, n, l2, features, rff_params, truth, sequence, trust_pickle)
        return _front_door(before, after, public, *args)
    except InputError as err:
        renamed = _FRONT_DOOR_NAMES.get(err.argument)
        if renamed is None:
            raise
        message = str(err)
        if message.startswith(f"{err.argument}:"):
            message = renamed + message[len(err.argument) :]
        raise type(err)(message, argument=renamed) from err


def _front_door(
    before, after, public, model_family, n, l2, features, rff_params, truth, sequence, trust
):
    _validate.choice("features", features, _FEATURES)
    if features == "identity" and rff_params is not None:
        raise _validate.fail("rff_params", "only with features 'rff' (--features rff)")
    feature_params = None
    if features == "rff":
        if rff_params is None:
            raise _validate.fail(
                "rff_params",
                "required with features 'rff': an .npz with weights [F, d] and phases [F]",
            )
        feature_params = load_rff_params(rff_params)
    kw = dict(model=model_family, trust_pickle=trust)
    first = _snapshots.as_snapshot(before, argument="before", **kw)
    items = list(after) if isinstance(after, list | tuple) else [after]
    afters = [_snapshots.as_snapshot(a, argument="after", **kw) for a in items]
    public_x, public_y = _records(public, "public", labels_required=True)
    truth_x = truth_y = None
    if truth is not None:
        truth_x, truth_y = _records(truth, "truth", labels_required=False)
    common = dict(
        n_train=n,
        l2=l2,
        model=model_family,
        truth_x=truth_x,
        truth_y=truth_y,
        feature_params=feature_params,
    )
    if sequence:
        return run_audit_sequence([first, *afters], public_x, public_y, **common)
    return run_audit(first, afters, public_x, public_y, **common)


def _records(value, argument, *, labels_required):
    """(x, y) from an .npz path, a tuple (x, y), or (truth only) x."""
    if isinstance(value, str | os.PathLike):
        return load_records(os.fspath(value), argument, labels_required=labels_required)
    if isinstance(value, tuple | list) and len(value) == 2:
        x, y = value
    elif labels_required:
        raise _validate.fail(argument, "need an .npz path or a tuple (x, y)")
    else:
        x, y = value, None
    if labels_required and y is None:
        raise _validate.fail(argument, "labels y are required")
    return np.asarray(x), None if y is None else np.asarray(y)


def load_rff_params(value, argument: str = "rff_params") -> _features.RFFParams:
    """The random Fourier draw W [F, d], b [F] (`features.RFFParams`) from an .npz path with
    arrays `weights` and `phases` (read with allow_pickle=False), an `RFFParams`, or a dict.

    Raises:
      InputError: an unreadable file, missing arrays, or arrays of the wrong shape, dtype or
        with non-finite values (naming `argument`).
    """
    where = "given"
    if isinstance(value, str | os.PathLike):
        where = os.fspath(value)
        value = _snapshots.read_npz(where, argument)
    if isinstance(value, Mapping):
        absent = [k for k in _features.RFFParams._fields if k not in value]
        if absent:
            raise _validate.fail(
                argument,
                f"{where} lacks array(s) {', '.join(absent)} (the RFF draw: weights [F, d], "
                f"phases [F]; has {', '.join(value) or 'none'})",
            )
        value = (value["weights"], value["phases"])
    try:
        weights, phases = (np.asarray(a) for a in value)
    except (TypeError, ValueError):
        raise _validate.fail(argument, "need weights [F, d] and phases [F]") from None
    if (
        weights.dtype.kind not in "biuf"
        or phases.dtype.kind not in "biuf"
        or weights.ndim != 2
        or phases.shape != (weights.shape[0],)
        or weights.size == 0
    ):
        raise _validate.fail(
            argument,
            f"{where}: need real weights [F, d] and phases [F], got {weights.dtype} "
            f"{list(weights.shape)} and {phases.dtype} {list(phases.shape)}",
        )
    if not (np.all(np.isfinite(weights)) and np.all(np.isfinite(phases))):
        raise _validate.fail(argument, f"{where}: non-finite values")
    return _features.RFFParams(weights.astype(np.float64), phases.astype(np.float64))


def load_records(
    path: str, argument: str, *, labels_required: bool = True
) -> tuple[np.ndarray, np.ndarray | None]:
    """(x, y) from an .npz file with arrays `x` [rows, d] and `y` [rows] (`y` optional unless
    `labels_required`); the public data (`--public`) and the deleted records (`--deleted`).

    Raises:
      InputError: an unreadable file or missing arrays (naming `argument`); shapes are checked
        by `run_audit`.
    """
    arrays = _snapshots.read_npz(path, argument)
    need = ("x", "y") if labels_required else ("x",)
    absent = [k for k in need if k not in arrays]
    if absent:
        raise _validate.fail(
            argument,
            f"{path} lacks array(s) {', '.join(absent)} (has {', '.join(arrays) or 'none'})",
        )
    return arrays["x"], arrays.get("y")


# ---------------------------------------------------------------------------------------------
# Reports.


def class_label(result: AuditResult, index) -> Any:
    """A class index as the estimator's label (None for "no signal", −1); real targets as is."""
    if result.model.task == REGRESSION:
        value = float(index)
        return None if math.isnan(value) else value
    index = int(index)
    if index < 0:
        return None
    classes = result.before.classes
    return index if classes is None else classes[index].item()


def summary(result: AuditResult) -> dict[str, Any]:
    """summary.json: the snapshots, features, beliefs and their sources, estimates, and per
    deletion the label, score, sensitivity and (with the truth) every attack's scores."""
    b, e = result.beliefs, result.estimates
    lo, hi = result.hessian_extremes
    deletions = []
    for i, source in enumerate(result.after_sources):
        row = {
            "after": source,
            "label": class_label(result, result.hrec.y_hat[i]),
            "score": float(result.hrec.score[i]),
            "sensitivity_cosine": {k: float(v[i]) for k, v in result.sensitivity.items()},
            "label_spread": float(result.label_spread[i]),
            "n_train_estimate": _num(e.n_train_per_deletion[i]),
        }
        row |= _truth_cells(result.truth, i)
        deletions.append(row)
    out = {
        "before": {
            "source": result.before.source,
            "kind": result.before.kind,
            "model": result.model.name,
            "params_shape": list(result.before.params.shape),
            "classes": None
            if result.before.classes is None
            else [c.item() for c in result.before.classes],
        },
        "features": feature_info(result),
        "public_count": result.public_count,
        "beliefs": b._asdict(),
        "estimates": {
            "l2_per_sample_stationarity": e.l2_per_sample,
            "stationarity_residual": e.stationarity_residual,
            "n_train_update_scale": _num(e.n_train),
        },
        "attacker_hessian": {
            "min_eigenvalue": lo,
            "max_eigenvalue": hi,
            # None: a flat (unpenalised) direction, e.g. softmax's common intercept shift.
            "condition_number": hi / lo if lo > 1e-12 * hi else None,
        },
        "deletions": deletions,
    }
    if result.truth is not None:
        out["truth"] = _truth_summary(result.truth)
    return out


def sequence_summary(results: Sequence[AuditResult]) -> dict[str, Any]:
    """summary.json of a sequence of releases: the files in order, one `summary` per step
    (consecutive pair), and with the truth every attack's scores pooled over the steps."""
    out = {
        "sequence": [results[0].before.source] + [r.after_sources[0] for r in results],
        "steps": [summary(r) for r in results],
    }
    if results[0].truth is not None:
        out["truth"] = _truth_summary(_joined_truth(results))
    return out


def feature_info(result: AuditResult) -> dict[str, Any]:
    """{"name": "identity"}, or {"name": "rff", "num_features": F, "input_dim": d}."""
    if result.feature_params is None:
        return {"name": "identity"}
    f, d = np.shape(result.feature_params.weights)
    return {"name": "rff", "num_features": int(f), "input_dim": int(d)}


def reconstructions_csv(results: AuditResult | Sequence[AuditResult]) -> str:
    """reconstructions.csv: one row per deletion: `index`, `before`, `after`, HRec's `label`
    and `score`, with the truth every attack's `<attack>_cosine`, `<attack>_mse` and
    `<attack>_label_correct` (1/0; ridge: `<attack>_label_error`), then HRec's reconstructed
    input `x0` .. `x{d-1}` (shortest round-trip decimals: the csv reproduces the floats)."""
    results = _as_list(results)
    rows = []
    for r in results:
        x_hat = np.asarray(r.hrec.x_hat)
        for i, source in enumerate(r.after_sources):
            label = class_label(r, r.hrec.y_hat[i])
            row = {
                "index": len(rows),
                "before": r.before.source,
                "after": source,
                "label": "" if label is None else label,
                "score": float(r.hrec.score[i]),
            }
            for key, value in _truth_cells(r.truth, i).items():
                row[key] = int(value) if isinstance(value, bool) else value
            row |= {f"x{k}": float(v) for k, v in enumerate(x_hat[i])}
            rows.append(row)
    header = list(rows[0])
    lines = [",".join(header)]
    for row in rows:
        lines.append(",".join(_csv_cell(row[k]) for k in header))
    return "\n".join(lines) + "\n"


def format_report(result: AuditResult) -> str:
    """The audit as a short text table (what `jaxrecon audit` prints)."""
    b, e = result.beliefs, result.estimates
    lines = [
        f"audit: {result.before.kind or result.before.source} ({result.model.name}, θ "
        f"{list(result.before.params.shape)}, {feature_info(result)['name']} features), "
        f"{len(result.after_sources)} deletion(s), {result.public_count} public samples",
        f"beliefs: n {b.n_train:.6g} ({b.n_source}); l2 {b.l2:.6g} ({b.l2_source}), "
        f"bias l2 {b.l2_bias:.6g}",
        f"estimates: l2/n {e.l2_per_sample:.3g} (stationarity, residual "
        f"{e.stationarity_residual:.2f}); n {_fmt(e.n_train)} (update scale)",
    ]
    head = ["deletion", "label", "score"] + [f"cos({k})" for k in result.sensitivity]
    if result.truth is not None:
        head += [f"{name} cos" for name in result.truth]
    lines.append("  ".join(f"{h:>14}" for h in head))
    for i in range(len(result.after_sources)):
        cells = [str(i), str(class_label(result, result.hrec.y_hat[i]))]
        cells.append(f"{float(result.hrec.score[i]):.4f}")
        cells += [f"{float(v[i]):.4f}" for v in result.sensitivity.values()]
        if result.truth is not None:
            cells += [f"{float(s['cosine'][i]):.4f}" for s in result.truth.values()]
        lines.append("  ".join(f"{c:>14}" for c in cells))
    return "\n".join(lines)


def arrays(results: AuditResult | Sequence[AuditResult]) -> dict[str, np.ndarray]:
    """reconstruction.npz: every attack's x_hat [B, d], y_hat [B] (class indices), HRec's score
    and the sensitivity cosines [4, B] in the order of `SENSITIVITY`; a sequence's steps are
    concatenated along B."""
    results = _as_list(results)
    out = {}
    for name in ("hrec", "avg", "maxdiff"):
        out[f"{name}_x"] = np.concatenate([np.asarray(getattr(r, name).x_hat) for r in results])
        out[f"{name}_y"] = np.concatenate([np.asarray(getattr(r, name).y_hat) for r in results])
    out["hrec_score"] = np.concatenate([np.asarray(r.hrec.score) for r in results])
    out["sensitivity_cosine"] = np.concatenate(
        [np.stack(list(r.sensitivity.values())) for r in results], axis=1
    )
    return out


def _as_list(results) -> list[AuditResult]:
    return [results] if isinstance(results, AuditResult) else list(results)


def _truth_cells(truth, i: int) -> dict[str, Any]:
    """Deletion i's scores: {"<attack>_cosine": ..., "<attack>_mse": ..., ...}."""
    row = {}
    for name, s in (truth or {}).items():
        row[f"{name}_cosine"] = float(s["cosine"][i])
        row[f"{name}_mse"] = float(s["mse"][i])
        if s["label_correct"] is not None:
            row[f"{name}_label_correct"] = bool(s["label_correct"][i])
        if s["label_error"] is not None:
            row[f"{name}_label_error"] = float(s["label_error"][i])
    return row


def _truth_summary(truth) -> dict[str, Any]:
    return {
        name: _metrics.summarize(s["cosine"])
        | {
            "label_accuracy": None
            if s["label_correct"] is None
            else float(np.mean(s["label_correct"])),
            "label_mae": None if s["label_error"] is None else float(np.mean(s["label_error"])),
        }
        for name, s in truth.items()
    }


def _joined_truth(results: Sequence[AuditResult]) -> dict[str, dict[str, Any]]:
    """The steps' truth scores concatenated over the deletions."""
    out = {}
    for name, first in results[0].truth.items():
        out[name] = {
            key: None
            if first[key] is None
            else np.concatenate([np.asarray(r.truth[name][key]) for r in results])
            for key in first
        }
    return out


def _csv_cell(value) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    if any(c in text for c in ',"\n'):
        text = '"' + text.replace('"', '""') + '"'
    return text


def _num(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _fmt(value) -> str:
    return f"{value:.6g}" if math.isfinite(value) else "not identified"
