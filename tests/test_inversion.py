"""Embedding inversion (random Fourier features) and gradient matching recover records."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import IDENTITY, cosine, newton_step, trained_glm
from jaxrecon import attacks, features, models


def test_inversion_recovers_x_from_exact_rff_features():
    key = jax.random.key(0)
    fmap = features.rff_features(key, 3, 64, 1.5)
    rng = np.random.default_rng(1)
    public = jnp.asarray(rng.uniform(-1, 1, size=(50, 3)))
    x = jnp.asarray([0.3, -0.4, 0.1])
    invert = attacks.feature_inverter(fmap.apply, public, fmap.apply(public), lower=-1.0, upper=1.0)
    np.testing.assert_allclose(invert(fmap.apply(x)), x, atol=1e-6)


def test_inversion_vmaps_over_deletions():
    fmap = features.rff_features(jax.random.key(2), 2, 32, 1.0)
    rng = np.random.default_rng(3)
    public = jnp.asarray(rng.uniform(0, 1, size=(40, 2)))
    xs = jnp.asarray(rng.uniform(0.2, 0.8, size=(4, 2)))
    invert = attacks.feature_inverter(fmap.apply, public, fmap.apply(public), lower=0.0, upper=1.0)
    batched = jax.vmap(invert)(fmap.apply(xs))
    for b in range(4):
        np.testing.assert_allclose(batched[b], invert(fmap.apply(xs[b])), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(batched, xs, atol=1e-5)


def test_gradmatch_finds_record_and_label_with_exact_gradient():
    """With g = ∇ℓ(θ⁺; z) exactly (Ĥ = I, θ⁻ − θ⁺ = g), the record maximises the cosine."""
    model = models.softmax_model(3)
    fmap = features.identity_features()
    rng = np.random.default_rng(4)
    theta = jnp.asarray(rng.normal(size=(3, 3)))
    x, y = jnp.asarray([0.6, 0.2]), 2
    g = models.per_example_grad(model, theta, fmap.apply(x), y)
    res = attacks.gradmatch(
        lambda t, xx, yy: models.loss(model, t, fmap.apply(xx), yy),
        theta,
        theta + g,
        lambda v: v,
        jnp.asarray([[0.5, 0.5]]),
        jnp.arange(3, dtype=jnp.int32),
        lower=0.0,
        upper=1.0,
        steps=500,
    )
    assert int(res.y_hat) == y
    assert float(res.score) > 1 - 1e-6
    np.testing.assert_allclose(res.x_hat, x, atol=1e-3)


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
    model, x, p, y, theta = trained_glm(rng, "softmax", k=3)
    lo, hi = float(x.min()), float(x.max())

    def loss_fn(t, xx, yy):
        return models.loss(model, t, IDENTITY.apply(xx), yy)

    starts = jnp.mean(jnp.asarray(x), axis=0, keepdims=True)

    @jax.jit
    def attack(j):
        after, matvec, _ = newton_step(model, theta, p, y, j)
        return attacks.gradmatch(
            loss_fn, theta, after, matvec, starts, jnp.arange(3), lower=lo, upper=hi, steps=400
        )

    for j in (4, 9):
        res = attack(j)
        assert cosine(res.x_hat, x[j]) > 0.999 and float(res.score) > 0.999
        assert int(res.y_hat) == int(y[j])
    after, matvec, _ = newton_step(model, theta, p, y, 4)
    with pytest.raises(ValueError, match="candidate_labels"):
        attacks.gradmatch(loss_fn, theta, after, matvec, starts, jnp.asarray(1), lower=lo, upper=hi)


# --- Batched inversion of random Fourier features (`attacks.invert_rff`) --------------------


def _rff_batch(rng, b=4, d=5, f=96, s=2):
    """An RFF map, inputs x [b, d] in the unit box (one with coordinates on the box) and starts
    [b, s, d]: x itself shifted by ~0.05 (in the basin) and uniform draws."""
    fmap = features.rff_features(jax.random.key(7), d, f, 1.0)
    x = rng.uniform(0.05, 0.95, size=(b, d))
    x[0, :2] = [0.0, 1.0]
    starts = np.stack(
        [x + 0.05 * rng.normal(size=x.shape)] + [rng.uniform(size=x.shape)] * (s - 1), axis=1
    )
    return fmap, jnp.asarray(x), jnp.asarray(starts)


def _loss_np(fmap, x, target):
    return np.sum((np.asarray(fmap.apply(x)) - np.asarray(target)) ** 2, axis=-1)


def test_invert_rff_recovers_x_to_round_off_and_one_phase_step_is_exact(rng):
    fmap, x, starts = _rff_batch(rng)
    targets = fmap.apply(x)
    res = jax.jit(lambda t, s: attacks.invert_rff(fmap.params, t, s, lower=0.0, upper=1.0))(
        targets, starts
    )
    np.testing.assert_allclose(res.x_hat, x, atol=1e-10)
    assert float(jnp.max(res.loss)) < 1e-24
    # Close enough that the nearest arccos branch is the right one for all F phases, one
    # least-squares phase step is exact (no Gauss–Newton at all)...
    inner = x[1:]
    near = (inner + 1e-4 * jnp.asarray(rng.normal(size=inner.shape)))[:, None, :]
    one = attacks.invert_rff(
        fmap.params, targets[1:], near, lower=0.0, upper=1.0, phase_steps=1, gn_steps=0
    )
    np.testing.assert_allclose(one.x_hat, inner, atol=1e-12)
    # ...while one Gauss–Newton step from there is only quadratically close.
    gn = attacks.invert_rff(
        fmap.params, targets[1:], near, lower=0.0, upper=1.0, phase_steps=0, gn_steps=1
    )
    assert 1e-11 < float(jnp.max(jnp.abs(gn.x_hat - inner))) < 1e-6


def test_invert_rff_batch_equals_vmap_and_loop_and_reports_its_loss(rng):
    fmap, x, starts = _rff_batch(rng, b=6, s=3)
    noise = np.zeros((6, 97))
    noise[:, :-1] = 0.02 * rng.normal(size=(6, 96)) / np.sqrt(96)
    targets = fmap.apply(x) + jnp.asarray(noise)
    kw = {"lower": 0.0, "upper": 1.0, "keep": 2}
    invert = jax.jit(lambda t, s: attacks.invert_rff(fmap.params, t, s, **kw))
    batched = invert(targets, starts)
    vmapped = jax.jit(jax.vmap(invert))(targets, starts)
    nested = invert(targets.reshape(2, 3, 97), starts.reshape(2, 3, 3, 5))
    for b in range(6):
        single = invert(targets[b], starts[b])
        np.testing.assert_allclose(batched.x_hat[b], single.x_hat, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(vmapped.x_hat, batched.x_hat, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(nested.x_hat.reshape(6, 5), batched.x_hat, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(batched.loss, _loss_np(fmap, batched.x_hat, targets), rtol=1e-9)
    assert np.all(batched.x_hat >= 0) and np.all(batched.x_hat <= 1)
    x32 = invert(targets.astype(jnp.float32), starts.astype(jnp.float32))
    assert x32.x_hat.dtype == jnp.float32 and x32.loss.dtype == jnp.float32


def test_rff_and_generic_inversion_reach_the_same_constrained_minimum(rng):
    """Noisy p̂ (the HRec case): the batched RFF path and the autodiff path (Adam, then
    Gauss–Newton) from the same starts stop at the same box-constrained stationary point."""
    fmap, public_x, public_p = _rff_problem(rng)
    xs = jnp.asarray(np.vstack([rng.uniform(size=(3, 3)), [[0.0, 0.5, 1.0]]]))
    noise = np.zeros((4, 65))
    noise[:, :-1] = 0.05 * rng.normal(size=(4, 64)) / 8
    targets = fmap.apply(xs) + jnp.asarray(noise)
    kw = {"lower": 0.0, "upper": 1.0}
    fast = attacks.feature_inverter(fmap.apply, public_x, public_p, **kw)
    slow = attacks.feature_inverter(fmap.apply, public_x, public_p, method="generic", **kw)
    x_fast, x_slow = fast(targets), jax.jit(jax.vmap(slow))(targets)
    np.testing.assert_allclose(x_fast, x_slow, atol=1e-6)
    np.testing.assert_allclose(
        _loss_np(fmap, x_fast, targets), _loss_np(fmap, x_slow, targets), rtol=1e-9
    )
    assert np.any((x_fast == 0) | (x_fast == 1))  # a coordinate held on the box


def test_invert_rff_bad_arguments_raise_naming_them(rng):
    fmap, x, starts = _rff_batch(rng, b=2)
    targets = fmap.apply(x)
    kw = {"lower": 0.0, "upper": 1.0}
    for args, extra, needle in (
        ((fmap.params.weights, targets, starts), {}, "params"),
        ((fmap.params, targets[:, :-1], starts), {}, "targets"),
        ((fmap.params, targets, starts[:, :, :-1]), {}, "starts"),
        ((fmap.params, targets, starts[0]), {}, "starts"),
        ((fmap.params, targets, starts), {"keep": 0}, "keep"),
        ((fmap.params, targets, starts), {"cg_steps": 0}, "cg_steps"),
        ((fmap.params, targets, starts), {"phase_steps": -1}, "phase_steps"),
    ):
        with pytest.raises(ValueError, match=needle) as info:
            attacks.invert_rff(*args, **(kw | extra))
        assert "\n" not in str(info.value)
    public_p = fmap.apply(x)
    with pytest.raises(ValueError, match="method"):
        attacks.feature_inverter(fmap.apply, x, public_p, method="newton", **kw)
    with pytest.raises(ValueError, match="method"):
        attacks.feature_inverter(lambda v: fmap.apply(v), x, public_p, method="rff", **kw)
    assert features.rff_params_of(fmap.apply) is fmap.params
    assert features.rff_params_of(lambda v: fmap.apply(v)) is None


def test_auto_keeps_the_generic_path_when_features_barely_outnumber_inputs(rng):
    """F < RFF_INVERSION_MIN_RATIO·d: the phase step's least squares would fit p̂'s noise, so
    "auto" is the autodiff path, bit for bit."""
    d, f = 8, 16
    fmap = features.rff_features(jax.random.key(3), d, f, 1.0)
    public_x = jnp.asarray(rng.uniform(size=(20, d)))
    public_p = fmap.apply(public_x)
    assert f < attacks.RFF_INVERSION_MIN_RATIO * d
    target = fmap.apply(jnp.asarray(rng.uniform(size=d))) + 0.01
    kw = {"lower": 0.0, "upper": 1.0, "steps": 20}
    auto = attacks.feature_inverter(fmap.apply, public_x, public_p, **kw)
    generic = attacks.feature_inverter(fmap.apply, public_x, public_p, method="generic", **kw)
    np.testing.assert_array_equal(jax.jit(auto)(target), jax.jit(generic)(target))
