"""Benchmarks: each jaxrecon kernel against the code a user would otherwise write (issue 5).

Commands (from the repository root; times on the 2-core CPU):

    python benchmarks/run.py --quick --json /tmp/bench_quick.json   # about 6 minutes
    python benchmarks/run.py --json bench.json                        # about 12 minutes
    python benchmarks/run.py --only hrec_ridge,ridge_exact_unlearning # a subset
    python benchmarks/run.py --e2e-only                               # MNIST `jaxrecon run`
    python benchmarks/run.py --dtype float32 ...                      # float32 kernels

Everything is measured in one process and one run, so the ratios share the machine's state. For
each kernel: jit the composed, vmapped function once, time the compile (`lower().compile()`)
separately, make one warm-up call, then report the median of `repeats` calls
(`block_until_ready`). References are timed per deletion on a few deletions and scaled; their
one-off setup (a Hessian built once, softmax probabilities) is amortised over the B deletions.

Benchmarks (key: jaxrecon kernel vs reference):

- ridge_exact_unlearning: `unlearn_ridge` vmapped over B = 1,000 [B, 1] positions vs sklearn
  `Ridge` refit per deletion.
- ridge: the shared system is `ridge_system` (H⁻¹, H, Pᵀy), so each deletion costs two
  D x D products (u = H⁻¹p and the exactness check H θ⁻), batched into matrix products.
- logistic_exact_unlearning / softmax_exact_unlearning (D = 785, K = 10): `unlearn_glm` (exact
  Newton step from θ⁺ by Woodbury on one shared H⁺⁻¹, then chord iterations on compacted blocks
  of unconverged deletions; B = 1,000 in one call) vs sklearn `LogisticRegression` refit per
  deletion. The shared
  `glm_system` (dense Hessian, its inverse, in float32 by default) is setup, reported apart.
- hrec_ridge / hrec_softmax / hrec_rff_softmax (4,096 random Fourier features): `hrec` with
  `public_hessian_matvec`, B = 1,000, vs a NumPy loop over the deletions.

Data: synthetic MNIST-shaped inputs (784 pixels in [0, 1], 81% zeros) plus the bias column, n =
10,000 training and m = 10,000 public samples, labels from a random linear teacher; l2 = 1
(scikit-learn: `alpha = l2`, `C = 1 / l2`, `fit_intercept=False`, the bias is a feature).

Exact unlearning for logistic / softmax means a relative gradient norm <= 1e-8 (float64; 1e-5 in
float32) for both sides. scikit-learn's reference solver is `newton-cg`, warm-started at θ⁺, its
`tol` lowered (1e-8, 1e-9, ...) until its solution also reaches <= 1e-8 in our norm: during
development the default `lbfgs` stalled near 3e-7 and `newton-cholesky` was 4-10x slower.

The machine's ceiling is a matmul of the kernels' size, [n, D] x [D, B], in the same dtype and
run: three layouts (P V, Pᵀ R, contiguous Pᵀ times R), measured at the start and at the end of the
run, the fastest taken, so fractions are conservative. Every kernel's achieved FLOP/s (dominant
operations, counted in the comments) is reported as a fraction of it. The load average at start
and end is recorded: other processes on the machine skew every number.
For the GLM kernels the FLOPs follow the passes over the data each deletion actually made
(`UnlearnResult.steps`; compacted lanes: a batch pays the mean, not the slowest lane).

`--e2e` runs `jaxrecon run --dataset mnist --model softmax` (n-train 10,000, n-public 10,000,
1,000 deletions, data from ../shared/data) as a subprocess: wall time by stage (summary.json
`timing_s`) and peak RSS. It is skipped with a message when the CLI does not know `mnist`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
# `python benchmarks/run.py` puts benchmarks/ first on sys.path: measure this checkout's jaxrecon
# (not an installed copy).
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)

from jaxrecon import attacks as _attacks  # noqa: E402
from jaxrecon import features as _features  # noqa: E402
from jaxrecon import models as _models  # noqa: E402
from jaxrecon import pipeline as _pipeline  # noqa: E402
from jaxrecon import solvers as _solvers  # noqa: E402
from jaxrecon import unlearning as _unlearning  # noqa: E402

BENCHMARKS = (
    "ridge_exact_unlearning",
    "logistic_exact_unlearning",
    "softmax_exact_unlearning",
    "hrec_ridge",
    "hrec_softmax",
    "hrec_rff_softmax",
)
# Acceptance targets of issue 5 (ratios measured in one run on the 2-core CPU).
TARGETS = {
    "ridge_exact_unlearning": {"ratio": 3000.0, "flops_fraction": 0.4},
    "logistic_exact_unlearning": {"ratio": 300.0},
    "softmax_exact_unlearning": {"ratio": 100.0},
    "hrec_ridge": {"flops_fraction": 0.4},
    "hrec_softmax": {"flops_fraction": 0.4},
    "hrec_rff_softmax": {"flops_fraction": 0.4},
}
EXACT_TOL = {"float64": 1e-8, "float32": 1e-5}
# Agreement with the float64 references that counts as "the same solution".
PARAM_TOL = {"float64": 1e-6, "float32": 1e-2}


@dataclasses.dataclass(frozen=True)
class Config:
    """Sizes and repeats of one benchmark run.

    Attributes:
      n_train: training samples n.
      n_public: the attacker's public samples m.
      input_dim: pixels d (features D = d + 1 with the bias).
      num_classes: K for softmax.
      deletions: B, deletions per batch for ridge unlearning and every HRec benchmark.
      logistic_chunk: deletions in the timed logistic retraining batch.
      softmax_chunk: deletions in the timed softmax retraining batch.
      block: deletions per pass of `unlearn_glm` (its lane-compaction block).
      inverse_dtype: dtype of the shared H⁺⁻¹ of `unlearn_glm` (a preconditioner only).
      rff_dim: random Fourier features (plus the bias).
      hrec_batch: `lax.map` batch size of the HRec kernels (bounds memory; >= B is one vmap).
      l2: the regulariser.
      dtype: "float64" or "float32" for the jaxrecon kernels (references stay float64).
      repeats: timed calls of each jaxrecon kernel, after one warm-up call.
      ref_refits: timed scikit-learn refits per unlearning benchmark.
      ref_loops: timed NumPy HRec deletions (ridge; a quarter of it for RFF).
      seed: NumPy seed of the synthetic data and the deleted positions.
      sparsity: fraction of nonzero pixels.
    """

    n_train: int = 10_000
    n_public: int = 10_000
    input_dim: int = 784
    num_classes: int = 10
    deletions: int = 1_000
    logistic_chunk: int = 1_000
    softmax_chunk: int = 1_000
    block: int = 32
    inverse_dtype: str = "float32"
    rff_dim: int = 4096
    hrec_batch: int = 500
    l2: float = 1.0
    dtype: str = "float64"
    repeats: int = 5
    ref_refits: int = 3
    ref_loops: int = 20
    seed: int = 0
    sparsity: float = 0.19

    def validate(self) -> Config:
        """Raises ValueError naming the first bad field."""
        if self.dtype not in EXACT_TOL:
            raise ValueError(f"dtype must be one of {sorted(EXACT_TOL)}, got {self.dtype!r}")
        for name in ("n_train", "n_public", "input_dim", "deletions", "repeats", "ref_refits"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes!r}")
        if max(self.logistic_chunk, self.softmax_chunk, self.deletions) > self.n_train:
            raise ValueError("deletions and chunks must not exceed n_train")
        if self.ref_refits + 1 > min(self.logistic_chunk, self.softmax_chunk, self.deletions):
            raise ValueError("ref_refits + 1 must not exceed the smallest chunk")
        if self.ref_loops < 1 or self.ref_loops > self.deletions:
            raise ValueError(f"ref_loops must be in [1, deletions], got {self.ref_loops!r}")
        return self


def get_config(*, quick: bool = False, smoke: bool = False, dtype: str = "float64") -> Config:
    """The full configuration; `quick` shrinks repeats (not sizes); `smoke` is tiny (tests)."""
    config = Config(dtype=dtype)
    if quick:
        config = dataclasses.replace(config, repeats=2, ref_refits=2, ref_loops=8)
    if smoke:
        config = dataclasses.replace(
            config,
            n_train=200,
            n_public=200,
            input_dim=12,
            num_classes=3,
            deletions=16,
            logistic_chunk=8,
            softmax_chunk=8,
            rff_dim=32,
            hrec_batch=8,
            repeats=1,
            ref_refits=1,
            ref_loops=4,
        )
    return config.validate()


# --------------------------------------------------------------------------------------------
# Data and timing helpers


def make_data(config: Config) -> dict[str, np.ndarray]:
    """Synthetic MNIST-shaped data, float64 NumPy (fixed seed).

    Pixels are U[0, 1] with probability `sparsity`, else 0; features p = [x, 1]. Targets: ridge
    y = pᵀw + 0.1·noise; logistic y ~ Bernoulli(σ(z)); softmax y ~ Categorical(softmax(z)) with
    z from a random linear teacher on the centred pixels.
    """
    rng = np.random.default_rng(config.seed)
    n, m, d, k = config.n_train, config.n_public, config.input_dim, config.num_classes
    x = np.where(rng.random((n + m, d)) < config.sparsity, rng.random((n + m, d)), 0.0)
    p = np.concatenate([x, np.ones((n + m, 1))], axis=1)
    centred = x - config.sparsity / 2
    teacher = rng.normal(size=(d, k)) * 4.0 / math.sqrt(d * config.sparsity)
    z = centred @ teacher
    y_ridge = p @ rng.normal(size=d + 1) / math.sqrt(d * config.sparsity) + 0.1 * rng.normal(
        size=n + m
    )
    y_logistic = (rng.random(n + m) < 1 / (1 + np.exp(-z[:, 0]))).astype(np.int64)
    y_softmax = np.argmax(z + rng.gumbel(size=(n + m, k)), axis=1).astype(np.int64)
    return {
        "x_train": x[:n],
        "p_train": p[:n],
        "p_public": p[n:],
        "x_public": x[n:],
        "y_ridge": y_ridge[:n],
        "y_logistic": y_logistic[:n],
        "y_softmax": y_softmax[:n],
    }


def _block(tree):
    return jax.block_until_ready(tree)


def _compile(fn: Callable, *args) -> tuple[Callable, float]:
    """jit(fn) compiled for `args`, and the compile time in seconds."""
    t0 = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    return compiled, time.perf_counter() - t0


class Timing(NamedTuple):
    """Median seconds of repeated calls: wall clock, and this process's CPU time (all threads).

    CPU time is a cross-check that other processes on the machine inflate less than wall time.
    """

    wall: float
    cpu: float

    def __truediv__(self, count: float) -> Timing:
        return Timing(self.wall / count, self.cpu / count)

    def __add__(self, other: Timing) -> Timing:
        return Timing(self.wall + other.wall, self.cpu + other.cpu)


def _clock() -> Timing:
    return Timing(time.perf_counter(), time.process_time())


def _since(start: Timing) -> Timing:
    now = _clock()
    return Timing(now.wall - start.wall, now.cpu - start.cpu)


def _median(timings: list[Timing]) -> Timing:
    return Timing(
        float(np.median([t.wall for t in timings])), float(np.median([t.cpu for t in timings]))
    )


def _time_calls(compiled: Callable, args: tuple, repeats: int) -> tuple[Any, Timing]:
    """One warm-up call, then the median times of `repeats` calls."""
    out = _block(compiled(*args))
    times = []
    for _ in range(repeats):
        start = _clock()
        out = _block(compiled(*args))
        times.append(_since(start))
    return out, _median(times)


def _time_each(fn: Callable, items, *, warmup: int = 1) -> tuple[list[Any], Timing]:
    """Calls fn(item) for each item; the first `warmup` calls are not timed. Median times."""
    outs, times = [], []
    for i, item in enumerate(items):
        start = _clock()
        outs.append(fn(item))
        if i >= warmup:
            times.append(_since(start))
    return outs, _median(times)


def measure_matmul(config: Config) -> dict[str, Any]:
    """The machine's ceiling in this run: float matmuls of the kernels' size, in their dtype.

    The kernels' dominant products are P V ([n, D] x [D, B]) and Pᵀ R ([n, D]ᵀ x [n, B]); the
    same FLOPs in the three layouts below run at different speeds, so the ceiling is the fastest
    (median of repeats each), which makes every FLOP/s fraction conservative.
    """
    dtype = jnp.dtype(config.dtype)
    rng = np.random.default_rng(config.seed + 1)
    n, dim, b = config.n_train, config.input_dim + 1, config.deletions
    p = jnp.asarray(rng.random((n, dim)), dtype)
    p_t = jnp.asarray(np.ascontiguousarray(np.asarray(p).T))
    v = jnp.asarray(rng.random((dim, b)), dtype)
    r = jnp.asarray(rng.random((n, b)), dtype)
    flops = 2.0 * n * dim * b
    layouts = {
        "P @ V": (lambda u, w: u @ w, p, v),
        "P.T @ R": (lambda u, w: u.T @ w, p, r),
        "(P.T contiguous) @ R": (lambda u, w: u @ w, p_t, r),
    }
    rates = {}
    for name, (fn, lhs, rhs) in layouts.items():
        compiled, _ = _compile(fn, lhs, rhs)
        _, timing = _time_calls(compiled, (lhs, rhs), max(3, config.repeats))
        rates[name] = flops / timing.wall
    return {"flops": flops, "flops_per_s": max(rates.values()), "layouts": rates}


def _rel(a, b) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), np.finfo(np.float64).tiny))


def _cosine_rows(a, b) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    den = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-300)
    return np.sum(a * b, axis=1) / den


def _softmax_np(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def _np_rel_grad_norm(kind: str, theta, p, y, l2) -> float:
    """Our relative gradient norm ‖∇L(θ)‖ / ‖∇L(0)‖ in float64 NumPy (for sklearn's solution)."""
    theta = np.asarray(theta, np.float64)
    if kind == "logistic":
        grad = p.T @ (1 / (1 + np.exp(-(p @ theta))) - y) + l2 * theta
        grad0 = p.T @ (0.5 - y)
    else:
        onehot = np.eye(theta.shape[1])[y]
        grad = p.T @ (_softmax_np(p @ theta) - onehot) + l2 * theta
        grad0 = p.T @ (1.0 / theta.shape[1] - onehot)
    return float(np.linalg.norm(grad) / np.linalg.norm(grad0))


def _result(
    ours: Timing,
    ref: Timing | None,
    flops: float,
    matmul: dict[str, float],
    **extra,
) -> dict[str, Any]:
    """One benchmark's JSON entry; `ours` and `ref` are per deletion."""
    achieved = flops / ours.wall
    return {
        "jaxrecon_s_per_deletion": ours.wall,
        "reference_s_per_deletion": None if ref is None else ref.wall,
        "ratio": None if ref is None else ref.wall / ours.wall,
        "flops_fraction": achieved / matmul["flops_per_s"],
        "flops_per_deletion": flops,
        "achieved_flops_per_s": achieved,
        "matmul_flops_per_s": matmul["flops_per_s"],
        "jaxrecon_cpu_s_per_deletion": ours.cpu,
        "reference_cpu_s_per_deletion": None if ref is None else ref.cpu,
        "ratio_cpu_time": None if ref is None or not ours.cpu else ref.cpu / ours.cpu,
    } | extra


def _loaded_reference(reference: dict[str, Any]) -> Timing:
    wall = reference["reference_s_per_deletion"]
    return Timing(wall, reference.get("reference_cpu_s_per_deletion") or wall)


# --------------------------------------------------------------------------------------------
# Exact unlearning


def _ridge_kernel(l2):
    def kernel(theta, factor, features, targets, deleted):
        return jax.vmap(
            lambda d: _unlearning.unlearn_ridge(theta, factor, features, targets, d, l2=l2)
        )(deleted)

    return kernel


def _ridge_state(config, data, cache):
    """θ⁺, the shared ridge system (H⁻¹, H, Pᵀy), B deleted positions and later their θ⁻."""
    if "ridge" in cache:
        return cache["ridge"]
    dtype = jnp.dtype(config.dtype)
    n = config.n_train
    features = jnp.asarray(data["p_train"], dtype)
    targets = jnp.asarray(data["y_ridge"], dtype)
    t0 = time.perf_counter()
    weights = jnp.ones(n, dtype)
    fit = jax.jit(_solvers.fit_ridge)(features, targets, l2=config.l2, weights=weights)
    theta = _block(fit.params)
    # The pipeline's shared system: H⁻¹ (one Cholesky factor), H and Pᵀy.
    factor = _block(jax.jit(_unlearning.ridge_system)(features, targets, l2=config.l2))
    setup_s = time.perf_counter() - t0
    rng = np.random.default_rng(config.seed + 10)
    deleted = np.sort(rng.choice(n, config.deletions, replace=False))
    state = {
        "theta": theta,
        "factor": factor,
        "features": features,
        "targets": targets,
        "deleted": deleted,
        "setup_s": setup_s,
    }
    cache["ridge"] = state
    return state


def bench_ridge_unlearning(config, data, matmul, cache, reference=None) -> dict[str, Any]:
    """Sherman–Morrison batch (`unlearn_ridge` vmapped over [B, 1]) vs sklearn `Ridge` refits."""
    n, dim, l2, b = config.n_train, config.input_dim + 1, config.l2, config.deletions
    p_np, y_np = data["p_train"], data["y_ridge"]
    state = _ridge_state(config, data, cache)
    deleted = state["deleted"]
    args = (
        state["theta"],
        state["factor"],
        state["features"],
        state["targets"],
        jnp.asarray(deleted[:, None]),
    )
    compiled, compile_s = _compile(_ridge_kernel(l2), *args)
    out, timing = _time_calls(compiled, args, config.repeats)
    ours = timing / b
    # FLOPs per deletion: u = H⁻¹p (2·D², one matrix product over the batch) and the
    # gradient-norm check H θ⁻ (2·D²; vmapped, also one matrix product). The 1×1 capacitance,
    # the residual and the rank-one terms of the check are O(D).
    flops = 4.0 * dim * dim
    state["thetas_after"] = out.params
    setup_s = state["setup_s"]

    grad_max = float(jnp.max(out.grad_norm))
    checks = {"max_grad_norm": grad_max, "grad_norm_ok": grad_max <= EXACT_TOL[config.dtype]}
    if reference is None:
        from sklearn.linear_model import Ridge

        picks = list(range(config.ref_refits + 1))

        def refit(i):
            keep = np.ones(n, bool)
            keep[deleted[i]] = False
            return Ridge(alpha=l2, fit_intercept=False).fit(p_np[keep], y_np[keep]).coef_

        coefs, ref = _time_each(refit, picks)
        diff = max(_rel(out.params[i], c) for i, c in zip(picks, coefs, strict=True))
        checks |= {
            "param_rel_diff_vs_sklearn": diff,
            "matches_sklearn": diff <= PARAM_TOL[config.dtype],
        }
        ref_name = "sklearn Ridge(alpha=l2, fit_intercept=False) refit on the retained rows"
    else:
        ref, ref_name = _loaded_reference(reference), reference["reference"]
    return _result(
        ours,
        ref,
        flops,
        matmul,
        reference=ref_name,
        deletions_timed=b,
        compile_s=compile_s,
        setup_s=setup_s,
        checks=checks,
    )


def _train_glm(kind, config, features, labels):
    """θ⁺ on the full training set to round-off (Newton; CG Newton systems for softmax)."""
    dtype = features.dtype
    if kind == "logistic":
        model = _models.logistic_model()
        solver = {"linear_solver": "dense"}
    else:
        model = _models.softmax_model(config.num_classes)
        solver = {"linear_solver": "cg", "cg_max_steps": 500}
    weights = jnp.ones(features.shape[0], dtype)

    def train(features, labels):
        return _solvers.fit_newton(model, features, labels, l2=config.l2, weights=weights, **solver)

    fit = _block(jax.jit(train)(features, labels))
    return model, fit


def _glm_state(kind, config, data, cache):
    """θ⁺ and the shared `glm_system` at θ⁺ for `kind`, computed once per run."""
    if kind in cache:
        return cache[kind]
    dtype = jnp.dtype(config.dtype)
    features = jnp.asarray(data["p_train"], dtype)
    labels = jnp.asarray(data[f"y_{kind}"], jnp.int32)
    t0 = time.perf_counter()
    model, fit = _train_glm(kind, config, features, labels)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    # The pipeline's shared system (explicit H⁺⁻¹, z⁺, full gradients, Pᵀ); H⁺⁻¹ in
    # `config.inverse_dtype` (float32 by default: it only preconditions the chord iterations).
    factor = _block(
        jax.jit(
            lambda t, f, y: _unlearning.glm_system(
                model, t, f, y, l2=config.l2, inverse_dtype=jnp.dtype(config.inverse_dtype)
            )
        )(fit.params, features, labels)
    )
    factor_s = time.perf_counter() - t0
    cache[kind] = {
        "model": model,
        "theta": fit.params,
        "train_grad_norm": float(fit.grad_norm),
        "factor": factor,
        "features": features,
        "labels": labels,
        "train_s": train_s,
        "factor_s": factor_s,
    }
    return cache[kind]


def bench_retrain_unlearning(kind, config, data, matmul, cache, reference=None) -> dict[str, Any]:
    """Exact GLM unlearning (`unlearn_glm`, chord iterations) vs warm-started sklearn refits."""
    state = _glm_state(kind, config, data, cache)
    model, theta, factor = state["model"], state["theta"], state["factor"]
    features, labels = state["features"], state["labels"]
    n, dim, l2 = config.n_train, config.input_dim + 1, config.l2
    k = 1 if kind == "logistic" else config.num_classes
    size = dim * k
    chunk = config.logistic_chunk if kind == "logistic" else config.softmax_chunk
    tol = EXACT_TOL[config.dtype]

    rng = np.random.default_rng(config.seed + (20 if kind == "logistic" else 30))
    deleted = np.sort(rng.choice(n, chunk, replace=False))

    def kernel(theta, factor, features, labels, deleted):
        return _unlearning.unlearn_glm(
            model, factor, theta, features, labels, deleted, l2=l2, tol=tol, block=config.block
        )

    args = (theta, factor, features, labels, jnp.asarray(deleted))
    compiled, compile_s = _compile(kernel, *args)
    out, timing = _time_calls(compiled, args, config.repeats)
    ours = timing / chunk

    # FLOPs per deletion (the dominant products): setting up U = H⁺⁻¹(p_j ⊗ I_K) costs 2P²
    # (in the inverse's dtype); each pass over the retained data costs the logits P Θ and the
    # gradient Pᵀ R (2 × 2nDK) and one chord solve with H⁺⁻¹ (2P²). Counted in float64 FLOPs,
    # so a float32 inverse makes the fraction conservative.
    passes = np.asarray(out.steps)
    flops = 2.0 * size * size + float(passes.mean()) * (4.0 * n * dim * k + 2.0 * size * size)
    if kind == "softmax":
        # Exact θ⁻ for hrec_softmax's reconstruction-quality check.
        cache["softmax_exact"] = {"deleted": deleted, "thetas_after": out.params}
    grad_max = float(jnp.max(out.grad_norm))
    checks = {
        "max_grad_norm": grad_max,
        "grad_norm_ok": grad_max <= tol,
        "passes_mean": float(passes.mean()),
        "passes_max": int(passes.max()),
        "train_grad_norm": state["train_grad_norm"],
    }
    if reference is None:
        ref, ref_checks, ref_name = _sklearn_retrain(kind, config, data, theta, deleted, out, tol)
        checks |= ref_checks
    else:
        ref, ref_name = _loaded_reference(reference), reference["reference"]
    return _result(
        ours,
        ref,
        flops,
        matmul,
        reference=ref_name,
        deletions_timed=chunk,
        compile_s=compile_s,
        setup_s=state["train_s"] + state["factor_s"],
        setup_detail_s={"train": state["train_s"], "glm_system": state["factor_s"]},
        checks=checks,
    )


def _sklearn_retrain(kind, config, data, theta, deleted, out, tol):
    """Times sklearn LogisticRegression(newton-cg, warm start at θ⁺) refits per deletion.

    The first refit calibrates sklearn's `tol` (tol, tol/10, ...) until its solution reaches our
    relative gradient norm `tol`; it also serves as the warm-up. Then `ref_refits` timed refits.
    """
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    p_np, y_np, l2 = data["p_train"], data[f"y_{kind}"], config.l2
    theta_np = np.asarray(theta, np.float64)
    coef0 = theta_np[None, :] if kind == "logistic" else theta_np.T

    def refit(j, sk_tol):
        keep = np.ones(config.n_train, bool)
        keep[j] = False
        clf = LogisticRegression(
            C=1 / l2,
            fit_intercept=False,
            solver="newton-cg",
            tol=sk_tol,
            max_iter=1000,
            warm_start=True,
        )
        clf.coef_ = coef0.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(p_np[keep], y_np[keep])
        coef = clf.coef_[0] if kind == "logistic" else clf.coef_.T
        return coef, _np_rel_grad_norm(kind, coef, p_np[keep], y_np[keep], l2)

    sk_tol = tol
    for _ in range(4):
        _, norm = refit(deleted[0], sk_tol)
        if norm <= tol:
            break
        sk_tol /= 10
    picks = list(range(1, config.ref_refits + 1))
    results, ref = _time_each(lambda i: refit(deleted[i], sk_tol), picks, warmup=0)
    diff = max(_rel(out.params[i], c) for i, (c, _) in zip(picks, results, strict=True))
    sk_norm = max(norm for _, norm in results)
    checks = {
        "sklearn_tol": sk_tol,
        "sklearn_max_grad_norm": sk_norm,
        "sklearn_converged": sk_norm <= tol,
        "param_rel_diff_vs_sklearn": diff,
        "matches_sklearn": diff <= PARAM_TOL[config.dtype],
    }
    name = (
        f"sklearn LogisticRegression(solver='newton-cg', tol={sk_tol:g}, warm_start at θ⁺) "
        "refit on the retained rows"
    )
    return ref, checks, name


# --------------------------------------------------------------------------------------------
# HRec


def _rff_features(config, data):
    """p = [√(2/F) cos(W x + b), 1] for train and public inputs (`features.rff_features`, σ the
    median pairwise distance of 200 training inputs), and how they were built."""
    dtype = jnp.dtype(config.dtype)
    sample = data["x_train"][:200]
    dist = np.sqrt(((sample[:, None, :] - sample[None, :, :]) ** 2).sum(-1))
    sigma = float(np.median(dist[np.triu_indices(len(sample), 1)]))
    fmap = _features.rff_features(
        jax.random.key(config.seed + 40), config.input_dim, config.rff_dim, sigma, dtype=dtype
    )
    apply = jax.jit(fmap.apply)
    p_train = _block(apply(jnp.asarray(data["x_train"], dtype)))
    p_public = _block(apply(jnp.asarray(data["x_public"], dtype)))
    return p_train, p_public, f"jaxrecon.features.rff_features (sigma={sigma:.3g})"


def _feature_space_map(dim: int) -> _features.FeatureMap:
    """HRec's output p̂ itself (the RFF benchmark times the attack, not embedding inversion)."""
    return _features.FeatureMap("feature-space", lambda p: p, lambda p: p, lambda d: dim)


def _hrec_kernel(model, fmap, n_train, l2, batch, dense=False):
    """The pipeline's HRec: Ĥ formed once inside the kernel when `dense` (small P, as the
    pipeline does up to its DENSE_LIMIT; its cost is timed with the deletions), else
    matrix-free."""

    def kernel(theta, thetas_after, public_features):
        if dense:
            matvec = _attacks.dense_matvec(
                _attacks.public_hessian_matrix(
                    model, theta, public_features, n_train=n_train, l2=l2
                )
            )
        else:
            matvec = _attacks.public_hessian_matvec(
                model, theta, public_features, n_train=n_train, l2=l2
            )
        return jax.lax.map(
            lambda t: _attacks.hrec(model, fmap, theta, t, matvec), thetas_after, batch_size=batch
        )

    return kernel


def _np_hrec_loop(kind, theta, thetas_after, p_pub, n_train, l2, picks):
    """The straightforward NumPy HRec: per deletion g = Ĥ(θ⁻ − θ⁺) matrix-free, then normalise.

    Returns (setup Timing, per-deletion Timing, [p̂ per pick]). Ridge: p̂ = g / g[-1].
    Softmax: top right singular vector v of G (eigh of GᵀG), a = G v, p̂ = a / a[-1].
    """
    scale = (n_train - 1) / p_pub.shape[0]
    start = _clock()
    probs = None if kind == "ridge" else _softmax_np(p_pub @ theta)
    setup = _since(start)

    def one(i):
        delta = thetas_after[i] - theta
        dz = p_pub @ delta
        if probs is not None:
            dz = probs * dz - probs * np.sum(probs * dz, axis=1, keepdims=True)
        g = scale * (p_pub.T @ dz) + l2 * delta
        if kind == "ridge":
            return g / g[-1]
        _, vecs = np.linalg.eigh(g.T @ g)
        a = g @ vecs[:, -1]
        return a / a[-1]

    outs, per = _time_each(one, picks)
    return setup, per, outs


def _np_hrec_ridge_dense(theta, thetas_after, p_pub, n_train, l2, picks):
    """NumPy HRec with Ĥ = ((n−1)/m) PᵀP + l2·I formed once (cheap for ridge, D = 785)."""
    start = _clock()
    hess = (n_train - 1) / p_pub.shape[0] * (p_pub.T @ p_pub) + l2 * np.eye(p_pub.shape[1])
    setup = _since(start)

    def one(i):
        g = hess @ (thetas_after[i] - theta)
        return g / g[-1]

    outs, per = _time_each(one, picks)
    return setup, per, outs


def bench_hrec(kind, config, data, matmul, cache, reference=None) -> dict[str, Any]:
    """HRec on B deletions (`hrec` vmapped, chunked by `lax.map`) vs a NumPy loop over deletions.

    kind: "ridge", "softmax" or "rff_softmax". θ⁻: ridge, exact (`unlearn_ridge`); softmax, exact
    retraining for the deletions of `softmax_exact_unlearning` when it ran, one Newton step with
    the training Hessian H⁺ (influence unlearning) for the rest; RFF, θ⁺ + ∇ℓ(θ⁺; z_j)/(l2 + n/4),
    a surrogate with the right shape (the kernel's cost does not depend on it; correctness is
    checked against the NumPy loop on the same θ⁻).
    """
    dtype = jnp.dtype(config.dtype)
    n, l2, b = config.n_train, config.l2, config.deletions
    t0 = time.perf_counter()
    notes: dict[str, Any] = {}
    truth = None
    if kind == "ridge":
        state = _ridge_state(config, data, cache)
        if "thetas_after" not in state:
            args = (state["theta"], state["factor"], state["features"], state["targets"])
            state["thetas_after"] = _block(
                jax.jit(_ridge_kernel(l2))(*args, jnp.asarray(state["deleted"][:, None])).params
            )
        theta, thetas_after, deleted = state["theta"], state["thetas_after"], state["deleted"]
        model, p_pub = _models.ridge_model(), jnp.asarray(data["p_public"], dtype)
        truth = data["p_train"][deleted]
    elif kind == "softmax":
        theta, thetas_after, deleted, notes = _softmax_thetas_after(config, data, cache)
        model, p_pub = cache["softmax"]["model"], jnp.asarray(data["p_public"], dtype)
        truth = data["p_train"][deleted]
    else:
        p_train, p_pub, notes["rff_features"] = _rff_features(config, data)
        model = _models.softmax_model(config.num_classes)
        labels = jnp.asarray(data["y_softmax"], jnp.int32)
        theta, notes["theta_grad_norm"] = _train_rff(model, config, p_train, labels)
        rng = np.random.default_rng(config.seed + 50)
        deleted = np.sort(rng.choice(n, b, replace=False))
        grads = jax.vmap(lambda p, y: _models.per_example_grad(model, theta, p, y))(
            p_train[deleted], labels[deleted]
        )
        thetas_after = _block(theta[None] + grads / (l2 + n / 4))
        del p_train
    setup_s = time.perf_counter() - t0
    dim = p_pub.shape[1]
    k = 1 if model.num_outputs is None else model.num_outputs

    fmap = _features.identity_features() if kind != "rff_softmax" else _feature_space_map(dim)
    dense = dim * k <= _pipeline.DENSE_LIMIT  # as the pipeline decides
    kernel = _hrec_kernel(model, fmap, n, l2, config.hrec_batch, dense=dense)
    args = (theta, thetas_after, p_pub)
    compiled, compile_s = _compile(kernel, *args)
    out, timing = _time_calls(compiled, args, config.repeats)
    ours = timing / b
    # FLOPs per deletion: Ĥ-vector product = P_pub Δ and P_pubᵀ(...) (2 × 2mDK); softmax adds
    # GᵀG (2DK²) and G v (2DK); the K×K eigh and the normalisation are O(K³ + DK).
    # Dense Ĥ (small P): forming it, m·D²·K(K+1), amortised over B, plus 2P² per product.
    m = config.n_public
    flops = 2.0 * dim * k * k + 2.0 * dim * k if k > 1 else 0.0
    if dense:
        flops += m * dim * dim * k * (k + 1) / b + 2.0 * (dim * k) ** 2
    else:
        flops += 4.0 * m * dim * k

    p_hat = np.asarray(out.x_hat, np.float64)
    checks: dict[str, Any] = {}
    if truth is not None:
        pixels = truth[:, :-1]
        recon = p_hat if p_hat.shape[1] == pixels.shape[1] else p_hat[:, :-1]
        cos = _cosine_rows(recon, pixels)
        checks["cosine_median"] = float(np.median(cos))
        if kind == "softmax" and notes.get("exact_deletions"):
            checks["cosine_median_exact_retraining"] = float(
                np.median(cos[: notes["exact_deletions"]])
            )
        if kind == "softmax":
            y_true = data["y_softmax"][deleted]
            checks["label_accuracy"] = float(np.mean(np.asarray(out.y_hat) == y_true))
    if reference is None:
        theta_np = np.asarray(theta, np.float64)
        after_np = np.asarray(thetas_after, np.float64)
        pub_np = np.asarray(p_pub, np.float64)
        loops = config.ref_loops if kind != "rff_softmax" else max(2, config.ref_loops // 4)
        picks = list(range(loops + 1))
        base = "ridge" if kind == "ridge" else "softmax"
        setup, per, outs = _np_hrec_loop(base, theta_np, after_np, pub_np, n, l2, picks)
        ref = setup / b + per
        ref_name = "NumPy loop over deletions, matrix-free Ĥ(θ⁻ − θ⁺) (same FLOPs)"
        checks["reference_loop_s_per_deletion"] = ref.wall
        if kind == "ridge":
            setup_d, per_d, _ = _np_hrec_ridge_dense(theta_np, after_np, pub_np, n, l2, picks)
            dense = setup_d / b + per_d
            checks["reference_dense_hessian_s_per_deletion"] = dense.wall
            if dense.wall < ref.wall:
                ref = dense
                ref_name = "NumPy loop over deletions with Ĥ formed once (faster than matrix-free)"
        diff = max(
            _rel(p_hat[i], o if kind == "rff_softmax" else o[:-1])
            for i, o in zip(picks, outs, strict=True)
        )
        checks["recon_rel_diff_vs_numpy"] = diff
        checks["matches_numpy"] = diff <= PARAM_TOL[config.dtype]
    else:
        ref, ref_name = _loaded_reference(reference), reference["reference"]
    return _result(
        ours,
        ref,
        flops,
        matmul,
        reference=ref_name,
        deletions_timed=b,
        compile_s=compile_s,
        setup_s=setup_s,
        checks=checks,
        notes=notes,
    )


def _softmax_thetas_after(config, data, cache):
    """θ⁺ and θ⁻ for B softmax deletions (exact where available, else one Newton step)."""
    state = _glm_state("softmax", config, data, cache)
    model, theta, factor = state["model"], state["theta"], state["factor"]
    features, labels = state["features"], state["labels"]
    n, b = config.n_train, config.deletions
    exact = cache.get("softmax_exact")
    rng = np.random.default_rng(config.seed + 60)
    if exact is not None and len(exact["deleted"]) >= b:
        notes = {
            "theta_after": "exact unlearning (softmax_exact_unlearning's θ⁻)",
            "exact_deletions": b,
        }
        return theta, exact["thetas_after"][:b], exact["deleted"][:b], notes
    if exact is not None:
        rest = np.setdiff1d(np.arange(n), exact["deleted"])
        more = np.sort(rng.choice(rest, b - len(exact["deleted"]), replace=False))
        deleted = np.concatenate([exact["deleted"], more])
    else:
        more = deleted = np.sort(rng.choice(n, b, replace=False))

    @jax.jit
    def newton_step(theta, factor, features, labels):
        # θ⁻ ≈ θ⁺ + H⁺⁻¹ ∇ℓ(θ⁺; z_j): influence unlearning with the shared training Hessian.
        grads = jax.vmap(lambda p, y: _models.per_example_grad(model, theta, p, y))(
            features, labels
        )
        flat = grads.reshape(grads.shape[0], -1)
        steps = (flat.astype(factor.inverse.dtype) @ factor.inverse).astype(flat.dtype)
        return theta[None] + steps.reshape(grads.shape)

    approx = _block(newton_step(theta, factor, features[more], labels[more]))
    notes = {"theta_after": "one Newton step with H⁺ (influence unlearning)"}
    if exact is not None:
        approx = jnp.concatenate([exact["thetas_after"], approx])
        notes = {
            "theta_after": f"exact retraining for the first {len(exact['deleted'])}, one Newton "
            "step with H⁺ for the rest",
            "exact_deletions": len(exact["deleted"]),
        }
    return theta, approx, deleted, notes


def _train_rff(model, config, features, labels):
    """θ⁺ for the RFF softmax model: Newton-CG with a bounded budget (setup, not timed)."""
    weights = jnp.ones(features.shape[0], features.dtype)

    def train(features, labels):
        return _solvers.fit_newton(
            model,
            features,
            labels,
            l2=config.l2,
            weights=weights,
            linear_solver="cg",
            tol=1e-6,
            max_steps=12,
            cg_max_steps=60,
        )

    fit = _block(jax.jit(train)(features, labels))
    return fit.params, float(fit.grad_norm)


# --------------------------------------------------------------------------------------------
# End-to-end `jaxrecon run` on MNIST


def run_e2e(
    *,
    dataset: str = "mnist",
    model: str = "softmax",
    n_train: int = 10_000,
    n_public: int = 10_000,
    deletions: int = 1_000,
    data_dir: str | None = None,
    dtype: str = "float64",
    timeout: float = 3600,
    root: str | os.PathLike = ROOT,
) -> dict[str, Any]:
    """Runs `python -m jaxrecon.cli run ...` as a subprocess; wall time by stage and peak RSS.

    Returns {"skipped": reason} when the CLI does not know `dataset` (exit code 2 and "unknown
    data set" on stderr), otherwise the stages (summary.json `timing_s`, plus the remainder:
    start-up, data, the shared Hessian factor, compiles, metrics, writing), peak RSS of the
    subprocess (os.wait4) and the headline numbers. `root`: the checkout whose jaxrecon runs.
    """
    root = pathlib.Path(root)
    data_dir = data_dir or str(ROOT.parent / "shared" / "data")
    with tempfile.TemporaryDirectory(prefix="jaxrecon-e2e-") as tmp:
        out = os.path.join(tmp, "run")
        cmd = [
            sys.executable,
            "-m",
            "jaxrecon.cli",
            "run",
            "--dataset",
            dataset,
            "--model",
            model,
            "--n-train",
            str(n_train),
            "--n-public",
            str(n_public),
            "--deletions",
            str(deletions),
            "--data-dir",
            data_dir,
            "--dtype",
            dtype,
            "--out",
            out,
            "--quiet",
        ]
        env = dict(os.environ, PYTHONPATH=str(root) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        log_path = os.path.join(tmp, "log.txt")
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, cwd=root, stdout=log, stderr=subprocess.STDOUT, env=env)
            try:
                _, status, usage = _wait4(proc.pid, timeout)
            except TimeoutError:
                proc.kill()
                proc.wait()
                return {"skipped": f"timed out after {timeout:.0f} s", "command": " ".join(cmd)}
        wall = time.perf_counter() - t0
        code = os.waitstatus_to_exitcode(status)
        with open(log_path) as log:
            text = log.read()
        if code != 0:
            if code == 2 and "unknown data set" in text:
                return {
                    "skipped": f"dataset {dataset!r} is not available on this branch "
                    f"(`jaxrecon run` said: {text.strip().splitlines()[-1]})",
                    "command": " ".join(cmd),
                }
            raise RuntimeError(f"`{' '.join(cmd)}` exited with {code}:\n{text[-2000:]}")
        with open(os.path.join(out, "summary.json")) as f:
            summary = json.load(f)
    stages = {k: float(v) for k, v in summary["timing_s"].items()}
    stages["other (start-up, data, compiles, metrics, writing)"] = wall - sum(stages.values())
    attacks = summary.get("attacks", {})
    return {
        "command": " ".join(cmd),
        "root": str(root),
        "wall_s": wall,
        "stages_s": stages,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "max_grad_norm": summary["unlearning"]["max_grad_norm"],
        "hrec_cosine_median": attacks.get("hrec", {}).get("cosine_median"),
    }


def _wait4(pid: int, timeout: float):
    """os.wait4 with a timeout: (pid, status, rusage of that child)."""
    deadline = time.monotonic() + timeout
    while True:
        waited, status, usage = os.wait4(pid, os.WNOHANG)
        if waited == pid:
            return waited, status, usage
        if time.monotonic() > deadline:
            raise TimeoutError
        time.sleep(0.05)


# --------------------------------------------------------------------------------------------
# Driver


def run(
    config: Config,
    names: tuple[str, ...] = BENCHMARKS,
    *,
    references: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs the benchmarks `names`; returns the JSON object (one entry per benchmark)."""
    config.validate()
    unknown = sorted(set(names) - set(BENCHMARKS))
    if unknown:
        raise ValueError(f"unknown benchmarks {unknown}; choose from {list(BENCHMARKS)}")
    data = make_data(config)
    # A mutable ceiling: measured now, again at the end (the kernels' fractions use the start
    # value while they run; the final fractions are rescaled to the larger of the two).
    matmul = measure_matmul(config)
    log(
        f"matmul [{config.n_train}, {config.input_dim + 1}] x [{config.input_dim + 1}, "
        f"{config.deletions}] {config.dtype}: {matmul['flops_per_s'] / 1e9:.1f} GFLOP/s"
    )
    results: dict[str, Any] = {
        "environment": _environment(config),
        "config": dataclasses.asdict(config),
    }
    cache: dict[str, Any] = {}
    runners = {
        "ridge_exact_unlearning": lambda ref: bench_ridge_unlearning(
            config, data, matmul, cache, ref
        ),
        "logistic_exact_unlearning": lambda ref: bench_retrain_unlearning(
            "logistic", config, data, matmul, cache, ref
        ),
        "softmax_exact_unlearning": lambda ref: bench_retrain_unlearning(
            "softmax", config, data, matmul, cache, ref
        ),
        "hrec_ridge": lambda ref: bench_hrec("ridge", config, data, matmul, cache, ref),
        "hrec_softmax": lambda ref: bench_hrec("softmax", config, data, matmul, cache, ref),
        "hrec_rff_softmax": lambda ref: bench_hrec("rff_softmax", config, data, matmul, cache, ref),
    }
    for name in BENCHMARKS:
        if name not in names:
            continue
        log(f"{name} ...")
        t0 = time.perf_counter()
        ref = None if references is None else references.get(name)
        results[name] = runners[name](ref)
        results[name]["wall_s"] = time.perf_counter() - t0
        if name == "hrec_softmax":
            cache.pop("softmax", None)  # frees the [DK, DK] factor
        log(f"  done in {results[name]['wall_s']:.1f} s")
    end = measure_matmul(config)
    ceiling = max(matmul["flops_per_s"], end["flops_per_s"])
    results["environment"]["load_average_end"] = os.getloadavg()
    results["matmul_flops_per_s"] = ceiling
    results["matmul"] = {
        "size": [config.n_train, config.input_dim + 1, config.deletions],
        "flops": matmul["flops"],
        "start_flops_per_s": matmul["layouts"],
        "end_flops_per_s": end["layouts"],
    }
    for name in BENCHMARKS:
        if name in results:
            results[name]["matmul_flops_per_s"] = ceiling
            results[name]["flops_fraction"] = results[name]["achieved_flops_per_s"] / ceiling
    return results


def _environment(config: Config) -> dict[str, Any]:
    import sklearn

    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device": getattr(device, "device_kind", str(device)),
        "cpu_count": os.cpu_count(),
        "jax": jax.__version__,
        "numpy": np.__version__,
        "sklearn": sklearn.__version__,
        "python": platform.python_version(),
        "dtype": config.dtype,
        "load_average_start": os.getloadavg(),
    }


def format_table(results: dict[str, Any]) -> str:
    """The readable summary: one row per benchmark, then the checks and the acceptance targets."""
    head = (
        f"{'benchmark':<28}{'jaxrecon s/del':>15}{'reference s/del':>17}{'ratio':>10}"
        f"{'(CPU time)':>11}{'FLOP/s frac':>13}{'compile s':>11}{'setup s':>10}"
    )
    lines = [head, "-" * len(head)]
    for name in BENCHMARKS:
        if name not in results:
            continue
        r = results[name]
        ref_s = r["reference_s_per_deletion"]
        ref = "-" if ref_s is None else f"{ref_s:.3e}"
        ratio = "-" if r["ratio"] is None else _ratio(r["ratio"])
        cpu = "-" if r["ratio_cpu_time"] is None else _ratio(r["ratio_cpu_time"])
        lines.append(
            f"{name:<28}{r['jaxrecon_s_per_deletion']:>15.3e}{ref:>17}{ratio:>10}{cpu:>11}"
            f"{r['flops_fraction']:>13.2f}{r['compile_s']:>11.1f}{r['setup_s']:>10.1f}"
        )
    env = results["environment"]
    lines.append(
        f"matmul ceiling: {results['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s ({env['dtype']}, "
        f"{env['backend']}); load average start {env['load_average_start'][0]:.1f}, end "
        f"{env.get('load_average_end', [float('nan')])[0]:.1f} on {env['cpu_count']} CPUs"
    )
    lines.append("")
    lines.append("checks (same run):")
    for name in BENCHMARKS:
        if name not in results:
            continue
        r = results[name]
        cells = [f"{k}={_fmt(v)}" for k, v in r["checks"].items()]
        lines.append(f"  {name}: B timed={r['deletions_timed']}; " + ", ".join(cells))
        lines.append(f"    reference: {r['reference']}")
    lines.append("")
    lines.append("acceptance (issue 5):")
    for name, targets in TARGETS.items():
        if name not in results:
            continue
        for key, target in targets.items():
            value = results[name][key]
            if value is None:
                continue
            ok = value >= target
            shown = _ratio(value) if key == "ratio" else f"{value:.2f}"
            want = f">= {target:.0f}x" if key == "ratio" else f">= {target:.2f}"
            lines.append(f"  {'MET ' if ok else 'MISS'} {name} {key} {shown} (target {want})")
    if "e2e" in results:
        lines.append("")
        lines.append(format_e2e(results["e2e"]))
    return "\n".join(lines)


def format_e2e(e2e: dict[str, Any]) -> str:
    """The end-to-end result (or why it was skipped) as text."""
    if "skipped" in e2e:
        return f"e2e: skipped: {e2e['skipped']}"
    lines = [f"e2e: {e2e['command']}"]
    lines.append(
        f"  wall {e2e['wall_s']:.1f} s, peak RSS {e2e['peak_rss_bytes'] / 2**30:.2f} GiB, "
        f"max grad norm {e2e['max_grad_norm']:.1e}, HRec cosine median "
        f"{_fmt(e2e['hrec_cosine_median'])}"
    )
    for stage, seconds in e2e["stages_s"].items():
        lines.append(f"  {stage:<60}{seconds:>9.1f} s")
    return "\n".join(lines)


def _ratio(value: float) -> str:
    return f"{value:,.0f}x" if value >= 10 else f"{value:.2f}x"


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_fmt(v)}" for k, v in value.items()) + "}"
    return str(value)


def build_parser() -> argparse.ArgumentParser:
    """The command line of `python benchmarks/run.py`."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="jaxrecon kernels vs scikit-learn / NumPy references, in one run.",
    )
    parser.add_argument("--quick", action="store_true", help="fewer repeats (same sizes)")
    parser.add_argument("--json", metavar="FILE", help="write the results as JSON")
    parser.add_argument(
        "--dtype", default="float64", choices=sorted(EXACT_TOL), help="jaxrecon kernels' dtype"
    )
    parser.add_argument(
        "--only", default=",".join(BENCHMARKS), help="comma-separated benchmarks (default: all)"
    )
    parser.add_argument(
        "--e2e",
        action="store_true",
        help="also run `jaxrecon run` on MNIST (softmax, 10,000 / 10,000 / 1,000) as a subprocess",
    )
    parser.add_argument(
        "--e2e-only", action="store_true", help="only the end-to-end run (no kernel benchmarks)"
    )
    parser.add_argument(
        "--reference-from",
        metavar="FILE",
        help="reuse reference timings from an earlier --json FILE of the same sizes "
        "(e.g. the float32 run after the float64 one)",
    )
    parser.add_argument(
        "--inverse-dtype",
        default="float32",
        choices=("float32", "float64"),
        help="dtype of the shared H⁺⁻¹ preconditioning logistic / softmax unlearning "
        "(default float32; the gradient check stays in --dtype)",
    )
    parser.add_argument("--data-dir", default=None, help="MNIST folder for --e2e")
    # Hidden: tiny sizes for the test suite, and the e2e data set / sizes.
    parser.add_argument("--smoke", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--e2e-dataset", default="mnist", help=argparse.SUPPRESS)
    parser.add_argument("--e2e-sizes", default="10000,10000,1000", help=argparse.SUPPRESS)
    parser.add_argument("--e2e-root", default=str(ROOT), help=argparse.SUPPRESS)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code."""
    args = build_parser().parse_args(argv)
    config = get_config(quick=args.quick, smoke=args.smoke, dtype=args.dtype)
    config = dataclasses.replace(config, inverse_dtype=args.inverse_dtype)
    names = tuple(s.strip() for s in args.only.split(",") if s.strip())
    references = None
    if args.reference_from:
        with open(args.reference_from) as f:
            references = {k: v for k, v in json.load(f).items() if k in BENCHMARKS}
    results: dict[str, Any] = {}
    if not args.e2e_only:
        results = run(config, names, references=references)
    if args.e2e or args.e2e_only:
        n_train, n_public, deletions = (int(s) for s in args.e2e_sizes.split(","))
        print(f"e2e: jaxrecon run --dataset {args.e2e_dataset} ...")
        e2e = run_e2e(
            dataset=args.e2e_dataset,
            n_train=n_train,
            n_public=n_public,
            deletions=deletions,
            data_dir=args.data_dir,
            dtype=args.dtype,
            root=args.e2e_root,
        )
        results["e2e"] = e2e
    if not args.e2e_only:
        print(format_table(results))
    elif "e2e" in results:
        print(format_e2e(results["e2e"]))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2, default=_json_default)
            f.write("\n")
        print(f"wrote {args.json}")
    return 0


def _json_default(value):
    if isinstance(value, np.generic | jax.Array):
        return np.asarray(value).tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
