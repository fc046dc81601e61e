"""Defences and limits (DESIGN §3.6): calibrated Gaussian noise on released models, the constants
the calibrations rest on, and the Fisher-information lower bound on any unbiased attacker's error.

Objective, as everywhere: L(θ) = Σ_i ℓ(θ; p_i, y_i) + (λ/2)‖θ‖² (a sum over the n records).
With ‖p‖ <= R on the data box and a loss whose slope is bounded, ‖∇ℓ(θ; p, y)‖ <= G = s·R for
every θ (`Model.slope_bound` s). Then:

- the minimiser moves by at most G/λ when one record is removed (L₋ is λ-strongly convex and
  ∇L₋(θ⁺) = −∇ℓ_j(θ⁺)), and by at most 2G/λ when one record is replaced: the ℓ2 sensitivity of
  regularised ERM (Chaudhuri, Monteleoni & Sarwate 2011, in sum form);
- the Gaussian mechanism adds N(0, σ²I) with σ = z(ε, δ)·Δ, where z is the noise multiplier of
  an (ε, δ)-DP Gaussian mechanism of sensitivity 1, from `dp_accounting`'s exact privacy loss
  of the Gaussian mechanism (no hand-written formula).

Every function is pure NumPy/JAX of numbers and arrays; the composition layer (`unlearners`)
reads R, s, λ and n from a scenario and applies the noise.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import _validate


class Privacy(NamedTuple):
    """How a release was protected (summary.json `privacy`).

    Attributes:
      mechanism: e.g. "output-perturbation (Gaussian)", "descent-to-delete (Gaussian)",
        "certified removal (objective perturbation)".
      epsilon, delta: the (ε, δ) of each release.
      noise_std: σ of the Gaussian noise (on each released model, or on b for objective
        perturbation).
      sensitivity: the ℓ2 sensitivity σ was calibrated to.
    """

    mechanism: str
    epsilon: float
    delta: float
    noise_std: float
    sensitivity: float


@functools.cache
def gaussian_noise_multiplier(epsilon: float, delta: float) -> float:
    """z such that adding N(0, z²) to a sensitivity-1 query is (ε, δ)-DP.

    dp_accounting's exact privacy loss of the Gaussian mechanism
    (`GaussianPrivacyLoss.get_delta_for_epsilon`, the analytic Gaussian mechanism of Balle &
    Wang 2018), inverted in z by bracketing: exact for every ε (a discretised privacy-loss
    distribution gives the same z to 1e-6 for ε <= 100 and cannot reach ε = 1e6).

    Raises:
      InputError: ε <= 0 or δ not in (0, 1).
    """
    _validate.positive("epsilon", epsilon)
    if not 0 < delta < 1:
        raise _validate.fail("delta", f"must be in (0, 1), got {delta!r}")
    from dp_accounting.pld import privacy_loss_mechanism
    from scipy import optimize

    def excess(z):
        loss = privacy_loss_mechanism.GaussianPrivacyLoss(z, sensitivity=1.0)
        return loss.get_delta_for_epsilon(float(epsilon)) - float(delta)

    return float(optimize.brentq(excess, 1e-12, 1e6, xtol=1e-15, rtol=1e-12))


def erm_sensitivity(gradient_bound: float, l2: float) -> float:
    """Δ = 2G/λ, G >= ‖∇ℓ‖ on the data box: how far the regularised-ERM minimiser moves when one
    record is replaced (Chaudhuri, Monteleoni & Sarwate 2011, Corollary 8, in sum form)."""
    return 2 * gradient_bound / l2


def gaussian_release(key: jax.Array, params: jax.Array, noise_std: float | jax.Array) -> jax.Array:
    """params + N(0, σ²I), in the dtype of `params` (σ = 0 returns params unchanged)."""
    noise = jax.random.normal(key, params.shape, params.dtype)
    return params + jnp.asarray(noise_std, params.dtype) * noise


def descent_to_delete_sensitivity(
    gradient_bound: float, l2: float, smoothness: float, steps: int
) -> tuple[float, float]:
    """(Δ, step size) of `steps` gradient-descent steps started at θ⁺ on the retained objective.

    L₋ is m = λ strongly convex and M smooth; with step η = 2/(m + M) every step contracts the
    distance to its minimiser θ*₋ by γ = (M − m)/(M + m), and ‖θ⁺ − θ*₋‖ <= G/λ, so the iterate
    after T steps lies within Δ = γ^T·G/λ of what retraining returns. Noise of that sensitivity
    makes the release indistinguishable from retraining plus the same noise (Neel, Roth &
    Sharifi-Malvajerdi 2021, the contraction argument of their perturbed gradient descent).
    """
    m, big_m = l2, smoothness
    gamma = (big_m - m) / (big_m + m)
    return gamma**steps * gradient_bound / l2, 2 / (m + big_m)


def certified_noise_std(epsilon: float, delta: float, residual_budget: float) -> float:
    """σ of the objective-perturbation vector b for (ε, δ) certified removal (Guo et al. 2020,
    Theorem 3): b ~ N(0, (c·ε'/ε)²I) with c = √(2 ln(1.5/δ)) when every removal's gradient
    residual stays within ε' (`residual_budget`)."""
    _validate.positive("epsilon", epsilon)
    if not 0 < delta < 1:
        raise _validate.fail("delta", f"must be in (0, 1), got {delta!r}")
    return math.sqrt(2 * math.log(1.5 / delta)) * residual_budget / epsilon


def newton_residual_bound(
    curvature_lipschitz: float, features_norm: jax.Array, step_image: jax.Array
) -> jax.Array:
    """Data-dependent bound on ‖∇L₋(θ⁻)‖ after a Newton removal θ⁻ = θ⁺ + Δ (Guo et al. 2020,
    Corollary 1, for a GLM): with d_i = p_iᵀΔ (`step_image` [n] or [n, K], the retained rows),
    ‖Σ_i (ℓ''(z_i + t·d_i) − ℓ''(z_i)) d_i p_i‖ <= γ·t·‖P₋‖₂·‖d‖₂², integrated over t ∈ [0, 1]:
    (γ/2)·‖P₋‖₂·‖P₋Δ‖₂² (`features_norm` = ‖P₋‖₂ <= ‖P‖₂)."""
    return 0.5 * curvature_lipschitz * features_norm * jnp.sum(step_image * step_image)


def fisher_bound(jacobian: jax.Array, noise_std: float | jax.Array) -> jax.Array:
    """Lower bound on the per-coordinate mean squared error of any unbiased estimate of x_j
    from Gaussian-noised releases: with J = ∂(released means)/∂x_j [P', d] and I = JᵀJ/σ²,
    E‖x̂ − x‖²/d >= tr(I⁻¹)/d >= d/tr(I) (Cramér–Rao; Hannun, Guo & van der Maaten 2021; Guo,
    Sablayrolles, Song & Chaudhuri, ICML 2022). Returns d/tr(I) (inf when J = 0)."""
    d = jacobian.shape[-1]
    trace = jnp.sum(jacobian * jacobian) / jnp.asarray(noise_std, jacobian.dtype) ** 2
    return jnp.where(trace > 0, d / jnp.where(trace > 0, trace, 1), jnp.inf)


def implicit_jacobian(
    hessian_solve: Callable[[jax.Array], jax.Array],
    mixed: jax.Array,
) -> jax.Array:
    """∂θ*/∂x = −H⁻¹ ∂²L/∂θ∂x by the implicit function theorem (∇_θ L(θ*(x), x) = 0).

    Args:
      hessian_solve: v [P] -> H⁻¹v at the optimum.
      mixed: ∂(∇_θ L)/∂x [P, d], the mixed second derivative at the optimum.

    Returns:
      J [P, d].
    """
    return -jax.vmap(hessian_solve, in_axes=1, out_axes=1)(mixed)
