"""Unlearning methods as registry entries (DESIGN §3.5, §3.6): `make_unlearn` and the `Unlearner`.

    unlearner = make_unlearn(scenario, theta, "newton")    # what every deletion shares, once
    after = unlearner(deleted)                             # UnlearnResult batched over B
    unlearner.released                                     # θ⁺ as published (the attack's θ⁺)

`UNLEARNING` maps a method's name to an `UnlearningMethod(prepare, unlearn)`. `prepare` runs
once: it may retrain θ⁺ (certified removal trains with objective perturbation; SISA trains one
model per shard) and computes what the method's deletions share; `unlearn` maps a batch of
deleted positions to the operator's θ⁻ (pure, jittable). The `Unlearner` then adds what every
method reports: the published θ⁻ (with fresh Gaussian noise per release where the method or the
`defense` calls for it), the relative gradient norm of the retained objective at it, and its
distance to exact retraining ‖θ⁻ − θ_exact‖/‖θ_exact‖ (exact retraining by the `exact` method's
kernel, of the same objective). A new method is one entry here and one kernel in `unlearning`.

Methods: `exact` (retraining to round-off, the kernel by `exact_kernel`), `newton` (one Newton
step from θ⁺ on the retained objective: influence removal), `certified` (Guo et al. 2020),
`descent-to-delete` (Neel et al. 2021), `gradient-ascent`, `finetune`, `sisa` (Bourtoule et al.
2021). Defences: `defense="output-perturbation"` adds calibrated Gaussian noise to θ⁺ and to
every θ⁻ (each release its own draw).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import _validate
from jaxrecon import defenses as _defenses
from jaxrecon import models as _models
from jaxrecon import solvers as _solvers
from jaxrecon import unlearning as _unlearning
from jaxrecon.defenses import Privacy
from jaxrecon.scenario import (
    DENSE_LIMIT,
    DTYPES,
    Scenario,
    as_deletions,
    fit,
    subkey,
)
from jaxrecon.unlearning import UnlearnResult

# Smooth GLMs with P up to this unlearn with one explicit [P, P] inverse Hessian shared by all
# deletions (`unlearning.unlearn_glm`; 8192² float64 = 0.5 GB, MNIST softmax 785 × 10 fits).
DENSE_UNLEARN_LIMIT = 8192
# First-order methods' default number of steps.
DEFAULT_STEPS = 10
DEFENSES = ("none", "output-perturbation")


class Prepared(NamedTuple):
    """What a method computed once (a pytree: arrays only).

    Attributes:
      params: θ⁺ as the operator holds it ([S, ...] for SISA's shards).
      released: θ⁺ as published (params plus noise where the release is noised).
      state: the method's shared state (e.g. `unlearning.GLMSystem`).
      reference: the exact method's shared state for the distance to exact retraining (the same
        objective, e.g. with certified removal's linear term), or None when θ⁻ is exact.
      noise_std: σ of the Gaussian noise on each published θ⁻ (0: none).
      key: the key of the per-deletion release noise.
    """

    params: jax.Array
    released: jax.Array
    state: Any
    reference: Any
    noise_std: jax.Array
    key: jax.Array


class Plan(NamedTuple):
    """A method's static choices.

    Attributes:
      kernel: the kernel serving the method (summary.json `unlearning.kernel`).
      reference_kernel: the exact kernel θ⁻ is compared with, or None (θ⁻ is exact, or the
        method reports its distance itself).
      privacy: how the releases are protected, or None.
      noised: each published θ⁻ gets fresh Gaussian noise of std `Prepared.noise_std`.
    """

    kernel: str
    reference_kernel: str | None = None
    privacy: Privacy | None = None
    noised: bool = False


class UnlearningMethod(NamedTuple):
    """One entry of `UNLEARNING`.

    Attributes:
      prepare: (scenario, θ⁺, **options) -> (Plan, Prepared); runs once, eagerly (jit inside).
      unlearn: (plan, scenario, prepared, deleted, **options) -> `UnlearnResult` of the
        operator's θ⁻ (before any release noise), batched over B; pure and jittable.
    """

    prepare: Callable[..., tuple[Plan, Prepared]]
    unlearn: Callable[..., UnlearnResult]


def exact_kernel(scenario: Scenario, records: int = 1) -> str:
    """Which exact-unlearning kernel serves this model and size (summary.json names it).

    - "woodbury": quadratic losses, θ⁻ in closed form from one shared H⁻¹ (rank k for k records);
    - "chord": smooth GLMs with P <= DENSE_UNLEARN_LIMIT, one record per deletion, chord
      iterations on one shared H⁺⁻¹;
    - "newton-cg-cholesky": P <= DENSE_LIMIT, Newton-CG preconditioned by a shared factor of H⁺;
    - "chord-kfac": smooth GLMs with P > DENSE_UNLEARN_LIMIT, one record per deletion: the chord
      iterations with every H₋⁻¹ applied by CG on Hessian-vector products, preconditioned by
      shared Kronecker factors of H⁺ with a spectral correction of rank 64
      (`unlearning.unlearn_glm_kfac`; memory D² + K² + 64·P, no [P, P] matrix): a handful of CG
      steps per pass;
    - "newton-cg-kfac": other models or several records per deletion with P > DENSE_LIMIT,
      Newton-CG with the same Kronecker-factored preconditioner.
    """
    size = scenario.param_count
    if scenario.model.target is not None:
        return "woodbury"
    if scenario.model.smooth and size <= DENSE_UNLEARN_LIMIT and records == 1:
        return "chord"
    if size <= DENSE_LIMIT:
        return "newton-cg-cholesky"
    return "chord-kfac" if scenario.model.smooth and records == 1 else "newton-cg-kfac"


def _exact_system(kernel: str, scenario: Scenario, params, inverse_dtype=None, linear=None):
    model, train, l2 = scenario.model, scenario.train, scenario.l2
    if kernel == "woodbury":
        targets = model.target(train.labels, train.features.dtype)
        return _unlearning.ridge_system(train.features, targets, l2=l2)
    if kernel == "chord":
        return _unlearning.glm_system(
            model,
            params,
            train.features,
            train.labels,
            l2=l2,
            inverse_dtype=inverse_dtype,
            linear=linear,
        )
    if kernel == "newton-cg-cholesky":
        return _unlearning.hessian_cholesky(
            model, params, train.features, l2=l2, labels=train.labels
        )
    # The Kronecker kernels default to a float32 eigenbasis (and float32 CG solves for
    # chord-kfac) on float64 data: a preconditioner only, θ⁻ is checked in float64; on real
    # MNIST RFF-4096 it is about 3x faster per deletion. inverse_dtype="float64" opts out.
    basis = inverse_dtype or ("float32" if train.features.dtype == jnp.float64 else None)
    if kernel == "chord-kfac":
        # With the spectral correction (block Lanczos, once): CG 2-3x shorter on real RFF data.
        return _unlearning.kfac_system(
            model,
            params,
            train.features,
            train.labels,
            l2=l2,
            basis_dtype=basis,
            key=subkey(scenario.key, "unlearn"),
        )
    return _unlearning.hessian_kfac(
        model, params, train.features, l2=l2, labels=train.labels, basis_dtype=basis
    )


def _exact_unlearn(
    kernel, scenario, params, state, deleted, *, tol=None, block=None, max_steps=None
) -> UnlearnResult:
    """Retraining on the retained records from θ⁺ to the relative gradient norm `tol` (default:
    round-off), or only `max_steps` Newton steps / chord passes (one: the Newton step)."""
    model, train, l2 = scenario.model, scenario.train, scenario.l2
    if kernel == "woodbury":
        targets = model.target(train.labels, train.features.dtype)
        return jax.vmap(
            lambda d: _unlearning.unlearn_ridge(params, state, train.features, targets, d, l2=l2)
        )(deleted)
    if kernel in ("chord", "chord-kfac"):
        if deleted.ndim != 1:
            raise _validate.fail(
                "deleted",
                f"the {kernel} kernel removes one record per deletion: pass [B] positions, or "
                f"make_unlearn(..., records={deleted.shape[-1]}) for shape {deleted.shape}",
            )
        passes = {} if max_steps is None else {"max_passes": max_steps}
        chord = _unlearning.unlearn_glm if kernel == "chord" else _unlearning.unlearn_glm_kfac
        return chord(
            model,
            state,
            params,
            train.features,
            train.labels,
            deleted,
            l2=l2,
            tol=tol,
            block=block,
            **passes,
        )
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    dense = kernel == "newton-cg-cholesky"
    steps = {} if max_steps is None else {"max_steps": max_steps}
    return jax.vmap(
        lambda w: _unlearning.unlearn_retrain(
            model,
            params,
            train.features,
            train.labels,
            w,
            l2=l2,
            precond_factor=state if dense else None,
            preconditioner=None if dense else state,
            tol=tol,
            cg_max_steps=500,
            **steps,
        )
    )(masks)


def _checked_options(*, tol=None, inverse_dtype=None, block=None) -> None:
    if inverse_dtype is not None:
        _validate.choice("inverse_dtype", inverse_dtype, DTYPES)
    if block is not None:
        _validate.integer("block", block, minimum=1)
    if tol is not None:
        _validate.positive("tol", tol)


def _prepared(params, state, reference=None, released=None, noise_std=0.0, key=None):
    return Prepared(
        params,
        params if released is None else released,
        state,
        reference,
        jnp.asarray(noise_std, params.dtype),
        jax.random.key(0) if key is None else key,
    )


def _exact_prepare(scenario, params, *, records=1, tol=None, inverse_dtype=None, block=None):
    _checked_options(tol=tol, inverse_dtype=inverse_dtype, block=block)
    kernel = exact_kernel(scenario, records)
    state = _exact_system_jit(kernel, scenario, params, inverse_dtype)
    return Plan(kernel), _prepared(params, state)


def _exact(
    plan, scenario, prepared, deleted, *, records=1, tol=None, inverse_dtype=None, block=None
):
    """Exact unlearning (DESIGN §3.5): the retrained model, to the relative gradient norm `tol`
    (default: round-off, 1e-12 in float64). Options: `tol`; for the chord kernels `block`
    (deletions per pass); `inverse_dtype`: "float32" stores the chord kernel's shared H⁺⁻¹ in
    float32, and the Kronecker kernels' [D, D] eigenbasis (chord-kfac: also its CG solves) are
    float32 unless "float64" is asked for — preconditioners only: θ⁻ stays exact to `tol`."""
    return _exact_unlearn(
        plan.kernel, scenario, prepared.params, prepared.state, deleted, tol=tol, block=block
    )


def _newton_prepare(scenario, params, *, records=1):
    kernel = exact_kernel(scenario, records)
    state = _exact_system_jit(kernel, scenario, params, None)
    return Plan(kernel, kernel), _prepared(params, state, reference=state)


def _newton(plan, scenario, prepared, deleted, *, records=1):
    """One Newton step from θ⁺ on the retained objective (influence removal):
    θ⁻ = θ⁺ − H₋(θ⁺)⁻¹∇L₋(θ⁺). Exact for quadratic losses; for the chord kernel the step uses the
    retained-data Hessian by Woodbury from the shared H⁺⁻¹; otherwise CG on its products."""
    return _exact_unlearn(
        plan.kernel, scenario, prepared.params, prepared.state, deleted, max_steps=1
    )


def _first_order_prepare(method):
    """prepare for gradient ascent / fine-tuning: the default step size 1/M, M the smoothness of
    L (curvature bound × λ_max(PᵀP) + λ), and the exact reference."""

    def prepare(scenario, params, *, records=1, steps=DEFAULT_STEPS, lr=None):
        _validate.integer("unlearn_steps", steps, minimum=1)
        if lr is not None:
            _validate.positive("unlearn_lr", lr)
        kernel = exact_kernel(scenario, records)
        reference = _exact_system_jit(kernel, scenario, params, None)
        lr = 1 / smoothness(scenario) if lr is None else lr
        return Plan(method, kernel), _prepared(params, jnp.asarray(lr), reference=reference)

    return prepare


def _gradient_ascent(plan, scenario, prepared, deleted, *, records=1, steps=DEFAULT_STEPS, lr=None):
    """`steps` of gradient ascent on the deleted records' loss (`unlearning.gradient_ascent`)."""
    train = scenario.train
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    return jax.vmap(
        lambda w: _unlearning.gradient_ascent(
            scenario.model,
            prepared.params,
            train.features,
            train.labels,
            w,
            l2=scenario.l2,
            steps=steps,
            lr=prepared.state,
        )
    )(masks)


def _descend(scenario, params, deleted, steps, lr):
    train = scenario.train
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    return jax.vmap(
        lambda w: _unlearning.gradient_descent(
            scenario.model,
            params,
            train.features,
            train.labels,
            w,
            l2=scenario.l2,
            steps=steps,
            lr=lr,
        )
    )(masks)


def _finetune(plan, scenario, prepared, deleted, *, records=1, steps=DEFAULT_STEPS, lr=None):
    """`steps` of gradient descent on the retained objective from θ⁺ (fine-tuning)."""
    return _descend(scenario, prepared.params, deleted, steps, prepared.state)


def _lipschitz_constants(scenario: Scenario, method: str) -> tuple[float, float]:
    """(G, R): the bound on ‖∇ℓ‖ over the data box and on ‖p‖; for Lipschitz losses only."""
    model = scenario.model
    if model.slope_bound is None:
        raise _validate.fail(
            "unlearning",
            f"{method} needs a loss with a bounded slope (logistic, softmax); the "
            f"{model.name} loss is not Lipschitz",
        )
    radius = feature_bound(scenario)
    return model.slope_bound * radius, radius


def _descent_to_delete_prepare(
    scenario, params, *, records=1, steps=DEFAULT_STEPS, epsilon=1.0, delta=1e-5
):
    _validate.integer("unlearn_steps", steps, minimum=1)
    gradient_bound, _ = _lipschitz_constants(scenario, "descent-to-delete")
    l2 = float(scenario.l2)
    sensitivity, lr = _defenses.descent_to_delete_sensitivity(
        gradient_bound, l2, smoothness(scenario), steps
    )
    sigma = _defenses.gaussian_noise_multiplier(epsilon, delta) * sensitivity
    key_before, key_after = jax.random.split(subkey(scenario.key, "release"))
    released = _defenses.gaussian_release(key_before, params, sigma)
    kernel = exact_kernel(scenario, records)
    reference = _exact_system_jit(kernel, scenario, params, None)
    privacy = Privacy("descent-to-delete (Gaussian)", epsilon, delta, sigma, sensitivity)
    prepared = _prepared(params, jnp.asarray(lr), reference, released, sigma, key_after)
    return Plan("gradient-descent", kernel, privacy, noised=True), prepared


def _descent_to_delete(
    plan, scenario, prepared, deleted, *, records=1, steps=DEFAULT_STEPS, epsilon=1.0, delta=1e-5
):
    """Neel et al. 2021: `steps` gradient-descent steps on the retained objective from θ⁺ with
    step 2/(λ + M); the `Unlearner` publishes the result with fresh noise calibrated to the
    distance γ^T·G/λ that separates it from retraining
    (`defenses.descent_to_delete_sensitivity`)."""
    return _descend(scenario, prepared.params, deleted, steps, prepared.state)


class CertifiedState(NamedTuple):
    """Certified removal's shared state: the chord system of the perturbed objective, the
    largest record norm R of the training features, and the removal budget ε'."""

    system: _unlearning.GLMSystem
    record_bound: jax.Array
    budget: jax.Array


def _certified_prepare(scenario, params, *, records=1, epsilon=1.0, delta=1e-5):
    model = scenario.model
    gradient_bound, radius = _lipschitz_constants(scenario, "certified")
    if exact_kernel(scenario, records) != "chord":
        raise _validate.fail(
            "unlearning",
            "certified removal needs a smooth GLM with at most "
            f"{DENSE_UNLEARN_LIMIT} parameters and one record per deletion (Newton removal on "
            "one shared inverse Hessian)",
        )
    l2 = float(scenario.l2)
    # Worst-case gradient residual of one Newton removal (Guo et al. 2020, Theorem 1, sum form):
    # (γ/2)·R·‖P₋Δ‖² with ‖P₋Δ‖² <= λ_max(PᵀP)·‖Δ‖² and ‖Δ‖ <= G/λ.
    gram = float(_gram_norm_jit(scenario.train.features))
    budget = 0.5 * model.curvature_lipschitz * radius * gram * (gradient_bound / l2) ** 2
    sigma = _defenses.certified_noise_std(epsilon, delta, budget)
    linear = sigma * jax.random.normal(subkey(scenario.key, "release"), params.shape, params.dtype)
    perturbed = jax.jit(lambda sc, b, t: fit(sc, linear=b, init=t).params)(scenario, linear, params)
    system = _exact_system_jit("chord", scenario, perturbed, None, linear)
    record_bound = jnp.max(jnp.linalg.norm(scenario.train.features, axis=1))
    state = CertifiedState(system, record_bound, jnp.asarray(budget, params.dtype))
    privacy = Privacy("certified removal (objective perturbation)", epsilon, delta, sigma, budget)
    return Plan("chord", None, privacy), _prepared(perturbed, state, reference=system)


def _certified(plan, scenario, prepared, deleted, *, records=1, epsilon=1.0, delta=1e-5):
    """Guo et al. 2020: θ⁺ minimises L + bᵀθ; removal is one Newton step on the retained
    perturbed objective (the chord kernel's first pass), its data-dependent gradient residual
    bound (γ/2)·R·‖P₋Δ‖² (`defenses.newton_residual_bound` with ‖P₋‖₂ replaced by the record
    bound R, a tighter form of the same argument) reported in `residual_bound`; a removal whose
    bound exceeds the budget ε' is refused: the deletion is retrained exactly instead."""
    state, train = prepared.state, scenario.train
    theta = prepared.params
    step = _exact_unlearn("chord", scenario, theta, state.system, deleted, max_steps=1)
    exact = _exact_unlearn("chord", scenario, theta, state.system, deleted)
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    delta_theta = step.params - theta[None]
    image = jnp.einsum("nd,bd...->bn...", train.features, delta_theta)
    weight = masks if image.ndim == 2 else masks[..., None]
    bounds = jax.vmap(
        lambda img: _defenses.newton_residual_bound(
            scenario.model.curvature_lipschitz, state.record_bound, img
        )
    )(image * weight)
    refused = bounds > state.budget
    pick = jnp.where(refused.reshape((-1,) + (1,) * theta.ndim), exact.params, step.params)
    return UnlearnResult(
        pick,
        jnp.where(refused, exact.grad_norm, step.grad_norm),
        jnp.where(refused, exact.steps, step.steps),
        exact_distance=_distance(pick, exact.params),
        residual_bound=bounds,
    )


class ShardState(NamedTuple):
    """SISA's shared state: each training record's shard, the shards' 0/1 masks [S, n], and a
    per-shard preconditioner (Cholesky factors [S, P, P] for small P, else None)."""

    shard_of: jax.Array
    masks: jax.Array
    factors: jax.Array | None


def _sisa_prepare(scenario, params, *, records=1, shards=5):
    n = scenario.n_train
    _validate.integer("shards", shards, minimum=2, maximum=n // 2)
    if records != 1:
        raise _validate.fail("deletions_per_request", "sisa removes one record per deletion")
    order = jax.random.permutation(subkey(scenario.key, "shards"), n)
    shard_of = jnp.zeros(n, jnp.int32).at[order].set(jnp.arange(n, dtype=jnp.int32) % shards)
    masks = (shard_of[None, :] == jnp.arange(shards)[:, None]).astype(params.dtype)
    thetas = jax.jit(jax.vmap(lambda sc, w: fit(sc, weights=w).params, in_axes=(None, 0)))(
        scenario, masks
    )
    factors = None
    if scenario.param_count <= DENSE_LIMIT and scenario.model.target is None:
        model, train = scenario.model, scenario.train
        factors = jax.jit(
            jax.vmap(
                lambda t, w, sc: _unlearning.hessian_cholesky(
                    model, t, sc.train.features, l2=sc.l2, labels=sc.train.labels, weights=w
                ),
                in_axes=(0, 0, None),
            )
        )(thetas, masks, scenario)
        del train
    return Plan("sisa-retrain"), _prepared(thetas, ShardState(shard_of, masks, factors))


def _sisa(plan, scenario, prepared, deleted, *, records=1, shards=5):
    """SISA (Bourtoule et al. 2021): every record belongs to one of S shards, each with its own
    model; a deletion retrains only its record's shard, exactly (Newton-CG from the shard's θ on
    the shard's retained records). Returns every shard's θ [B, S, ...]."""
    state, train, model = prepared.state, scenario.train, scenario.model
    if deleted.ndim != 1:
        raise _validate.fail("deleted", "sisa removes one record per deletion: pass [B] positions")

    def one(j):
        s = state.shard_of[j]
        weights = state.masks[s].at[j].set(0)
        theta = prepared.params[s]
        if model.target is not None:
            targets = model.target(train.labels, train.features.dtype)
            new = _solvers.fit_ridge(train.features, targets, l2=scenario.l2, weights=weights)
            result = UnlearnResult(new.params, new.grad_norm, new.steps)
        else:
            result = _unlearning.unlearn_retrain(
                model,
                theta,
                train.features,
                train.labels,
                weights,
                l2=scenario.l2,
                precond_factor=None if state.factors is None else state.factors[s],
                cg_max_steps=500,
            )
        return result._replace(params=prepared.params.at[s].set(result.params))

    return jax.vmap(one)(deleted)


UNLEARNING: dict[str, UnlearningMethod] = {
    "exact": UnlearningMethod(_exact_prepare, _exact),
    "newton": UnlearningMethod(_newton_prepare, _newton),
    "certified": UnlearningMethod(_certified_prepare, _certified),
    "descent-to-delete": UnlearningMethod(_descent_to_delete_prepare, _descent_to_delete),
    "gradient-ascent": UnlearningMethod(_first_order_prepare("gradient-ascent"), _gradient_ascent),
    "finetune": UnlearningMethod(_first_order_prepare("finetune"), _finetune),
    "sisa": UnlearningMethod(_sisa_prepare, _sisa),
}


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["scenario", "prepared"],
    meta_fields=["method", "plan", "options"],
)
@dataclasses.dataclass(frozen=True)
class Unlearner:
    """Unlearning ready to run: θ⁺, the shared state and the method (`make_unlearn`).

    Call it on a batch of deletions: `unlearner(deleted)` -> `UnlearnResult` batched over B:
    the published θ⁻ [B, ...] (noised where the method or the defence calls for it), the
    relative gradient norm ‖∇L₋(θ⁻)‖ / ‖∇L₋(0)‖ of the retained objective at it [B], steps [B],
    the distance to exact retraining ‖θ⁻ − θ_exact‖/‖θ_exact‖ [B] (`exact_distance`; 0 when θ⁻
    is exact) and, for certified removal, the residual bound [B]. One compiled function per batch
    shape; `apply` is the same, unjitted.

    Attributes:
      scenario: the scenario.
      prepared: what the method computed once (`Prepared`).
      method: its name in `UNLEARNING`.
      plan: its kernel, the exact reference's kernel and its privacy (`Plan`).
      options: the method's options as sorted (name, value) pairs.
    """

    scenario: Scenario
    prepared: Prepared
    method: str
    plan: Plan
    options: tuple[tuple[str, Any], ...] = ()

    @property
    def params(self) -> jax.Array:
        """θ⁺ as the operator holds it."""
        return self.prepared.params

    @property
    def released(self) -> jax.Array:
        """θ⁺ as published: what an attacker sees before the deletion."""
        return self.prepared.released

    @property
    def served(self) -> jax.Array:
        """The published θ⁺ as one model (SISA: the average of the shards' parameters)."""
        released = self.prepared.released
        sharded = released.ndim > len(self.scenario.model.param_shape(1))
        return released.mean(axis=0) if sharded else released

    @property
    def kernel(self) -> str:
        """The kernel serving this method and scenario (summary.json `unlearning.kernel`)."""
        return self.plan.kernel

    @property
    def privacy(self) -> Privacy | None:
        """How the releases are protected, or None."""
        return self.plan.privacy

    def apply(self, deleted: jax.Array) -> UnlearnResult:
        """The published θ⁻ and diagnostics for `deleted` ([B] or [B, k]); unjitted."""
        prepared, scenario = self.prepared, self.scenario
        out = UNLEARNING[self.method].unlearn(
            self.plan, scenario, prepared, deleted, **dict(self.options)
        )
        if self.plan.noised:
            keys = jax.vmap(lambda d: _request_key(prepared.key, d))(deleted)
            noised = jax.vmap(lambda k, t: _defenses.gaussian_release(k, t, prepared.noise_std))
            out = out._replace(params=noised(keys, out.params))
            out = out._replace(grad_norm=_retained_grad_norm(scenario, out.params, deleted))
        if out.exact_distance is not None:
            return out
        if self.plan.reference_kernel is None:
            return out._replace(exact_distance=jnp.zeros_like(out.grad_norm))
        exact = _exact_unlearn(
            self.plan.reference_kernel, scenario, prepared.params, prepared.reference, deleted
        )
        return out._replace(exact_distance=_distance(out.params, exact.params))

    def __call__(self, deleted) -> UnlearnResult:
        return _unlearn_batch(self, as_deletions(deleted))


def make_unlearn(
    scenario: Scenario,
    params: jax.Array,
    method: str = "exact",
    *,
    defense: str = "none",
    epsilon: float | None = None,
    delta: float = 1e-5,
    **options,
) -> Unlearner:
    """The unlearning `method` of `UNLEARNING` for deletions from `scenario`'s model θ⁺.

    Computes what every deletion shares once (the exact method: ridge's H⁻¹, a smooth GLM's
    explicit H⁺⁻¹, a Cholesky factor or a Nyström preconditioner, by `exact_kernel`).

    Args:
      scenario: the scenario.
      params: θ⁺ (`fit(scenario).params`).
      method: a name of `UNLEARNING`.
      defense: "none" or "output-perturbation": Gaussian noise of std z(ε, δ)·2G/λ on θ⁺ and,
        fresh, on every θ⁻ (`defenses.erm_sensitivity`; Lipschitz losses only).
      epsilon, delta: the privacy target of `defense` and of the methods `certified` and
        `descent-to-delete` (ε default 1.0 for those methods; required with a defence).
      **options: the method's options: `records` (k records per deletion), `tol`, `block`,
        `inverse_dtype` (exact); `steps`, `lr` (first-order methods); `shards` (sisa).

    Raises:
      InputError: an unknown method or defence, a bad option, a method that does not fit the
        model (certified and descent-to-delete need a Lipschitz loss).
    """
    _validate.choice("method", method, UNLEARNING)
    _validate.choice("defense", defense, DEFENSES)
    if method in ("certified", "descent-to-delete"):
        if defense != "none":
            raise _validate.fail(
                "defense", f"{method} calibrates its own noise; use it without a defence"
            )
        options |= {"epsilon": 1.0 if epsilon is None else epsilon, "delta": delta}
    if "records" in options:
        _validate.integer("deletions_per_request", options["records"], minimum=1)
    plan, prepared = UNLEARNING[method].prepare(scenario, params, **options)
    if defense == "output-perturbation":
        if method == "sisa":
            raise _validate.fail("defense", "output perturbation of SISA's shards is not supported")
        plan, prepared = _output_perturbation(scenario, plan, prepared, epsilon, delta)
    return Unlearner(scenario, prepared, method, plan, tuple(sorted(options.items())))


class Sequence(NamedTuple):
    """A sequence of single-record deletions, every intermediate model published.

    Attributes:
      before: [T, ...] the published model before each deletion (the previous release).
      after: [T, ...] the published model after it.
      grad_norm: [T] the retained objective's relative gradient norm at each release.
      steps: [T] Newton steps of each update.
      exact_distance: [T] distance of each (operator's) update to exact retraining from the
        previous model on the same retained records (0 for exact).
      carry: (the operator's model, the retained 0/1 weights [n]) after the last deletion, to
        continue the sequence.
    """

    before: jax.Array
    after: jax.Array
    grad_norm: jax.Array
    steps: jax.Array
    exact_distance: jax.Array
    carry: tuple[jax.Array, jax.Array]


SEQUENTIAL_METHODS = ("exact", "newton")


def unlearn_sequence(
    unlearner: Unlearner,
    deleted: jax.Array,
    carry: tuple[jax.Array, jax.Array] | None = None,
    published: jax.Array | None = None,
) -> Sequence:
    """Deletes the records `deleted` [T] one after another, each update starting from the
    previous model on the records retained so far (Newton-CG with the shared system as its
    preconditioner: exact to round-off for `exact`, one Newton step for `newton`), publishing
    every intermediate model (fresh noise per release when the unlearner adds noise). Pure; jit
    it. Resume a long sequence from the previous call's `carry` and its last `after`.

    Raises:
      InputError: a method other than `SEQUENTIAL_METHODS`.
    """
    if unlearner.method not in SEQUENTIAL_METHODS:
        raise _validate.fail(
            "unlearning",
            f"sequential deletions support {', '.join(SEQUENTIAL_METHODS)}, got "
            f"{unlearner.method!r}",
        )
    scenario, prepared = unlearner.scenario, unlearner.prepared
    train, model = scenario.train, scenario.model
    if carry is None:
        carry = (prepared.params, jnp.ones(train.features.shape[0], train.features.dtype))
    published = prepared.released if published is None else published
    precond = _preconditioner(unlearner)
    newton_steps = 1 if unlearner.method == "newton" else 50

    def retrain(theta, weights, max_steps):
        return _solvers.fit_newton(
            model,
            train.features,
            train.labels,
            l2=scenario.l2,
            weights=weights,
            init=theta,
            max_steps=max_steps,
            linear_solver="cg",
            precond=precond,
            cg_max_steps=500,
        )

    def step(state, j):
        (theta, weights), before = state
        weights = weights.at[j].set(0)
        update = retrain(theta, weights, newton_steps)
        distance = jnp.zeros((), theta.dtype)
        if unlearner.method != "exact":
            distance = _distance(update.params[None], retrain(theta, weights, 50).params[None])[0]
        after = update.params
        norm = update.grad_norm
        if unlearner.plan.noised:
            key = _request_key(prepared.key, j)
            after = _defenses.gaussian_release(key, after, prepared.noise_std)
            norm = _solvers.relative_grad_norm(
                model, after, train.features, train.labels, l2=scenario.l2, weights=weights
            )
        out = (before, after, norm, update.steps, distance)
        return ((update.params, weights), after), out

    (carry, _), (before, after, norms, steps, distance) = jax.lax.scan(
        step, (carry, published), deleted
    )
    return Sequence(before, after, norms, steps, distance, carry)


def _preconditioner(unlearner: Unlearner) -> Callable[[jax.Array], jax.Array]:
    """v -> M⁻¹v from the exact system at θ⁺: H⁺⁻¹ (chord, woodbury), a Cholesky solve, or the
    Kronecker factors; a preconditioner only, whatever the current model and retained records."""
    state, kernel = unlearner.prepared.state, unlearner.kernel
    shape = unlearner.params.shape
    if kernel == "chord":
        return lambda v: (
            (state.inverse @ v.reshape(-1).astype(state.inverse.dtype))
            .reshape(shape)
            .astype(v.dtype)
        )
    if kernel == "woodbury":
        return lambda v: (state.inverse @ v.reshape(state.inverse.shape[0], -1)).reshape(shape)
    if kernel == "newton-cg-cholesky":
        return lambda v: jax.scipy.linalg.cho_solve((state, True), v.reshape(-1)).reshape(shape)
    if kernel == "chord-kfac":
        return _solvers.preconditioner_fn(state.precond)
    return _solvers.preconditioner_fn(state)


def method_options(method: str, **candidates) -> dict[str, Any]:
    """The options among `candidates` that `method` takes (None values dropped): a run's knobs
    (`records`, `steps`, `lr`, `shards`, ...) mapped to one method, e.g.
    `make_unlearn(sc, theta, m, **method_options(m, steps=10, shards=5, records=1))`."""
    _validate.choice("method", method, UNLEARNING)
    accepted = inspect.signature(UNLEARNING[method].prepare).parameters
    return {k: v for k, v in candidates.items() if v is not None and k in accepted}


def _output_perturbation(scenario, plan, prepared, epsilon, delta):
    if epsilon is None:
        raise _validate.fail("epsilon", "give the privacy target of output perturbation")
    gradient_bound, _ = _lipschitz_constants(scenario, "output perturbation")
    sensitivity = _defenses.erm_sensitivity(gradient_bound, float(scenario.l2))
    sigma = _defenses.gaussian_noise_multiplier(epsilon, delta) * sensitivity
    key_before, key_after = jax.random.split(subkey(scenario.key, "release"))
    released = _defenses.gaussian_release(key_before, prepared.params, sigma)
    privacy = Privacy("output-perturbation (Gaussian)", epsilon, delta, sigma, sensitivity)
    prepared = prepared._replace(
        released=released,
        noise_std=jnp.asarray(sigma, prepared.params.dtype),
        key=key_after,
    )
    reference_kernel = plan.reference_kernel
    if prepared.reference is None:  # an exact method: its own state is the exact reference
        prepared = prepared._replace(reference=prepared.state)
        reference_kernel = plan.kernel
    return plan._replace(privacy=privacy, reference_kernel=reference_kernel, noised=True), prepared


def fisher_applies(unlearner: Unlearner) -> bool:
    """Whether `fisher_bounds` applies: exact unlearning with Gaussian noise on both releases."""
    return unlearner.plan.noised and unlearner.method == "exact"


def fisher_bounds(unlearner: Unlearner, deleted: jax.Array) -> jax.Array:
    """The Fisher-information lower bound on any unbiased attacker's per-coordinate MSE, [B].

    With exact unlearning and Gaussian noise σ on both releases, θ⁻ does not depend on the
    deleted input x_j and θ⁺ does through its optimality condition, so by implicit
    differentiation J = ∂θ⁺/∂x_j = −H⁺⁻¹ ∂²ℓ(θ⁺; φ(x_j), y_j)/∂θ∂x_j (H⁺ the training Hessian)
    and the bound is d/tr(JᵀJ/σ²) (`defenses.fisher_bound`). Pure; vmapped over [B] deletions.

    Raises:
      InputError: no Gaussian noise on the releases, or an approximate method (whose θ⁻ still
        depends on x_j).
    """
    if not fisher_applies(unlearner):
        raise _validate.fail(
            "defense",
            "the Fisher bound needs exact unlearning and Gaussian noise on both releases "
            "(--defense output-perturbation)",
        )
    scenario, theta = unlearner.scenario, unlearner.params
    model, fmap = scenario.model, scenario.feature_map
    solve = _hessian_solver(unlearner)

    def one(j):
        y = scenario.train.labels[j]

        def grad(x):
            return _models.per_example_grad(model, theta, fmap.apply(x), y).reshape(-1)

        mixed = jax.jacfwd(grad)(scenario.train.x[j])
        jacobian = _defenses.implicit_jacobian(solve, mixed)
        return _defenses.fisher_bound(jacobian, unlearner.prepared.noise_std)

    return jax.vmap(one)(deleted)


def _hessian_solver(unlearner: Unlearner) -> Callable[[jax.Array], jax.Array]:
    """v [P] -> H⁺⁻¹v at the operator's θ⁺, from the exact method's shared system."""
    scenario, theta, kernel = unlearner.scenario, unlearner.params, unlearner.kernel
    state = unlearner.prepared.state
    if kernel == "chord":
        return lambda v: state.inverse @ v
    if kernel == "woodbury":
        return lambda v: (state.inverse @ v.reshape(state.inverse.shape[0], -1)).reshape(-1)
    train = scenario.train
    weights = jnp.ones(train.features.shape[0], train.features.dtype)

    def matvec(v):
        v = v.reshape(theta.shape)
        out = _models.hvp(scenario.model, theta, train.features, weights, v, train.labels)
        return (out + scenario.l2 * v).reshape(-1)

    precond = _preconditioner(unlearner)
    return lambda v: _solvers.conjugate_gradient(
        matvec,
        v,
        precond=lambda u: precond(u.reshape(theta.shape)).reshape(-1),
        tol=1e-10,
        max_steps=2000,
    )


def feature_bound(scenario: Scenario) -> float:
    """R >= ‖p‖ for every input in the data box: identity features √(d·b² + 1) with b the box's
    largest magnitude, random Fourier features √3 (‖φ‖² <= 2 plus the bias)."""
    if scenario.feature_params is not None:
        return 3**0.5
    lower, upper = scenario.box
    magnitude = max(abs(lower), abs(upper))
    return (scenario.train.x.shape[1] * magnitude**2 + 1) ** 0.5


def smoothness(scenario: Scenario) -> float:
    """M = curvature bound · λ_max(PᵀP) + λ: the loss Hessian of the training objective never
    exceeds it (`Model.curvature_bound`; λ_max by power iterations on the training features)."""
    gram = float(_gram_norm_jit(scenario.train.features))
    return scenario.model.curvature_bound * gram + float(scenario.l2)


def _gram_norm(features: jax.Array, iterations: int = 100) -> jax.Array:
    """λ_max(PᵀP) by power iterations (deterministic start), slightly over-estimated (×1.01)."""
    v = jnp.ones(features.shape[1], features.dtype) / features.shape[1] ** 0.5

    def body(_, v):
        w = features.T @ (features @ v)
        return w / jnp.linalg.norm(w)

    v = jax.lax.fori_loop(0, iterations, body, v)
    return 1.01 * jnp.linalg.norm(features @ v) ** 2


def _distance(params: jax.Array, exact: jax.Array) -> jax.Array:
    """‖θ⁻ − θ_exact‖ / ‖θ_exact‖ per deletion, [B]."""
    count = params.shape[0]
    gap = jnp.linalg.norm((params - exact).reshape(count, -1), axis=1)
    scale = jnp.linalg.norm(exact.reshape(count, -1), axis=1)
    return gap / jnp.maximum(scale, jnp.finfo(scale.dtype).tiny)


def _retained_grad_norm(scenario, params, deleted):
    """The retained objective's relative gradient norm at each published θ⁻."""
    train = scenario.train
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    return jax.vmap(
        lambda t, w: _solvers.relative_grad_norm(
            scenario.model, t, train.features, train.labels, l2=scenario.l2, weights=w
        )
    )(params, masks)


def _request_key(key: jax.Array, deleted: jax.Array) -> jax.Array:
    """A release key per deletion request, from its positions: the same request always gets the
    same noise, whatever the chunk it is computed in."""
    for position in jnp.atleast_1d(deleted):
        key = jax.random.fold_in(key, position)
    return key


def _run_unlearner(unlearner: Unlearner, deleted: jax.Array) -> UnlearnResult:
    return unlearner.apply(deleted)


# The outermost jit of the convenience calls; `_exact_system` once per kernel and dtype.
_unlearn_batch = jax.jit(_run_unlearner)
_exact_system_jit = jax.jit(_exact_system, static_argnums=(0, 3))
_gram_norm_jit = jax.jit(_gram_norm)
