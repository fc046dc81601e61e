"""Benchmark: batched inversion of random Fourier features vs a SciPy L-BFGS-B loop (issue 15).

Run through benchmarks/run.py (`--only rff_inversion`), which calls `bench_rff_inversion`.

What is inverted: B = `config.deletions` training inputs x_j of the synthetic MNIST-shaped data
(784 pixels in [0, 1], 81% zeros), the deletions of the "rff_softmax" HRec benchmark, through
the map of `run._rff_inputs` (F = `config.rff_dim` features, σ the median distance of 200
training inputs, key seed + 40). The targets are p̂_j = φ(x_j) + e_j with e_j Gaussian of
relative size `NOISE` (‖e_j‖ ≈ 0.1·‖φ(x_j)‖, bias coordinate exact): an HRec reconstruction is
never exact (Ĥ is estimated), and an exact target would let any method reach cosine 1. The
attacker's public set is the m public rows and their features; the box is [min, max] of the
public pixels.

Timed (ours): `jax.jit` of the `attacks.feature_inverter(fmap.apply, ...)` that
`reconstruction.Attack` uses, applied to the [B, D] batch: starts (public mean and 2 nearest
public samples in feature space), (WᵀW)⁻¹, then `attacks.invert_rff` (best start by loss,
5 arccos phase steps, 5 projected Gauss–Newton steps of 12 CG iterations), all B at once.
Reference: a Python loop over `max(2, ref_loops // 4)` targets, each minimising ‖φ(x) − p̂‖²
(analytic gradient 2Jᵀr in NumPy) with `scipy.optimize.minimize(method="L-BFGS-B", jac=True,
bounds=box)` (SciPy's default tolerances) from the same 3 starts, the lowest loss kept, timed
per target (the starts are given to it for free). Checks: median cosine(x̂, x) of both on the
reference's targets (ours must be >= the reference's − 1e-3) and ours over all B.
"""

from __future__ import annotations

import math
import pathlib
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.optimize

from jaxrecon import attacks as _attacks
from jaxrecon import features as _features

# Relative size of the error added to φ(x_j) (see the module docstring).
NOISE = 0.1
# NumPy seed offset of the noise draw.
NOISE_SEED = 60
# Starts per target: the public mean and this many nearest public samples.
NUM_NEAREST = 2
# Acceptable shortfall of our median cosine below the reference's.
COSINE_SLACK = 1e-3


def _run_module():
    """benchmarks/run.py's helpers (`_result`, timing); imported lazily, since run.py imports
    this file and may itself be running as __main__."""
    here = str(pathlib.Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    import run

    return run


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.sum(a * b, axis=-1) / np.maximum(norms, np.finfo(np.float64).tiny)


def _invert(params, public_x, public_p, targets, lower, upper):
    invert = _attacks.feature_inverter(
        _features.feature_map(params).apply,
        public_x,
        public_p,
        lower=lower,
        upper=upper,
        num_nearest=NUM_NEAREST,
        method="rff",  # the batched path (what "auto" picks at the benchmark's F = 4096 >= 4d)
    )
    return invert(targets)


def _scipy_inversion(weights, phases, target, starts, box) -> tuple[np.ndarray, int]:
    """The code a user would write: L-BFGS-B on ‖φ(x) − p̂‖² from each start, best loss kept.
    Returns (x̂, L-BFGS-B iterations summed over the starts)."""
    num_features = weights.shape[0]
    scale = math.sqrt(2.0 / num_features)
    p = target[:-1]

    def fun(x):
        u = weights @ x + phases
        r = scale * np.cos(u) - p
        return float(r @ r), weights.T @ (-2.0 * scale * np.sin(u) * r)

    best, best_loss, iterations = None, np.inf, 0
    for x0 in starts:
        res = scipy.optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, bounds=box)
        iterations += int(res.nit)
        if res.fun < best_loss:
            best, best_loss = res.x, res.fun
    return best, iterations


def bench_rff_inversion(config, data, matmul, cache, reference=None) -> dict[str, Any]:
    """The library's batched RFF inversion of B targets vs a SciPy L-BFGS-B loop over targets.

    Same result shape as run.py's benchmarks (`run._result`); per-deletion times are per target.
    `cache` is unused (the map is cheap to rebuild); `reference`, a previous run's entry, skips
    the SciPy loop.
    """
    run = _run_module()
    del cache
    dtype = jnp.dtype(config.dtype)
    t0 = time.perf_counter()
    pixels = np.asarray(data["x"], np.float64)
    sigma = float(_features.median_bandwidth(jnp.asarray(pixels[:200])))
    fmap = _features.rff_features(
        jax.random.key(config.seed + 40), config.input_dim, config.rff_dim, sigma
    )
    n, m, b = config.n_train, config.n_public, config.deletions
    deleted = run.deletions(config, "rff_softmax", b)
    x_true = pixels[deleted]
    public_x = pixels[n : n + m]
    clean = np.asarray(jax.jit(fmap.apply)(jnp.asarray(x_true)))
    rng = np.random.default_rng(config.seed + NOISE_SEED)
    noise = rng.normal(size=clean.shape)
    noise[:, -1] = 0.0
    noise *= (
        NOISE
        * np.linalg.norm(clean[:, :-1], axis=-1, keepdims=True)
        / np.linalg.norm(noise, axis=-1, keepdims=True)
    )
    targets_np = clean + noise
    lower, upper = float(public_x.min()), float(public_x.max())
    params = _features.RFFParams(
        fmap.params.weights.astype(dtype), fmap.params.phases.astype(dtype)
    )
    public_x_j = jnp.asarray(public_x, dtype)
    public_p = jax.block_until_ready(jax.jit(fmap.apply)(public_x_j))
    targets = jnp.asarray(targets_np, dtype)
    setup_s = time.perf_counter() - t0

    args = (params, public_x_j, public_p, targets, lower, upper)
    compiled, compile_s = run._compile(_invert, *args)
    out, timing = run._time_calls(compiled, args, config.repeats)
    ours = timing / b
    x_hat = np.asarray(out, np.float64)
    cos_ours = _cosines(x_hat, x_true)

    # FLOPs per target (dominant products, F·d each unless noted): nearest public samples
    # 2·m·D; start losses 2·S; phase steps 5 x 4; Gauss–Newton 5 x (6 + 12 CG x 4); the final
    # loss 2; (WᵀW)⁻¹ (2Fd² + d³) amortised over B.
    f_dim, d = config.rff_dim, config.input_dim
    starts_count = 1 + NUM_NEAREST
    fd = f_dim * d
    flops = 2.0 * m * (f_dim + 1) + fd * (2 * starts_count + 5 * 4 + 5 * (6 + 12 * 4) + 2)
    flops += (2.0 * f_dim * d * d + d**3) / b

    picks = list(range(min(b, max(2, config.ref_loops // 4))))
    checks: dict[str, Any] = {"cosine_median": float(np.median(cos_ours)), "noise": NOISE}
    if reference is None:
        starts_fn = jax.jit(
            jax.vmap(
                lambda t, px, pp: _attacks.inversion_starts(t, px, pp, num_nearest=NUM_NEAREST),
                in_axes=(0, None, None),
            )
        )
        starts = np.asarray(
            starts_fn(jnp.asarray(targets_np[picks]), jnp.asarray(public_x), public_p),
            np.float64,
        )
        weights = np.asarray(fmap.params.weights, np.float64)
        phases = np.asarray(fmap.params.phases, np.float64)
        box = [(lower, upper)] * d
        iterations = []

        def one(i):
            x, nit = _scipy_inversion(weights, phases, targets_np[i], starts[i], box)
            iterations.append(nit)
            return x

        # warmup=0: SciPy has no compilation; every target is timed.
        outs, ref = run._time_each(one, picks, warmup=0)
        cos_ref = _cosines(np.asarray(outs), x_true[picks])
        ref_name = (
            "SciPy L-BFGS-B (jac=True, bounds=box, default tolerances) per target from the same "
            f"{starts_count} starts, best loss kept"
        )
        checks["reference_targets"] = len(picks)
        checks["reference_iterations_mean"] = float(np.mean(iterations))
        checks["cosine_median_reference"] = float(np.median(cos_ref))
        checks["cosine_median_ours_same_targets"] = float(np.median(cos_ours[picks]))
        checks["cosine_at_least_reference"] = bool(
            checks["cosine_median_ours_same_targets"]
            >= checks["cosine_median_reference"] - COSINE_SLACK
        )
    else:
        ref, ref_name = run._loaded_reference(reference), reference["reference"]
    return run._result(
        ours,
        ref,
        flops,
        matmul,
        reference=ref_name,
        kernel="invert_rff",
        deletions_timed=b,
        compile_s=compile_s,
        setup_s=setup_s,
        checks=checks,
        notes={
            "rff_features": f"jaxrecon.features.rff_features (sigma={sigma:.3g}, F={f_dim})",
            "targets": f"φ(x_j) + Gaussian error of relative norm {NOISE} (x_j the rff_softmax "
            "deletions)",
            "box": [lower, upper],
        },
    )
