"""What-if kernels for the benchmarks that miss their targets (not library code).

Run from the repository root (about 2 minutes on the 2-core CPU, after `run.py`'s setup):

    python benchmarks/prototypes.py [--only ridge,logistic,softmax] [--json FILE]

Each prototype computes the same θ⁻ as the library kernel it shadows, on the same data and
deletions as `benchmarks/run.py`, and reports its time per deletion, its relative gradient norm
on the retained data and its distance to the library's θ⁻. They show what the changes proposed
for `jaxrecon/unlearning.py` would buy before anyone changes the library:

- ridge: Sherman–Morrison with the gradient-norm check done in O(D²) with the shared H = PᵀP + λI
  and b = Pᵀy: ∇L₋(θ⁻) = H θ⁻ − b − p_j (p_jᵀθ⁻ − y_j), ∇L₋(0) = −(b − p_j y_j). The library
  recomputes it from the [n, D] data (6nD per deletion, 97% of the kernel's FLOPs).
- logistic / softmax: every quantity at θ⁺ is shared (z⁺ = Pθ⁺, ∇L(θ⁺), ∇L(0)), so ∇L₋(θ⁺) and
  ∇L₋(0) cost O(DK); the first Newton step uses the exact retained Hessian at θ⁺,
  H₋(θ⁺) = H⁺ − (p_j p_jᵀ) ⊗ ℓ''(z_j), by Woodbury on an explicit H⁺⁻¹ computed once from the
  shared factor (rank 1 for logistic, rank K for softmax: with the explicit inverse all K columns
  of H⁺⁻¹(p_j ⊗ I_K) cost one GEMM over the batch, where triangular solves would cost K); later
  steps reuse it (chord iterations, no CG, no line search), each costing one gradient on the
  retained data (4nDK), which doubles as the exactness check. The library spends ~40nDK per
  deletion for logistic and ~115nDK for softmax (gradients, line-search objectives, CG
  Hessian-vector products, preconditioner solves).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time
from typing import Any

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import run as bench  # noqa: E402

from jaxrecon import models as _models  # noqa: E402


def ridge_unlearn_fast(theta, factor, hessian, pty, features, targets, deleted):
    """Sherman–Morrison θ⁻ for one deleted position with an O(D²) gradient-norm check.

    FLOPs per deletion: two triangular solves (2D²) and H θ⁻ (2D²).
    """
    p, y = features[deleted], targets[deleted]
    u = jax.scipy.linalg.cho_solve((factor, True), p)
    new = theta + u * ((p @ theta - y) / (1 - p @ u))
    grad = hessian @ new - pty - p * (p @ new - y)
    grad0 = pty - p * y
    return new, jnp.linalg.norm(grad) / jnp.linalg.norm(grad0)


def inverse_from_cholesky(factor):
    """H⁻¹ = L⁻ᵀ L⁻¹ from the lower Cholesky factor (once per θ⁺; [P, P], about P³ FLOPs)."""
    eye = jnp.eye(factor.shape[0], dtype=factor.dtype)
    inv_factor = jax.scipy.linalg.solve_triangular(factor, eye, lower=True)
    return inv_factor.T @ inv_factor


def glm_unlearn_chord(model, theta, hinv, shared, features, labels, deleted, *, l2, tol, steps):
    """Exact GLM unlearning of one position by chord (fixed-Hessian Newton) iterations.

    Starts from ∇L₋(θ⁺) = ∇L(θ⁺) − ∇ℓ(θ⁺; z_j) (O(DK), shared full gradient) and iterates
    θ ← θ − H₋(θ⁺)⁻¹ ∇L₋(θ) with the exact retained Hessian at θ⁺,
    H₋(θ⁺) = H⁺ − (p_j p_jᵀ) ⊗ C_j, C_j = ℓ''(z_j) [K, K], by Woodbury on the explicit H⁺⁻¹:
    U = H⁺⁻¹(p_j ⊗ I_K) costs 2(DK)² for all K columns at once (one GEMM over the batch), and
    H₋⁻¹v = H⁺⁻¹v + U (I − C_j Vᵀ U)⁻¹ C_j Vᵀ H⁺⁻¹v with V = p_j ⊗ I_K. The first step needs no
    pass over the data; every step after it evaluates the retained gradient (4nDK), which is
    also the exactness check.
    """
    p, y = features[deleted], labels[deleted]
    z_j = shared["z"][deleted]
    scalar = model.num_outputs is None
    k = 1 if scalar else model.num_outputs
    size = hinv.shape[0]

    def outer(dz):
        return p * dz if scalar else jnp.outer(p, dz)

    grad0_norm = jnp.linalg.norm(shared["grad0"] - outer(model.dloss_z(jnp.zeros_like(z_j), y)))
    grad = shared["grad"] - outer(model.dloss_z(z_j, y))
    basis = jnp.eye(k, dtype=features.dtype)
    curv = (
        model.curvature(z_j, basis[0]).reshape(1, 1)
        if scalar
        else jax.vmap(lambda e: model.curvature(z_j, e))(basis)
    )
    u = jnp.einsum("xak,a->xk", hinv.reshape(size, -1, k), p)  # [P, K]
    cap = basis - curv @ jnp.einsum("akq,a->kq", u.reshape(-1, k, k), p)

    def solve(v):
        x = hinv @ v.reshape(-1)
        vx = x.reshape(-1, k).T @ p
        return (x + u @ jnp.linalg.solve(cap, curv @ vx)).reshape(v.shape)

    weights = jnp.ones(features.shape[0], features.dtype).at[deleted].set(0)

    def cond(state):
        _, g, n = state
        return (jnp.linalg.norm(g) / grad0_norm > tol) & (n < steps)

    def body(state):
        th, g, n = state
        th = th - solve(g)
        g = _models.gradient(model, th, features, labels, l2=l2, weights=weights)
        return th, g, n + 1

    th, g, n = jax.lax.while_loop(cond, body, (theta, grad, jnp.zeros((), jnp.int32)))
    return th, jnp.linalg.norm(g) / grad0_norm, n


def _time(fn, args, repeats):
    compiled, compile_s = bench._compile(fn, *args)
    out, timing = bench._time_calls(compiled, args, repeats)
    return out, timing.wall, compile_s


def proto_ridge(config, data, cache) -> dict[str, Any]:
    """`ridge_unlearn_fast` vs `unlearn_ridge` on run.py's B deletions."""
    state = bench._ridge_state(config, data, cache)
    theta, factor = state["theta"], state["factor"]
    features, targets = state["features"], state["targets"]
    deleted = jnp.asarray(state["deleted"])
    hessian = features.T @ features + config.l2 * jnp.eye(features.shape[1], dtype=features.dtype)
    pty = features.T @ targets

    def fast(theta, factor, hessian, pty, features, targets, deleted):
        return jax.vmap(
            lambda d: ridge_unlearn_fast(theta, factor, hessian, pty, features, targets, d)
        )(deleted)

    def library(theta, factor, features, targets, deleted):
        return bench._ridge_kernel(config.l2)(theta, factor, features, targets, deleted[:, None])

    (new, norm), t_fast, _ = _time(
        fast, (theta, factor, hessian, pty, features, targets, deleted), config.repeats
    )
    lib, t_lib, _ = _time(library, (theta, factor, features, targets, deleted), config.repeats)
    b = len(state["deleted"])
    return {
        "library_s_per_deletion": t_lib / b,
        "prototype_s_per_deletion": t_fast / b,
        "speed_up": t_lib / t_fast,
        "max_grad_norm": float(jnp.max(norm)),
        "max_rel_diff_vs_library": bench._rel(new, lib.params),
        "deletions": b,
    }


def proto_glm(kind, config, data, cache) -> dict[str, Any]:
    """`glm_unlearn_chord` vs `unlearn_retrain` on run.py's chunk for `kind`."""
    state = bench._glm_state(kind, config, data, cache)
    model, theta, factor = state["model"], state["theta"], state["factor"]
    features, labels = state["features"], state["labels"]
    tol = bench.EXACT_TOL[config.dtype]
    chunk = config.logistic_chunk if kind == "logistic" else config.softmax_chunk
    rng = np.random.default_rng(config.seed + (20 if kind == "logistic" else 30))
    deleted = jnp.asarray(np.sort(rng.choice(config.n_train, chunk, replace=False)))
    ones = jnp.ones(features.shape[0], features.dtype)
    t0 = time.perf_counter()
    hinv = bench._block(jax.jit(inverse_from_cholesky)(factor))
    inverse_s = time.perf_counter() - t0
    shared = {
        "z": features @ theta,
        "grad": _models.gradient(model, theta, features, labels, l2=config.l2, weights=ones),
        "grad0": _models.gradient(
            model, jnp.zeros_like(theta), features, labels, l2=config.l2, weights=ones
        ),
    }

    def chord(theta, hinv, shared, features, labels, deleted):
        return jax.vmap(
            lambda d: glm_unlearn_chord(
                model, theta, hinv, shared, features, labels, d, l2=config.l2, tol=tol, steps=20
            )
        )(deleted)

    (new, norm, steps), t_fast, _ = _time(
        chord, (theta, hinv, shared, features, labels, deleted), config.repeats
    )
    check = deleted[: min(10, chunk)]

    def library(theta, factor, features, labels, deleted):
        masks = bench._unlearning.deletion_masks(deleted, features.shape[0], features.dtype)
        return jax.vmap(
            lambda w: bench._unlearning.unlearn_retrain(
                model, theta, features, labels, w, l2=config.l2, precond_factor=factor, tol=tol
            )
        )(masks)

    lib = bench._block(jax.jit(library)(theta, factor, features, labels, check))
    return {
        "prototype_s_per_deletion": t_fast / chunk,
        "max_grad_norm": float(jnp.max(norm)),
        "chord_steps_mean": float(jnp.mean(steps)),
        "chord_steps_max": int(jnp.max(steps)),
        "explicit_inverse_s": inverse_s,
        "max_rel_diff_vs_library": max(
            bench._rel(new[i], lib.params[i]) for i in range(len(check))
        ),
        "deletions": chunk,
    }


def main(argv: list[str] | None = None) -> int:
    """Times the prototypes; prints one line each and optionally writes JSON."""
    parser = argparse.ArgumentParser(prog="benchmarks/prototypes.py", description=__doc__)
    parser.add_argument("--only", default="ridge,logistic,softmax")
    parser.add_argument("--json", metavar="FILE")
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    config = bench.get_config(quick=args.quick, smoke=args.smoke)
    data, cache, out = bench.make_data(config), {}, {}
    for name in (s.strip() for s in args.only.split(",") if s.strip()):
        t0 = time.perf_counter()
        out[name] = proto_ridge(config, data, cache) if name == "ridge" else None
        if name != "ridge":
            out[name] = proto_glm(name, config, data, cache)
        cells = ", ".join(f"{k}={bench._fmt(v)}" for k, v in out[name].items())
        print(f"{name} ({time.perf_counter() - t0:.0f} s): {cells}", flush=True)
    if args.json:
        pathlib.Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
