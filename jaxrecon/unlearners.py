"""Unlearning methods as registry entries (DESIGN §3.5): `make_unlearn` and the `Unlearner`.

    unlearner = make_unlearn(scenario, theta, "exact")     # what every deletion shares, once
    after = unlearner(deleted)                             # UnlearnResult batched over B

`UNLEARNING` maps a method's name to an `UnlearningMethod(prepare, unlearn)`: `prepare` computes
what the method's deletions share (a Cholesky factor, an explicit inverse Hessian, ...) once,
`unlearn` maps a batch of deleted positions to θ⁻ and diagnostics (pure, jittable). A new method is
one entry here and one kernel in `unlearning`. The exact method picks its kernel by the model's
properties and size (`exact_kernel`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax

from jaxrecon import _validate
from jaxrecon import unlearning as _unlearning
from jaxrecon.scenario import DENSE_LIMIT, DTYPES, Scenario, as_deletions, nystrom_sketch
from jaxrecon.unlearning import UnlearnResult

# Smooth GLMs with P up to this unlearn with one explicit [P, P] inverse Hessian shared by all
# deletions (`unlearning.unlearn_glm`; 8192² float64 = 0.5 GB, MNIST softmax 785 × 10 fits).
DENSE_UNLEARN_LIMIT = 8192


class UnlearningMethod(NamedTuple):
    """One entry of `UNLEARNING`.

    Attributes:
      prepare: (scenario, θ⁺, **options) -> (kernel name, shared state): what every deletion
        shares, computed once (eagerly; jit inside).
      unlearn: (kernel, scenario, θ⁺, state, deleted, **options) -> `UnlearnResult` batched
        over the B deletions; pure and jittable.
    """

    prepare: Callable[..., tuple[str, Any]]
    unlearn: Callable[..., UnlearnResult]


def exact_kernel(scenario: Scenario) -> str:
    """Which exact-unlearning kernel serves this model and size (summary.json names it).

    - "woodbury": quadratic losses, θ⁻ in closed form from one shared H⁻¹;
    - "chord": smooth GLMs with P <= DENSE_UNLEARN_LIMIT, chord iterations on one shared H⁺⁻¹;
    - "newton-cg-cholesky": P <= DENSE_LIMIT, Newton-CG preconditioned by a shared factor of H⁺;
    - "newton-cg-nystrom": larger, a shared rank-200 Nyström preconditioner (no [P, P] matrix).
    """
    size = scenario.param_count
    if scenario.model.target is not None:
        return "woodbury"
    if scenario.model.smooth and size <= DENSE_UNLEARN_LIMIT:
        return "chord"
    return "newton-cg-cholesky" if size <= DENSE_LIMIT else "newton-cg-nystrom"


def _exact_system(kernel: str, scenario: Scenario, params: jax.Array, inverse_dtype=None):
    model, train, l2 = scenario.model, scenario.train, scenario.l2
    if kernel == "woodbury":
        targets = model.target(train.labels, train.features.dtype)
        return _unlearning.ridge_system(train.features, targets, l2=l2)
    if kernel == "chord":
        return _unlearning.glm_system(
            model, params, train.features, train.labels, l2=l2, inverse_dtype=inverse_dtype
        )
    if kernel == "newton-cg-cholesky":
        return _unlearning.hessian_cholesky(
            model, params, train.features, l2=l2, labels=train.labels
        )
    return nystrom_sketch(scenario, params, "unlearn")


def _exact_prepare(
    scenario: Scenario, params: jax.Array, *, tol=None, inverse_dtype=None, block=None
) -> tuple[str, Any]:
    kernel = exact_kernel(scenario)
    if inverse_dtype is not None:
        _validate.choice("inverse_dtype", inverse_dtype, DTYPES)
    if block is not None:
        _validate.integer("block", block, minimum=1)
    if tol is not None:
        _validate.positive("tol", tol)
    system = _exact_system_jit(kernel, scenario, params, inverse_dtype)
    return kernel, system


def _exact_unlearn(
    kernel, scenario, params, state, deleted, *, tol=None, inverse_dtype=None, block=None
) -> UnlearnResult:
    """Exact unlearning (DESIGN §3.5): the retrained model, to the relative gradient norm `tol`
    (default: round-off, 1e-12 in float64). Options: `tol`; for the chord kernel `block`
    (deletions per pass) and `inverse_dtype` ("float32" stores the shared H⁺⁻¹ in float32, a
    preconditioner only: θ⁻ stays exact to `tol`)."""
    model, train, l2 = scenario.model, scenario.train, scenario.l2
    if kernel == "woodbury":
        targets = model.target(train.labels, train.features.dtype)
        return jax.vmap(
            lambda d: _unlearning.unlearn_ridge(params, state, train.features, targets, d, l2=l2)
        )(deleted)
    if kernel == "chord":
        if deleted.ndim != 1:
            raise _validate.fail(
                "deleted",
                f"the chord kernel removes one record per deletion: pass [B] positions, got "
                f"shape {deleted.shape}",
            )
        return _unlearning.unlearn_glm(
            model, state, params, train.features, train.labels, deleted, l2=l2, tol=tol, block=block
        )
    masks = _unlearning.deletion_masks(deleted, train.features.shape[0], train.features.dtype)
    dense = kernel == "newton-cg-cholesky"
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
        )
    )(masks)


UNLEARNING: dict[str, UnlearningMethod] = {
    "exact": UnlearningMethod(_exact_prepare, _exact_unlearn),
}


@functools.partial(
    jax.tree_util.register_dataclass,
    data_fields=["scenario", "params", "state"],
    meta_fields=["method", "kernel", "options"],
)
@dataclasses.dataclass(frozen=True)
class Unlearner:
    """Unlearning ready to run: θ⁺, the shared state and the method (`make_unlearn`).

    Call it on a batch of deletions: `unlearner(deleted)` -> `UnlearnResult` batched over B
    (θ⁻ [B, ...], relative gradient norm ‖∇L₋(θ⁻)‖ / ‖∇L₋(0)‖ [B], steps [B]), one compiled
    function per batch shape. `apply` is the same, unjitted.

    Attributes:
      scenario, params: the scenario and θ⁺.
      state: the method's shared state (e.g. `unlearning.GLMSystem`).
      method: its name in `UNLEARNING`.
      kernel: the kernel serving this scenario (e.g. "chord").
      options: the method's options as sorted (name, value) pairs.
    """

    scenario: Scenario
    params: jax.Array
    state: Any
    method: str
    kernel: str
    options: tuple[tuple[str, Any], ...] = ()

    def apply(self, deleted: jax.Array) -> UnlearnResult:
        """θ⁻ and diagnostics for `deleted` ([B] or [B, k] training positions); unjitted."""
        method = UNLEARNING[self.method]
        return method.unlearn(
            self.kernel, self.scenario, self.params, self.state, deleted, **dict(self.options)
        )

    def __call__(self, deleted) -> UnlearnResult:
        return _unlearn_batch(self, as_deletions(deleted))


def make_unlearn(
    scenario: Scenario, params: jax.Array, method: str = "exact", **options
) -> Unlearner:
    """The unlearning `method` of `UNLEARNING` for deletions from `scenario`'s model θ⁺.

    Computes what every deletion shares once (the exact method: ridge's H⁻¹, a smooth GLM's
    explicit H⁺⁻¹, a Cholesky factor or a Nyström preconditioner, by `exact_kernel`).

    Args:
      scenario: the scenario.
      params: θ⁺ (`fit(scenario).params`).
      method: a name of `UNLEARNING`.
      **options: the method's options.

    Raises:
      InputError: an unknown method.
    """
    _validate.choice("method", method, UNLEARNING)
    kernel, state = UNLEARNING[method].prepare(scenario, params, **options)
    return Unlearner(scenario, params, state, method, kernel, tuple(sorted(options.items())))


def _run_unlearner(unlearner: Unlearner, deleted: jax.Array) -> UnlearnResult:
    return unlearner.apply(deleted)


# The outermost jit of the convenience calls; `_exact_system` once per kernel and dtype.
_unlearn_batch = jax.jit(_run_unlearner)
_exact_system_jit = jax.jit(_exact_system, static_argnums=(0, 3))
