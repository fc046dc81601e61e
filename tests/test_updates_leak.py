"""The Updates-Leak baseline: update signatures, the decoder, and the shadow models behind it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_problem
from jaxrecon import attacks, metrics, models, shadow


def test_updates_leak_signature_and_decoder(rng):
    model = models.softmax_model(3)
    theta, after = jnp.asarray(rng.normal(size=(4, 3))), jnp.asarray(rng.normal(size=(4, 3)))
    probe = jnp.asarray(np.hstack([rng.normal(size=(5, 3)), np.ones((5, 1))]))
    sig = attacks.updates_leak_signature(model, theta, after, probe)
    expected = (models.predict(model, after, probe) - models.predict(model, theta, probe)).ravel()
    np.testing.assert_allclose(sig, expected, rtol=1e-12)

    # A learnable synthetic task: signature = A·x (times a per-row scale the decoder ignores).
    a = rng.normal(size=(3, 8))
    xs = rng.uniform(size=(240, 3))
    labels = np.argmax(xs, axis=1)
    sigs = (xs - 0.5) @ a * rng.uniform(0.5, 2.0, size=(240, 1))
    train, test = slice(0, 200), slice(200, None)
    fit = jax.jit(
        lambda key, s, t, lab: attacks.fit_updates_leak_decoder(
            key,
            s,
            t,
            lab,
            num_classes=3,
            lower=0.0,
            upper=1.0,
            hidden=(32,),
            steps=500,
            learning_rate=5e-3,
        )
    )
    decoder = fit(jax.random.key(0), *(jnp.asarray(v[train]) for v in (sigs, xs, labels)))
    res = jax.jit(jax.vmap(lambda s: attacks.apply_updates_leak_decoder(decoder, s)))(
        jnp.asarray(sigs[test])
    )
    assert np.median(np.asarray(metrics.cosine_similarity(res.x_hat, jnp.asarray(xs[test])))) > 0.95
    assert np.mean(np.asarray(res.y_hat) == labels[test]) > 0.8
    assert float(res.x_hat.min()) >= 0 and float(res.x_hat.max()) <= 1
    one = attacks.apply_updates_leak_decoder(decoder, jnp.asarray(sigs[200]))
    np.testing.assert_allclose(one.x_hat, res.x_hat[0], rtol=1e-10)
    no_labels = attacks.fit_updates_leak_decoder(
        jax.random.key(0),
        jnp.asarray(sigs),
        jnp.asarray(xs),
        lower=0.0,
        upper=1.0,
        steps=2,
        hidden=(4,),
    )
    assert int(attacks.apply_updates_leak_decoder(no_labels, jnp.asarray(sigs[0])).y_hat) == -1
    with pytest.raises(ValueError, match="share N"):
        attacks.fit_updates_leak_decoder(
            jax.random.key(0), jnp.asarray(sigs), jnp.asarray(xs[:5]), lower=0.0, upper=1.0
        )
    with pytest.raises(ValueError, match="hidden"):
        attacks.fit_updates_leak_decoder(
            jax.random.key(0), jnp.asarray(sigs), jnp.asarray(xs), lower=0.0, upper=1.0, hidden=()
        )


def test_shadow_updates_smoke(rng):
    model = models.logistic_model()
    x, p, y = make_problem(rng, n=50, d=3, task="binary")
    data = jax.jit(
        lambda key, a, b, c, d: shadow.shadow_updates(
            key, model, a, b, c, d, num_shadow=2, shadow_size=30, deletions_per_shadow=3, l2=1.0
        )
    )(jax.random.key(0), *(jnp.asarray(v) for v in (p[10:], y[10:], x[10:], p[:10])))
    assert data.signatures.shape == (6, 10) and data.targets.shape == (6, 3)
    assert float(jnp.max(data.grad_norm)) <= 1e-8
    pool = x[10:]
    for row, lab in zip(np.asarray(data.targets), np.asarray(data.labels), strict=True):
        k = np.flatnonzero(np.all(pool == row, axis=1))
        assert k.size == 1 and y[10:][k[0]] == lab
    with pytest.raises(ValueError, match="deletions_per_shadow"):
        shadow.shadow_updates(
            jax.random.key(0),
            model,
            jnp.asarray(p),
            jnp.asarray(y),
            jnp.asarray(x),
            jnp.asarray(p[:3]),
            num_shadow=1,
            shadow_size=5,
            deletions_per_shadow=6,
            l2=1.0,
        )
