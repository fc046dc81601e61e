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
- logistic: every quantity at θ⁺ is shared (z⁺ = Pθ⁺, ∇L(θ⁺), ∇L(0)), so ∇L₋(θ⁺) and ∇L₋(0) cost
  O(D); the first Newton step uses H₋(θ⁺) = H⁺ − ℓ''_j p_j p_jᵀ exactly by Sherman–Morrison on the
  shared factor (no CG, no line search); later steps reuse it (chord iterations), each costing one
  gradient on the retained data (4nD). The library spends ~40nD per deletion (gradients,
  line-search objectives, CG Hessian-vector products).
- softmax: the same bookkeeping; chord iterations with the shared factor of H⁺ (a rank-K
  Woodbury correction would cost K solves with the [DK, DK] factor per deletion).
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


def glm_unlearn_chord(model, theta, factor, shared, features, labels, deleted, *, l2, tol, steps):
    """Exact GLM unlearning of one position by chord (fixed-Hessian Newton) iterations.

    Starts from ∇L₋(θ⁺) = ∇L(θ⁺) − ∇ℓ(θ⁺; z_j) (O(D·K)); logistic steps solve with
    H₋(θ⁺) = H⁺ − ℓ''_j p_j p_jᵀ (Sherman–Morrison, one extra pair of triangular solves),
    softmax steps with H⁺. Each step after the first evaluates the retained gradient (4nDK).
    """
    p, y = features[deleted], labels[deleted]
    z_j = shared["z"][deleted]
    scalar = model.num_outputs is None

    def outer(dz):
        return p * dz if scalar else jnp.outer(p, dz)

    grad0_norm = jnp.linalg.norm(shared["grad0"] - outer(model.dloss_z(jnp.zeros_like(z_j), y)))
    grad = shared["grad"] - outer(model.dloss_z(z_j, y))
    if scalar:
        curv = model.curvature(z_j, jnp.ones_like(z_j))
        u = jax.scipy.linalg.cho_solve((factor, True), p)
        denom = 1 - curv * (p @ u)

        def solve(v):
            x = jax.scipy.linalg.cho_solve((factor, True), v)
            return x + u * (curv * (p @ x) / denom)

    else:

        def solve(v):
            return jax.scipy.linalg.cho_solve((factor, True), v.reshape(-1)).reshape(v.shape)

    weights = jnp.ones(features.shape[0], features.dtype).at[deleted].set(0)

    def cond(state):
        _, g, k = state
        return (jnp.linalg.norm(g) / grad0_norm > tol) & (k < steps)

    def body(state):
        th, g, k = state
        th = th - solve(g)
        g = _models.gradient(model, th, features, labels, l2=l2, weights=weights)
        return th, g, k + 1

    th, g, k = jax.lax.while_loop(cond, body, (theta, grad, jnp.zeros((), jnp.int32)))
    return th, jnp.linalg.norm(g) / grad0_norm, k


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
    shared = {
        "z": features @ theta,
        "grad": _models.gradient(model, theta, features, labels, l2=config.l2, weights=ones),
        "grad0": _models.gradient(
            model, jnp.zeros_like(theta), features, labels, l2=config.l2, weights=ones
        ),
    }

    def chord(theta, factor, shared, features, labels, deleted):
        return jax.vmap(
            lambda d: glm_unlearn_chord(
                model, theta, factor, shared, features, labels, d, l2=config.l2, tol=tol, steps=20
            )
        )(deleted)

    (new, norm, steps), t_fast, _ = _time(
        chord, (theta, factor, shared, features, labels, deleted), config.repeats
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
