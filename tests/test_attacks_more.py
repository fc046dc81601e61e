"""HRec on the new families and features, the informed adversary, embedding inversion, gradient
matching and the Updates-Leak pieces (DESIGN §3.2-§3.4)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import make_problem
from jaxrecon import attacks, features, metrics, models, shadow, solvers, unlearning

IDENTITY = features.identity_features()


def _cos(a, b):
    a, b = np.asarray(a).ravel(), np.asarray(b).ravel()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _trained(rng, name, k=3, n=60, d=4, fmap=IDENTITY, l2=0.5):
    task = {"ridge": "regression", "logistic": "binary"}.get(name, "multiclass")
    if name == "svm" and k is None:
        task = "binary"
    x, _, y = make_problem(rng, n=n, d=d, num_classes=k, task=task)
    model = models.make_model(name, k)
    p = fmap.apply(jnp.asarray(x))
    y = jnp.asarray(y)
    theta = solvers.fit_newton(model, p, y, l2=l2, weights=jnp.ones(n)).params
    return model, x, p, y, theta


def _newton_step(model, theta, p, y, j, l2=0.5):
    """Newton-step unlearning of record j and the exact retained-data Hessian as a matvec."""
    w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0], p.dtype)[0]
    h = models.dense_hessian(model, theta, p, l2=l2, weights=w, labels=y)
    g = models.gradient(model, theta, p, y, l2=l2, weights=w)
    after = theta - jnp.linalg.solve(h, g.reshape(-1)).reshape(theta.shape)
    return after, lambda v: (h @ v.reshape(-1)).reshape(v.shape), w


def _support_records(model, theta, p, y, count=2):
    """Records whose loss gradient is non-zero (all of them, except SVM records past the margin)."""
    norms = jax.vmap(lambda f, t: jnp.linalg.norm(models.per_example_grad(model, theta, f, t)))(
        p, y
    )
    return [int(j) for j in np.flatnonzero(np.asarray(norms) > 1e-3)[:count]]


@pytest.mark.parametrize(
    "name,k,rff",
    [
        ("svm", None, False),
        ("svm", 3, False),
        ("ridge-onehot", 3, False),
        ("softmax", 3, True),
        ("svm", 3, True),
    ],
)
def test_hrec_is_exact_in_feature_space_with_true_hessian(rng, name, k, rff):
    """Newton-step unlearning + Ĥ = H₋: p̂ = p_j and ŷ = y_j to round-off, for every family."""
    fmap = features.rff_features(jax.random.key(0), 4, 32, 2.0) if rff else IDENTITY
    model, x, p, y, theta = _trained(rng, name, k=k, fmap=fmap)
    for j in _support_records(model, theta, p, y):
        after, matvec, _ = _newton_step(model, theta, p, y, j)
        res = attacks.hrec(model, fmap, theta, after, matvec, invert=lambda q: q)
        assert _cos(res.x_hat, p[j]) > 1 - 1e-9
        np.testing.assert_allclose(res.x_hat, p[j], rtol=1e-7, atol=1e-9)
        assert int(res.y_hat) == int(y[j])


@pytest.mark.parametrize(
    "name,k", [("ridge", None), ("logistic", None), ("softmax", 3), ("svm", 3), ("ridge-onehot", 3)]
)
def test_informed_adversary_is_exact_for_glms(rng, name, k):
    model, x, p, y, theta = _trained(rng, name, k=k)
    for j in _support_records(model, theta, p, y):
        w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0])[0]
        res = attacks.informed(model, IDENTITY, theta, p, y, w, l2=0.5)
        np.testing.assert_allclose(res.x_hat, x[j], rtol=1e-6, atol=1e-7)
        if name == "ridge":
            np.testing.assert_allclose(res.y_hat, y[j], rtol=1e-6)
        else:
            assert int(res.y_hat) == int(y[j])


def test_traceless_deletion_falls_back(rng):
    """An SVM record past the margin does not move θ: both attacks answer the fallback."""
    model, x, p, y, theta = _trained(rng, "svm", k=3, n=80, l2=0.05)
    norms = jax.vmap(lambda f, t: jnp.linalg.norm(models.per_example_grad(model, theta, f, t)))(
        p, y
    )
    j = int(np.flatnonzero(np.asarray(norms) == 0)[0])
    w = unlearning.deletion_masks(jnp.asarray([j]), p.shape[0])[0]
    after = unlearning.unlearn_retrain(model, theta, p, y, w, l2=0.05).params
    np.testing.assert_array_equal(after, theta)
    fallback = attacks.avg(jnp.asarray(x), y, model.task, 3)
    matvec = attacks.public_hessian_matvec(model, theta, p, n_train=80, l2=0.05, public_labels=y)
    for res in (
        attacks.hrec(model, IDENTITY, theta, after, matvec, fallback=fallback),
        attacks.informed(model, IDENTITY, theta, p, y, w, l2=0.05, fallback=fallback),
    ):
        np.testing.assert_array_equal(res.x_hat, fallback.x_hat)
        assert int(res.y_hat) == int(fallback.y_hat) and float(res.score) == 0
    # A record that did move θ is not replaced.
    k = _support_records(model, theta, p, y, 1)[0]
    after, matvec, _ = _newton_step(model, theta, p, y, k, l2=0.05)
    res = attacks.hrec(model, IDENTITY, theta, after, matvec, fallback=fallback)
    np.testing.assert_allclose(res.x_hat, x[k], rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="public_labels"):
        attacks.public_hessian_matvec(model, theta, p, n_train=80, l2=0.05)


def test_top_singular_pair_matches_svd(rng):
    g = np.outer(rng.normal(size=30), rng.normal(size=5)) + 0.05 * rng.normal(size=(30, 5))
    v, score = attacks._top_right_singular(jnp.asarray(g))
    _, s, vt = np.linalg.svd(g)
    assert abs(float(np.asarray(v) @ vt[0])) > 1 - 1e-10
    np.testing.assert_allclose(score, s[0] ** 2 / np.sum(s**2), rtol=1e-10)


def _rff_problem(rng, d=3, f=64):
    fmap = features.rff_features(jax.random.key(3), d, f, 1.0)
    public_x = jnp.asarray(rng.uniform(size=(30, d)))
    return fmap, public_x, fmap.apply(public_x)


def test_inversion_recovers_x_from_its_exact_features(rng):
    fmap, public_x, public_p = _rff_problem(rng)
    xs = jnp.asarray(np.vstack([rng.uniform(size=(3, 3)), [[0.0, 0.4, 1.0]]]))  # one on the box
    invert = attacks.feature_inverter(fmap.apply, public_x, public_p, lower=0.0, upper=1.0)
    recovered = jax.jit(jax.vmap(invert))(fmap.apply(xs))
    np.testing.assert_allclose(recovered, xs, atol=1e-8)


def test_inversion_jit_vmap_dtype_and_errors(rng):
    fmap, public_x, public_p = _rff_problem(rng)
    targets = fmap.apply(jnp.asarray(rng.uniform(size=(2, 3))))
    kw = {"lower": 0.0, "upper": 1.0, "steps": 20}

    def one(t):
        starts = attacks.inversion_starts(t, public_x, public_p, num_nearest=1)
        return attacks.invert_features(fmap.apply, t, starts, **kw)

    batched = jax.jit(jax.vmap(one))(targets)
    single = jax.jit(one)
    for b in range(2):
        np.testing.assert_allclose(batched.x_hat[b], single(targets[b]).x_hat, atol=1e-12)
    cos32 = jax.jit(
        lambda t, s: attacks.invert_features(fmap.apply, t, s, objective="cosine", **kw)
    )(targets[0].astype(jnp.float32), public_x[:2].astype(jnp.float32))
    assert cos32.x_hat.dtype == jnp.float32 and float(cos32.loss) < 0.05
    for bad, needle in (
        ({"objective": "l1"}, "objective"),
        ({"steps": 0}, "steps"),
        ({"learning_rate": -1.0}, "learning_rate"),
    ):
        with pytest.raises(ValueError, match=needle):
            attacks.invert_features(fmap.apply, targets[0], public_x[:2], **(kw | bad))
    with pytest.raises(ValueError, match="starts"):
        attacks.invert_features(fmap.apply, targets[0], public_x[0], **kw)
    with pytest.raises(ValueError, match="invert"):
        attacks.hrec(models.softmax_model(3), fmap, jnp.zeros((65, 3)), jnp.ones((65, 3)), None)


def test_gradmatch_finds_record_and_label_without_knowing_it(rng):
    model, x, p, y, theta = _trained(rng, "softmax", k=3)
    lo, hi = float(x.min()), float(x.max())

    def loss_fn(t, xx, yy):
        return models.loss(model, t, IDENTITY.apply(xx), yy)

    starts = jnp.mean(jnp.asarray(x), axis=0, keepdims=True)

    @jax.jit
    def attack(j):
        after, matvec, _ = _newton_step(model, theta, p, y, j)
        return attacks.gradmatch(
            loss_fn, theta, after, matvec, starts, jnp.arange(3), lower=lo, upper=hi, steps=400
        )

    for j in (4, 9):
        res = attack(j)
        assert _cos(res.x_hat, x[j]) > 0.999 and float(res.score) > 0.999
        assert int(res.y_hat) == int(y[j])
    after, matvec, _ = _newton_step(model, theta, p, y, 4)
    with pytest.raises(ValueError, match="candidate_labels"):
        attacks.gradmatch(loss_fn, theta, after, matvec, starts, jnp.asarray(1), lower=lo, upper=hi)


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
