"""Shadow models for the Updates-Leak baseline: train, delete and record update signatures.

Layering (DESIGN §5): this module sits ABOVE both `unlearning` and `attacks` and imports both;
neither imports it. `attacks` holds the attacker's decoder (`fit_updates_leak_decoder`,
`apply_updates_leak_decoder`, `updates_leak_signature`); this module makes the decoder's training
data the way Salem et al. (2020) do: the attacker trains shadow models of the target's family on
its own PUBLIC data, deletes records from them with the same (exact) unlearning, and records
each deletion's update signature next to the deleted record. A driver then composes:

    data = shadow.shadow_updates(key, model, pub_feats, pub_labels, pub_x, probe_feats, ...)
    decoder = attacks.fit_updates_leak_decoder(key2, data.signatures, data.targets, data.labels,
                                               num_classes=..., lower=..., upper=...)
    sig = jax.vmap(lambda t: attacks.updates_leak_signature(model, θ⁺, t, probe_feats))(θ⁻s)
    recon = jax.vmap(lambda s: attacks.apply_updates_leak_decoder(decoder, s))(sig)

Everything is vmapped: over shadow models, and within each over its deletions.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from jaxrecon import _validate
from jaxrecon import attacks as _attacks
from jaxrecon import solvers as _solvers
from jaxrecon import unlearning as _unlearning
from jaxrecon.models import Model


class ShadowData(NamedTuple):
    """Training pairs for the Updates-Leak decoder, one row per shadow deletion.

    Attributes:
      signatures: [S·k, s] update signatures (`attacks.updates_leak_signature`).
      targets: [S·k, d] the deleted inputs.
      labels: [S·k] their labels.
      grad_norm: [S·k] relative gradient norm of each shadow unlearning (exactness check).
    """

    signatures: jax.Array
    targets: jax.Array
    labels: jax.Array
    grad_norm: jax.Array


def shadow_updates(
    key: jax.Array,
    model: Model,
    features: jax.Array,
    labels: jax.Array,
    inputs: jax.Array,
    probe_features: jax.Array,
    *,
    num_shadow: int,
    shadow_size: int,
    deletions_per_shadow: int,
    l2,
    linear_solver: str = "dense",
    cg_max_steps: int = 200,
) -> ShadowData:
    """Trains `num_shadow` shadow models on random subsets of the public pool and unlearns each.

    Shadow s trains θ_s on `shadow_size` records drawn without replacement from the pool
    (Newton, `solvers.fit_newton`), then exactly unlearns `deletions_per_shadow` of its own
    records one at a time (`unlearning.unlearn_retrain`, warm-started at θ_s) and records the
    signature of each update on the probe set. Exact training and unlearning (to the reported
    gradient norm); the baseline built on it is approximate by nature.

    Args:
      key: PRNG key (split into one key per shadow: "subset" and "deleted").
      model: the target's model family.
      features: [m, D] the attacker's public pool features (keep the probe samples out of it).
      labels: [m] their labels.
      inputs: [m, d] their inputs (the decoder's targets).
      probe_features: [r, D] the fixed probe set.
      num_shadow: S >= 1.
      shadow_size: records per shadow model, 2 <= shadow_size <= m (use the target's n when the
        pool allows: signatures shrink like 1/n).
      deletions_per_shadow: k, 1 <= k <= shadow_size.
      l2: the target's regulariser.
      linear_solver: "dense" (Cholesky; small D·K) or "cg" (Hessian-vector products only;
        large D·K, unpreconditioned).
      cg_max_steps: CG iterations at most per Newton step ("cg").

    Returns:
      ShadowData with S·k rows.

    Raises:
      ValueError: a bad count or solver (naming the argument and its value).

    References:
      Salem, A. et al. "Updates-Leak: Data Set Inference and Reconstruction Attacks in Online
      Learning", USENIX Security 2020.
    """
    m = features.shape[0]
    _validate.integer("num_shadow", num_shadow, minimum=1)
    _validate.integer("shadow_size", shadow_size, minimum=2, maximum=m)
    _validate.integer("deletions_per_shadow", deletions_per_shadow, minimum=1, maximum=shadow_size)
    if linear_solver not in ("dense", "cg"):
        raise ValueError(f"linear_solver must be 'dense' or 'cg', got {linear_solver!r}")
    dtype = features.dtype

    def one_shadow(k):
        k_subset, k_deleted = jax.random.split(k)
        subset = jax.random.choice(k_subset, m, (shadow_size,), replace=False)
        feats, labs, xs = features[subset], labels[subset], inputs[subset]
        ones = jnp.ones(shadow_size, dtype)
        theta = _solvers.fit_newton(
            model,
            feats,
            labs,
            l2=l2,
            weights=ones,
            linear_solver=linear_solver,
            cg_max_steps=cg_max_steps,
        ).params
        factor = None
        if linear_solver == "dense":
            factor = _unlearning.hessian_cholesky(model, theta, feats, l2=l2, labels=labs)
        deleted = jax.random.choice(k_deleted, shadow_size, (deletions_per_shadow,), replace=False)
        masks = _unlearning.deletion_masks(deleted, shadow_size, dtype)

        def one_deletion(w):
            res = _unlearning.unlearn_retrain(
                model,
                theta,
                feats,
                labs,
                w,
                l2=l2,
                precond_factor=factor,
                cg_max_steps=cg_max_steps,
            )
            sig = _attacks.updates_leak_signature(model, theta, res.params, probe_features)
            return sig, res.grad_norm

        sigs, norms = jax.vmap(one_deletion)(masks)
        return sigs, xs[deleted], labs[deleted], norms

    sigs, targets, labs, norms = jax.vmap(one_shadow)(jax.random.split(key, num_shadow))
    rows = num_shadow * deletions_per_shadow
    return ShadowData(
        sigs.reshape(rows, -1),
        targets.reshape(rows, -1),
        labs.reshape(rows),
        norms.reshape(rows),
    )
