"""Metrics: cosine, MSE, summaries and utility scores against NumPy."""

import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from jaxrecon import metrics


def test_cosine_and_mse_match_numpy(rng):
    a, b = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
    expected = np.sum(a * b, 1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    np.testing.assert_allclose(
        metrics.cosine_similarity(jnp.asarray(a), jnp.asarray(b)), expected, rtol=1e-12
    )
    np.testing.assert_allclose(
        metrics.mse(jnp.asarray(a), jnp.asarray(b)), np.mean((a - b) ** 2, 1), rtol=1e-12
    )
    assert metrics.cosine_similarity(jnp.zeros((1, 3)), jnp.ones((1, 3)))[0] == 0


def test_summaries_and_scores():
    s = metrics.summarize(np.linspace(0, 1, 11))
    assert s == pytest.approx({"cosine_median": 0.5, "cosine_p10": 0.1, "cosine_mean": 0.5})
    xs, ys = metrics.empirical_cdf(np.array([0.3, 0.1, 0.2]))
    np.testing.assert_allclose(xs, [0.1, 0.2, 0.3])
    np.testing.assert_allclose(ys, [1 / 3, 2 / 3, 1])
    y = jnp.asarray([1.0, 2.0, 3.0])
    assert float(metrics.r2_score(y, y)) == 1.0
    assert float(metrics.accuracy(jnp.asarray([0, 1, 1]), jnp.asarray([0, 1, 0]))) == pytest.approx(
        2 / 3
    )


def test_reid_rank_matches_a_numpy_loop(rng):
    candidates = rng.normal(size=(150, 6))
    candidates[7] = candidates[3]  # an exact duplicate: the tie counts against the target
    target = np.array([3, 10, 42, 149, 0] * 30)  # 150 rows: more than one lax.map batch
    x_hat = candidates[target] + 0.7 * rng.normal(size=(len(target), 6))
    ranks = np.asarray(metrics.reid_rank(jnp.asarray(x_hat), jnp.asarray(candidates), target))
    unit = candidates / np.linalg.norm(candidates, axis=1, keepdims=True)
    for b, j in enumerate(target):
        cos = unit @ (x_hat[b] / np.linalg.norm(x_hat[b]))
        assert ranks[b] == 1 + np.sum(cos >= cos[j]) - 1
    assert np.all(ranks[target == 3] >= 2)  # its twin is always as close
    exact = np.asarray(metrics.reid_rank(jnp.asarray(candidates[[10, 42]]), candidates, [10, 42]))
    np.testing.assert_array_equal(exact, [1, 1])


def test_roc_summary_matches_sklearn():
    rng = np.random.default_rng(0)
    for n in (7, 300, 4000):
        is_member = rng.random(n) < 0.3
        is_member[:2] = (True, False)
        scores = np.round(rng.normal(size=n) + is_member, 1)  # rounded: ties count half
        summary = metrics.roc_summary(scores, is_member)
        assert abs(summary["auc"] - roc_auc_score(is_member, scores)) <= 1e-12
        assert 0 <= summary["tpr_at_0_1pct"] <= summary["tpr_at_1pct"] <= 1
    perfect = metrics.roc_summary(np.arange(10.0), np.arange(10) >= 5)
    assert perfect == {"auc": 1.0, "tpr_at_1pct": 1.0, "tpr_at_0_1pct": 1.0}
