"""Model families: per-example loss, prediction and Hessian-vector products.

Every model is a generalised linear model in the features p (bias coordinate last): the linear
output is z = θᵀp (a scalar, θ in R^D) or z = Θᵀp (a K-vector, Θ in R^{D×K}), and the per-example
loss ℓ(z, y) is convex in z. Training minimises (DESIGN §3)

    L_w(θ) = Σ_i w_i ℓ(θ; p_i, y_i) + (l2/2)‖θ‖²,        w ∈ {0,1}^n,

so a deletion is a weight mask and every solver is a pure function of `weights`.

The GLM structure gives the per-example gradient ∇_θ ℓ = p ⊗ ℓ'(z, y) and the Hessian
∇²_θ ℓ = (p pᵀ) ⊗ ℓ''(z); `hvp` uses it so the Hessian is never formed: it costs two products
with the feature matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

REGRESSION = "regression"
BINARY = "binary"
MULTICLASS = "multiclass"


class Model(NamedTuple):
    """A model family as pure functions (like optax's GradientTransformation).

    Attributes:
      name: "ridge", "logistic" or "softmax".
      task: REGRESSION, BINARY or MULTICLASS.
      num_outputs: K for multi-output models, None for scalar-output models.
      loss_z: (z, y) -> scalar loss of one example given its linear output z.
      dloss_z: (z, y) -> ℓ'(z, y), same shape as z.
      curvature: (z, dz) -> ℓ''(z)·dz, the second derivative in z applied to a tangent.
      link: z -> prediction (identity, sigmoid probability, softmax probabilities).
    """

    name: str
    task: str
    num_outputs: int | None
    loss_z: Callable[[jax.Array, jax.Array], jax.Array]
    dloss_z: Callable[[jax.Array, jax.Array], jax.Array]
    curvature: Callable[[jax.Array, jax.Array], jax.Array]
    link: Callable[[jax.Array], jax.Array]

    def param_shape(self, dim: int) -> tuple[int, ...]:
        """Shape of θ for D = `dim` features: (D,) or (D, K)."""
        return (dim,) if self.num_outputs is None else (dim, self.num_outputs)

    def init(self, dim: int, dtype=jnp.float64) -> jax.Array:
        """Zero parameters (the objective is strictly convex, so the start does not matter)."""
        return jnp.zeros(self.param_shape(dim), dtype)


def ridge_model() -> Model:
    """Squared loss ℓ = ½(θᵀp − y)² on a real target y."""
    return Model(
        name="ridge",
        task=REGRESSION,
        num_outputs=None,
        loss_z=lambda z, y: 0.5 * (z - y) ** 2,
        dloss_z=lambda z, y: z - y,
        curvature=lambda z, dz: dz,
        link=lambda z: z,
    )


def logistic_model() -> Model:
    """Binary cross-entropy ℓ = log(1 + e^z) − y·z on labels y ∈ {0, 1}; ℓ' = σ(z) − y."""

    def curvature(z, dz):
        s = jax.nn.sigmoid(z)
        return s * (1 - s) * dz

    return Model(
        name="logistic",
        task=BINARY,
        num_outputs=None,
        loss_z=lambda z, y: jax.nn.softplus(z) - y * z,
        dloss_z=lambda z, y: jax.nn.sigmoid(z) - y,
        curvature=curvature,
        link=jax.nn.sigmoid,
    )


def softmax_model(num_classes: int) -> Model:
    """Softmax cross-entropy over K classes: ℓ = logsumexp(z) − z_y; ℓ' = softmax(z) − e_y.

    The curvature in z is diag(s) − s sᵀ with s = softmax(z), so ∇²_Θ ℓ = (p pᵀ) ⊗ (diag(s) − s sᵀ).
    """
    if int(num_classes) != num_classes or num_classes < 2:
        raise ValueError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    k = int(num_classes)

    def loss_z(z, y):
        return jax.nn.logsumexp(z) - jnp.take(z, y)

    def dloss_z(z, y):
        return jax.nn.softmax(z) - jax.nn.one_hot(y, k, dtype=z.dtype)

    def curvature(z, dz):
        s = jax.nn.softmax(z)
        return s * dz - s * jnp.sum(s * dz, axis=-1, keepdims=True)

    return Model(
        name="softmax",
        task=MULTICLASS,
        num_outputs=k,
        loss_z=loss_z,
        dloss_z=dloss_z,
        curvature=curvature,
        link=jax.nn.softmax,
    )


# name -> factory(num_classes). Scalar-output models ignore num_classes.
MODELS: dict[str, Callable[[int | None], Model]] = {
    "ridge": lambda num_classes: ridge_model(),
    "logistic": lambda num_classes: logistic_model(),
    "softmax": lambda num_classes: softmax_model(num_classes),
}


def make_model(name: str, num_classes: int | None = None) -> Model:
    """The model family called `name` (see `MODELS`); multi-class models need `num_classes`."""
    if name not in MODELS:
        raise ValueError(f"model must be one of {sorted(MODELS)}, got {name!r}")
    if name == "softmax" and num_classes is None:
        raise ValueError("model 'softmax' needs num_classes")
    return MODELS[name](num_classes)


def logits(params: jax.Array, features: jax.Array) -> jax.Array:
    """Linear output z = pᵀθ for features [..., D]: [...] or [..., K]."""
    return features @ params


def predict(model: Model, params: jax.Array, features: jax.Array) -> jax.Array:
    """The model's prediction (value, probability or class probabilities) for features [..., D]."""
    return model.link(logits(params, features))


def loss(model: Model, params: jax.Array, features: jax.Array, label: jax.Array) -> jax.Array:
    """Per-example loss ℓ(θ; p, y) for one example p [D]."""
    return model.loss_z(logits(params, features), label)


def per_example_grad(
    model: Model, params: jax.Array, features: jax.Array, label: jax.Array
) -> jax.Array:
    """∇_θ ℓ(θ; p, y) = p ⊗ ℓ'(z, y) for one example p [D]; same shape as θ."""
    dz = model.dloss_z(logits(params, features), label)
    return features * dz if dz.ndim == 0 else jnp.outer(features, dz)


def objective(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    *,
    l2: float | jax.Array,
    weights: jax.Array,
) -> jax.Array:
    """L_w(θ) = Σ_i w_i ℓ(θ; p_i, y_i) + (l2/2)‖θ‖².

    Args:
      model: the model family.
      params: θ [D] or [D, K].
      features: [n, D] with the bias coordinate last.
      labels: [n] targets or integer labels.
      l2: the regulariser λ.
      weights: [n] sample weights (0/1 masks express deletions).
    """
    z = logits(params, features)
    per_example = jax.vmap(model.loss_z)(z, labels)
    return jnp.sum(weights * per_example) + 0.5 * l2 * jnp.sum(params * params)


def gradient(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    labels: jax.Array,
    *,
    l2: float | jax.Array,
    weights: jax.Array,
) -> jax.Array:
    """∇L_w(θ) = Pᵀ (w ⊙ ℓ'(z, y)) + l2·θ, from the GLM structure (two products with P)."""
    z = logits(params, features)
    dz = jax.vmap(model.dloss_z)(z, labels)
    return _weighted_transpose(features, weights, dz) + l2 * params


def hvp(
    model: Model, params: jax.Array, features: jax.Array, weights: jax.Array, tangent: jax.Array
) -> jax.Array:
    """Data-term Hessian-vector product Σ_i w_i ∇²ℓ_i(θ) · v = Pᵀ (w ⊙ ℓ''(z)[P v]).

    The Hessian of a canonical-link GLM does not depend on the labels, so none are needed. Add
    `l2 * tangent` for the Hessian of the regularised objective.

    Args:
      model: the model family.
      params: θ, where the Hessian is taken.
      features: [n, D].
      weights: [n] sample weights.
      tangent: v, same shape as θ.
    """
    z = logits(params, features)
    dz = logits(tangent, features)
    return _weighted_transpose(features, weights, model.curvature(z, dz))


def dense_hessian(
    model: Model,
    params: jax.Array,
    features: jax.Array,
    *,
    l2: float | jax.Array,
    weights: jax.Array,
) -> jax.Array:
    """The Hessian of L_w as a dense [P, P] matrix over the flattened parameters (row-major).

    Only for problems whose parameter count P = D·K is small (it costs P Hessian-vector products).
    """
    size = params.size
    basis = jnp.eye(size, dtype=params.dtype).reshape((size,) + params.shape)
    columns = jax.vmap(lambda v: hvp(model, params, features, weights, v))(basis)
    return columns.reshape(size, size) + l2 * jnp.eye(size, dtype=params.dtype)


def _weighted_transpose(features: jax.Array, weights: jax.Array, values: jax.Array) -> jax.Array:
    """Pᵀ (w ⊙ values) for values [n] or [n, K]."""
    if values.ndim == 1:
        return features.T @ (weights * values)
    return features.T @ (weights[:, None] * values)
