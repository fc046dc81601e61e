"""The Updates-Leak baseline: update signatures, the decoder, and the shadow models behind it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import load_experiment, make_problem
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


@pytest.fixture(scope="module")
def digits_scenario():
    """A small softmax scenario on digits: 40 training and 60 public records."""
    from jaxrecon import data, scenario

    sc = scenario.make_scenario(
        data.load_digits(), model="softmax", n_train=40, n_public=60, key=jax.random.key(0)
    )
    return sc, jax.jit(scenario.fit)(sc).params


def _prepare(sc, theta, **options):
    from jaxrecon.reconstruction import prepare_attack

    return prepare_attack(sc, theta, "updates-leak", **options)


class _Stop(Exception):
    """Ends a preparation once its shadow-stage arguments are seen (skips compiling it)."""


def test_updates_leak_options_change_the_prepared_state(digits_scenario, monkeypatch):
    from jaxrecon import reconstruction

    sc, theta = digits_scenario
    seen, original = [], reconstruction._shadow_updates_jit

    def spy(*args, stop=False, **kwargs):
        data = None if stop else original(*args, **kwargs)
        seen.append((args[5].shape[0], kwargs["num_shadow"], kwargs["deletions_per_shadow"], data))
        if stop:
            raise _Stop
        return data

    monkeypatch.setattr(
        reconstruction, "_shadow_updates_jit", lambda *a, **k: spy(*a, stop=True, **k)
    )
    with pytest.raises(_Stop):
        _prepare(sc, theta)  # the defaults, 50 deletions capped at the shadow size (21)
    defaults = (reconstruction.UPDATES_LEAK_PROBES, reconstruction.UPDATES_LEAK_SHADOWS, 21)
    assert seen[-1][:3] == defaults
    monkeypatch.setattr(reconstruction, "_shadow_updates_jit", spy)
    state = _prepare(sc, theta, probes=12, shadows=3, deletions_per_shadow=4)
    assert seen[-1][:3] == (12, 3, 4)
    # S·k shadow deletions, each signature the change of 12 probes x 10 class probabilities.
    assert seen[-1][3].signatures.shape == (3 * 4, 12 * 10)
    np.testing.assert_array_equal(state.probe_features, sc.public.features[:12])
    assert state.decoder.in_mean.shape == (12 * 10,)
    attack = reconstruction.make_attack(sc, theta, ["updates-leak"], states={"updates-leak": state})
    result = attack(jnp.stack([theta, theta]), np.array([0, 1]))["updates-leak"]
    assert result.x_hat.shape == (2, 64) and bool(jnp.all(jnp.isfinite(result.x_hat)))


def test_updates_leak_vs_hrec_driver_smoke(tmp_path):
    """experiments/updates_leak_vs_hrec.py's smoke config (here, not in test_experiments.py: it
    reuses the shadow stage compiled for the options test above, same shapes)."""
    exp = load_experiment("updates_leak_vs_hrec")
    config = exp.get_config(smoke=True)
    assert exp.get_config().dataset == "digits"  # no data dir: the embedded digits
    assert exp.get_config(data_dir="data").dataset == "cifar10"
    results = exp.run(config)
    attacks = results["attacks"]
    assert set(attacks) == {"hrec", "avg", "maxdiff", "updates-leak-S3"}
    assert attacks["hrec"]["cosine_median"] > attacks["avg"]["cosine_median"] + 0.05
    assert attacks["hrec"]["label_accuracy"] == 1.0
    for a in attacks.values():
        assert a["cosine_p10"] <= a["cosine_median"] <= a["cosine_p90"]
    assert all(len(c) == config.deletions for c in results["cosines"].values())
    assert "| updates-leak-S3 |" in exp.markdown_table(results)
    exp.plot(results, tmp_path / "ul.png")
    assert (tmp_path / "ul.png").stat().st_size > 1000


@pytest.mark.parametrize(
    ("options", "name", "says"),
    [
        ({"probes": 0}, "probes", "got 0"),
        ({"shadows": 1.5}, "shadows", "got 1.5"),
        ({"deletions_per_shadow": True}, "deletions_per_shadow", "got True"),
        ({"shadow": 4}, "shadow", "not an option of attack 'updates-leak'"),
        ({"probes": 51}, "attacks", "at least 61 public samples, got 60"),
    ],
)
def test_updates_leak_bad_options_raise(digits_scenario, options, name, says):
    from jaxrecon.errors import InputError

    sc, theta = digits_scenario
    with pytest.raises(InputError, match=f"^{name}: ") as info:
        _prepare(sc, theta, **options)
    assert info.value.argument == name and says in str(info.value)


def test_prepare_attack_rejects_options_of_attacks_without_preparation(digits_scenario):
    from jaxrecon.errors import InputError
    from jaxrecon.reconstruction import prepare_attack

    sc, theta = digits_scenario
    assert prepare_attack(sc, theta, "hrec") is None
    with pytest.raises(InputError, match="^probes: not an option of attack 'hrec'; options: none"):
        prepare_attack(sc, theta, "hrec", probes=4)
