"""Metrics of a reconstruction against the deleted record (DESIGN §3.7).

All functions take batches ([B, d] reconstructions against [B, d] originals, in input space, the
bias coordinate already removed) and are pure and jittable.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def cosine_similarity(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Row-wise cos(x̂_b, x_b) for [B, d] arrays; 0 where either row is zero."""
    num = jnp.sum(x_hat * x, axis=-1)
    den = jnp.linalg.norm(x_hat, axis=-1) * jnp.linalg.norm(x, axis=-1)
    return jnp.where(den > 0, num / jnp.where(den > 0, den, 1), 0)


def mse(x_hat: jax.Array, x: jax.Array) -> jax.Array:
    """Row-wise mean squared error, [B]."""
    return jnp.mean((x_hat - x) ** 2, axis=-1)


def label_correct(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Row-wise y_hat == y for class labels, [B] bool."""
    return jnp.asarray(y_hat) == jnp.asarray(y)


def reid_rank(x_hat: jax.Array, candidates: jax.Array, target: jax.Array) -> jax.Array:
    """Where the deleted record ranks among `candidates` by cosine to its reconstruction, [B].

    x̂ [B, d] against candidates [N, d] (the training set and the public pool: everyone the
    reconstruction could point at), `target` [B] the deleted record's row in `candidates`.
    Rank 1 = the reconstruction's nearest candidate is the deleted record itself (it singles the
    person out); a tie counts against it (rank 1 + every other candidate at least as close).
    Memory O(chunk·N): the [B, N] similarity matrix is never formed at once.
    """
    norms = jnp.linalg.norm(candidates, axis=-1)
    unit = candidates / jnp.where(norms > 0, norms, 1)[:, None]

    def one(args):
        x, j = args
        cos = unit @ (x / jnp.maximum(jnp.linalg.norm(x), jnp.finfo(x.dtype).tiny))
        others = jnp.sum(cos >= cos[j]) - 1
        return (1 + others).astype(jnp.int32)

    return jax.lax.map(one, (x_hat, jnp.asarray(target)), batch_size=64)


def summarize(cosines: np.ndarray) -> dict[str, float]:
    """Median, 10th percentile and mean of a batch of cosine similarities."""
    cosines = np.asarray(cosines, dtype=np.float64)
    return {
        "cosine_median": float(np.median(cosines)),
        "cosine_p10": float(np.percentile(cosines, 10)),
        "cosine_mean": float(np.mean(cosines)),
    }


def empirical_cdf(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and their empirical CDF levels (k/B), for plotting."""
    values = np.sort(np.asarray(values, dtype=np.float64))
    return values, np.arange(1, values.size + 1) / values.size


def r2_score(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Coefficient of determination 1 − SS_res / SS_tot."""
    ss_res = jnp.sum((y - y_hat) ** 2)
    ss_tot = jnp.sum((y - jnp.mean(y)) ** 2)
    return 1 - ss_res / ss_tot


def accuracy(y_hat: jax.Array, y: jax.Array) -> jax.Array:
    """Fraction of correct class predictions."""
    return jnp.mean(label_correct(y_hat, y).astype(jnp.result_type(float)))


def roc_summary(scores: np.ndarray, is_member: np.ndarray) -> dict[str, float]:
    """ROC AUC and the TPR at 1% and 0.1% FPR of a membership score (higher = member).

    The ROC curve has one point per distinct score (ties move together), from (0, 0) to (1, 1);
    the AUC is its trapezoidal area (= P(s_member > s_non-member) + ½ P(tie)), and TPR at FPR α
    is the best TPR of a threshold whose FPR is at most α, as in Carlini et al. (2022) §4.

    Args:
      scores: [N] real scores.
      is_member: [N] bool (or 0/1), with at least one member and one non-member.

    Returns:
      {"auc", "tpr_at_1pct", "tpr_at_0_1pct"} as floats.

    Raises:
      ValueError: shapes differ, or one class is missing.

    References:
      Carlini, N. et al. "Membership Inference Attacks From First Principles", IEEE S&P 2022.
    """
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    is_member = np.asarray(is_member).reshape(-1).astype(bool)
    if scores.shape != is_member.shape:
        raise ValueError(f"scores {scores.shape} and is_member {is_member.shape} differ in shape")
    positives, negatives = int(is_member.sum()), int((~is_member).sum())
    if positives == 0 or negatives == 0:
        raise ValueError(f"is_member needs both classes, got {positives} members of {scores.size}")
    order = np.argsort(-scores, kind="stable")
    s, m = scores[order], is_member[order]
    last = np.r_[np.flatnonzero(np.diff(s)), s.size - 1]  # the last row of each distinct score
    tpr = np.r_[0.0, np.cumsum(m)[last] / positives]
    fpr = np.r_[0.0, np.cumsum(~m)[last] / negatives]
    auc = float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))
    return {
        "auc": auc,
        "tpr_at_1pct": float(tpr[fpr <= 0.01].max()),
        "tpr_at_0_1pct": float(tpr[fpr <= 0.001].max()),
    }
