"""Test configuration: float64 everywhere, no silent rank promotion, and a persistent
compilation cache (many tests compile the same kernels at the same shapes: ~20% of the suite's
time on 2 cores)."""

import importlib.util
import os
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrecon import features, models, solvers, unlearning

jax.config.update("jax_enable_x64", True)
jax.config.update("jax_numpy_rank_promotion", "raise")
# Shared by the xdist workers; keyed by the program, jax version and flags, so it never changes
# a result. JAXRECON_TEST_CACHE overrides the folder; an empty value turns the cache off.
_CACHE = os.environ.get(
    "JAXRECON_TEST_CACHE", str(pathlib.Path(__file__).parent.parent / ".pytest_cache" / "jax")
)
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.1)


@pytest.fixture
def rng():
    """A NumPy generator for test data only (the library itself never uses np.random)."""
    return np.random.default_rng(0)


def make_problem(rng, n=60, d=5, num_classes=None, task="regression"):
    """Random features with the bias coordinate last, and labels for `task`."""
    x = rng.normal(size=(n, d))
    p = np.concatenate([x, np.ones((n, 1))], axis=1)
    if task == "regression":
        y = p @ rng.normal(size=d + 1) + 0.1 * rng.normal(size=n)
    elif task == "binary":
        y = (p @ rng.normal(size=d + 1) + 0.5 * rng.normal(size=n) > 0).astype(np.int64)
    else:
        y = np.argmax(
            p @ rng.normal(size=(d + 1, num_classes)) + rng.normal(size=(n, num_classes)), axis=1
        ).astype(np.int64)
    return x, p, y


IDENTITY = features.identity_features()


def cosine(a, b):
    """cos(a, b) of two flattened arrays."""
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def trained_glm(rng, name, k=3, n=60, d=4, fmap=IDENTITY, l2=0.5):
    """(model, x, p, y, θ⁺): a GLM of family `name` trained by Newton on a `make_problem`."""
    task = {"ridge": "regression", "logistic": "binary"}.get(name, "multiclass")
    if name == "svm" and k is None:
        task = "binary"
    x, _, y = make_problem(rng, n=n, d=d, num_classes=k, task=task)
    model = models.make_model(name, k)
    p = fmap.apply(jnp.asarray(x))
    y = jnp.asarray(y)
    theta = solvers.fit_newton(model, p, y, l2=l2, weights=jnp.ones(n)).params
    return model, x, p, y, theta


def newton_step(model, theta, p, y, j, l2=0.5):
    """Newton-step unlearning of record j, the exact retained-data Hessian as a matvec, the mask."""
    w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0], p.dtype)[0]
    h = models.dense_hessian(model, theta, p, l2=l2, weights=w, labels=y)
    g = models.gradient(model, theta, p, y, l2=l2, weights=w)
    after = theta - jnp.linalg.solve(h, g.reshape(-1)).reshape(theta.shape)
    return after, lambda v: (h @ v.reshape(-1)).reshape(v.shape), w


def load_experiment(name):
    """experiments/<name>.py as a module (the drivers are scripts, not a package)."""
    path = pathlib.Path(__file__).resolve().parent.parent / "experiments" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
