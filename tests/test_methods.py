"""Approximate unlearning, SISA, sequences, multi-record requests and the DP defences (DESIGN §3.5,
§3.6): each against NumPy float64 or an identity that must hold, on small problems."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from conftest import IDENTITY, make_problem
from jaxrecon import (
    attacks,
    data,
    defenses,
    models,
    pipeline,
    reconstruction,
    scenario,
    unlearners,
)
from jaxrecon.errors import InputError


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def _fitted(digits, model="logistic", n_train=150, **kw):
    sc = scenario.make_scenario(digits, model=model, key=jax.random.key(0), n_train=n_train, **kw)
    return sc, jax.jit(scenario.fit)(sc).params


def _retrain(name, p, y, w, l2=1.0, start=None):
    grad = ref.logistic_grad if name == "logistic" else ref.softmax_grad
    hess = ref.logistic_hessian if name == "logistic" else ref.softmax_hessian
    start = np.zeros(p.shape[1]) if start is None else start
    return ref.newton(lambda t: grad(t, p, y, l2, w), lambda t: hess(t, p, l2, w), start)


def test_newton_removal_with_the_servers_hessian_makes_hrec_exact(digits):
    """θ⁻ = θ⁺ − H₋(θ⁺)⁻¹∇L₋(θ⁺) and an attacker who knows H₋(θ⁺): g = ∇ℓ(θ⁺; z_j) exactly."""
    sc, theta = _fitted(digits)
    deleted = np.array([3, 77])
    after = unlearners.make_unlearn(sc, theta, "newton")(deleted)
    p = np.asarray(sc.train.features)
    for b, j in enumerate(deleted):
        w = np.ones(len(p))
        w[j] = 0
        hess = jnp.asarray(ref.logistic_hessian(np.asarray(theta), p, 1.0, w))
        res = attacks.hrec(sc.model, IDENTITY, theta, after.params[b], lambda v, h=hess: h @ v)
        x = np.asarray(sc.train.x[j])
        cos = float(res.x_hat @ x / np.linalg.norm(res.x_hat) / np.linalg.norm(x))
        assert cos > 1 - 1e-9
    assert np.all(np.asarray(after.exact_distance) > 0)


@pytest.mark.parametrize("method", ["gradient-ascent", "finetune"])
def test_first_order_methods_take_the_steps_they_say(digits, method):
    sc, theta = _fitted(digits)
    lr = 1e-3
    out = unlearners.make_unlearn(sc, theta, method, steps=3, lr=lr)(np.array([5]))
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    w = np.ones(len(y))
    w[5] = 0
    t = np.asarray(theta)
    for _ in range(3):
        if method == "finetune":
            t = t - lr * ref.logistic_grad(t, p, y, 1.0, w)
        else:
            t = t + lr * ref.logistic_grad(t, p, y, 0.0, 1 - w)
    np.testing.assert_allclose(out.params[0], t, rtol=1e-10)
    exact = _retrain("logistic", p, y, w, start=np.asarray(theta))
    expected = np.linalg.norm(np.asarray(out.params[0]) - exact) / np.linalg.norm(exact)
    np.testing.assert_allclose(out.exact_distance[0], expected, rtol=1e-6)


def test_descent_to_delete_noise_has_its_calibrated_scale(digits):
    """Released θ⁻ minus the unnoised iterate ~ N(0, σ²I), σ = z(ε, δ)·γ^T·G/λ."""
    sc, theta = _fitted(digits)
    unlearner = unlearners.make_unlearn(sc, theta, "descent-to-delete", epsilon=2.0, steps=4)
    deleted = jnp.arange(40)
    released = unlearner(deleted).params
    plain = (
        unlearners.UNLEARNING["descent-to-delete"]
        .unlearn(unlearner.plan, sc, unlearner.prepared, deleted, **dict(unlearner.options))
        .params
    )
    sigma = unlearner.privacy.noise_std
    noise = np.asarray(released - plain).ravel()  # 40 × 65 draws
    assert abs(noise.std() / sigma - 1) < 0.05 and abs(noise.mean()) < 0.05 * sigma
    gradient_bound = np.sqrt(64 + 1) * 1.0  # ‖p‖ <= √65 on the [0, 1] box, |ℓ'| <= 1
    assert unlearner.privacy.sensitivity <= gradient_bound / 1.0
    z = defenses.gaussian_noise_multiplier(2.0, 1e-5)
    np.testing.assert_allclose(sigma, z * unlearner.privacy.sensitivity, rtol=1e-12)


def test_descent_to_delete_iterate_lies_within_its_sensitivity_of_retraining(digits):
    """Before noise, T steps with 2/(λ + M) land within γ^T·G/λ of the retrained optimum."""
    sc, theta = _fitted(digits)
    unlearner = unlearners.make_unlearn(sc, theta, "descent-to-delete", epsilon=1.0, steps=5)
    deleted = jnp.arange(6)
    plain = (
        unlearners.UNLEARNING["descent-to-delete"]
        .unlearn(unlearner.plan, sc, unlearner.prepared, deleted, **dict(unlearner.options))
        .params
    )
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    for b in range(6):
        w = np.ones(len(y))
        w[b] = 0
        exact = _retrain("logistic", p, y, w, start=np.asarray(theta))
        assert np.linalg.norm(np.asarray(plain[b]) - exact) <= unlearner.privacy.sensitivity


def test_output_perturbation_noise_equals_dp_accounting(digits):
    """σ = z·2G/λ with z from dp_accounting's own calibration (privacy-loss distributions)."""
    import dp_accounting
    from dp_accounting import pld

    sc, theta = _fitted(digits, model="softmax")
    unlearner = unlearners.make_unlearn(
        sc, theta, defense="output-perturbation", epsilon=1.0, delta=1e-5
    )
    z = dp_accounting.calibrate_dp_mechanism(
        pld.PLDAccountant, dp_accounting.GaussianDpEvent, 1.0, 1e-5
    )
    gradient_bound = np.sqrt(2) * np.sqrt(65)  # softmax ‖s − e_y‖ <= √2, ‖p‖ <= √65
    np.testing.assert_allclose(unlearner.privacy.sensitivity, 2 * gradient_bound, rtol=1e-12)
    np.testing.assert_allclose(unlearner.privacy.noise_std, z * 2 * gradient_bound, rtol=1e-5)
    before = np.asarray(unlearner.released - unlearner.params).ravel()
    assert abs(before.std() / unlearner.privacy.noise_std - 1) < 0.1


def test_certified_bound_holds_and_the_noise_has_its_scale(digits):
    """The data-dependent residual bound bounds the retained gradient after Newton removal, and
    b (the objective perturbation) has the configured std."""
    sc, theta = _fitted(digits, l2=50.0)
    unlearner = unlearners.make_unlearn(sc, theta, "certified", epsilon=1e6)
    out = unlearner(np.arange(5))
    system = unlearner.prepared.state.system
    b = np.asarray(system.linear).ravel()
    assert abs(b.std() / unlearner.privacy.noise_std - 1) < 0.25  # 65 draws
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    for j in range(5):
        w = np.ones(len(y))
        w[j] = 0
        grad = ref.logistic_grad(np.asarray(out.params[j]), p, y, 50.0, w) + b
        assert np.linalg.norm(grad) <= float(out.residual_bound[j]) * (1 + 1e-9)
    assert np.all(np.asarray(out.residual_bound) <= unlearner.privacy.sensitivity)


def test_fisher_bound_on_a_two_input_toy_equals_its_closed_form(rng):
    """Logistic on x in R², p = [x, 1]: ∂(∇ℓ_j)/∂x = (σ(z) − y) E + σ(1 − σ) p θ_xᵀ
    (E = [I; 0]), J = −H⁻¹ of it, and the bound is d·σ²/‖J‖_F² (d = 2). (Ridge, the other
    closed form, has no finite sensitivity, so output perturbation refuses it.)"""
    x, _, y = make_problem(rng, n=30, d=2, task="binary")
    ds = data.Dataset("toy", np.asarray(x), np.asarray(y), 2, None, -5.0, 5.0)
    roles = data.Split(np.arange(20), np.arange(20, 29), np.arange(29, 30))
    sc = scenario.make_scenario(ds, model="logistic", key=jax.random.key(0), roles=roles)
    theta = np.asarray(scenario.fit(sc).params)
    with pytest.raises(InputError, match="defense"):
        unlearners.fisher_bounds(unlearners.make_unlearn(sc, theta), jnp.arange(2))
    unlearner = unlearners.make_unlearn(sc, theta, defense="output-perturbation", epsilon=1.0)
    bounds = np.asarray(unlearners.fisher_bounds(unlearner, jnp.arange(3)))
    pt, yt = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    h = ref.logistic_hessian(theta, pt, 1.0, np.ones(20))
    sigma = unlearner.privacy.noise_std
    for j in range(3):
        s = ref.sigmoid(pt[j] @ theta)
        mixed = (s - yt[j]) * np.vstack([np.eye(2), np.zeros((1, 2))])
        mixed += s * (1 - s) * np.outer(pt[j], theta[:2])
        jac = -np.linalg.solve(h, mixed)
        np.testing.assert_allclose(bounds[j], 2 * sigma**2 / np.sum(jac * jac), rtol=1e-8)


def test_ridge_rejects_lipschitz_defences(digits):
    sc, theta = _fitted(digits, model="ridge")
    for kwargs in ({"defense": "output-perturbation", "epsilon": 1.0},):
        with pytest.raises(InputError, match="bounded slope"):
            unlearners.make_unlearn(sc, theta, **kwargs)
    with pytest.raises(InputError, match="bounded slope"):
        unlearners.make_unlearn(sc, theta, "descent-to-delete")


def test_sisa_retrains_only_the_shard_of_the_record(digits):
    sc, theta = _fitted(digits, n_train=120)
    unlearner = unlearners.make_unlearn(sc, theta, "sisa", shards=3)
    shard_of = np.asarray(unlearner.prepared.state.shard_of)
    out = unlearner(np.array([7]))
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    s = shard_of[7]
    w = (shard_of == s).astype(float)
    w[7] = 0
    np.testing.assert_allclose(out.params[0, s], _retrain("logistic", p, y, w), rtol=1e-9)
    others = [t for t in range(3) if t != s]
    np.testing.assert_array_equal(
        np.asarray(out.params)[0, others], np.asarray(unlearner.params)[others]
    )
    recon = reconstruction.make_attack(sc, unlearner.released, ["hrec"])(out.params, [7])
    x = np.asarray(sc.train.x[7])
    cos = float(recon["hrec"].x_hat[0] @ x / np.linalg.norm(recon["hrec"].x_hat[0]))
    assert cos / np.linalg.norm(x) > 0.9  # the shard model of 40 records gives it away


def test_sequence_releases_equal_retraining_of_the_retained_set(digits):
    sc, theta = _fitted(digits, n_train=100)
    unlearner = unlearners.make_unlearn(sc, theta)
    seq = jax.jit(unlearners.unlearn_sequence)(unlearner, jnp.asarray([4, 9, 30]))
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    w = np.ones(len(y))
    for t, j in enumerate([4, 9, 30]):
        w[j] = 0
        np.testing.assert_allclose(seq.after[t], _retrain("logistic", p, y, w), rtol=1e-9)
        expected_before = theta if t == 0 else seq.after[t - 1]
        np.testing.assert_array_equal(seq.before[t], expected_before)
    # Continuing from the carry equals one longer sequence.
    first = unlearners.unlearn_sequence(unlearner, jnp.asarray([4, 9]))
    rest = unlearners.unlearn_sequence(unlearner, jnp.asarray([30]), first.carry, first.after[-1])
    np.testing.assert_allclose(rest.after[0], seq.after[2], rtol=1e-12)


@pytest.mark.parametrize("model", ["ridge", "softmax"])
def test_requests_of_k_records_equal_retraining_without_them(digits, model):
    """[B, k] deletions: ridge by a rank-k Woodbury update, softmax by the weight mask."""
    sc, theta = _fitted(digits, model=model, n_train=120)
    requests = np.array([[3, 50, 91], [7, 8, 119]])
    after = unlearners.make_unlearn(sc, theta, records=3)(requests)
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    for b, request in enumerate(requests):
        w = np.ones(len(y))
        w[request] = 0
        expected = (
            ref.ridge_solve(p, y, 1.0, w)
            if model == "ridge"
            else _retrain(model, p, y, w, start=np.asarray(theta))
        )
        np.testing.assert_allclose(after.params[b], expected, rtol=1e-9, atol=1e-11)


def test_multi_record_decode_separates_a_sum_of_records(rng):
    k, model = 3, models.softmax_model(5)
    theta = jnp.asarray(0.3 * rng.normal(size=(7, 5)))
    p = np.concatenate([rng.normal(size=(k, 6)), np.ones((k, 1))], axis=1)
    labels = [0, 2, 4]
    grad = sum(
        models.per_example_grad(model, theta, jnp.asarray(p[r]), labels[r]) for r in range(k)
    )
    p_hat, y_hat, score = attacks.decode_records(model, theta, grad, k)
    order = np.argsort(np.asarray(y_hat))
    np.testing.assert_allclose(np.asarray(p_hat)[order], p, rtol=1e-7, atol=1e-8)
    assert sorted(np.asarray(y_hat).tolist()) == labels and float(score[0]) > 1 - 1e-10


def test_every_method_runs_end_to_end_and_reports_its_distance():
    distances = {}
    for method in unlearners.UNLEARNING:
        config = pipeline.RunConfig(
            model="logistic", unlearning=method, n_train=150, deletions=3, shards=3
        )
        s = pipeline.run(config, progress=False).summary
        distances[method] = s["unlearning"]["median_exact_distance"]
        assert s["unlearning"]["kernel"] and np.isfinite(s["attacks"]["hrec"]["cosine_median"])
        assert ("privacy" in s) == (method in ("certified", "descent-to-delete"))
    assert distances["exact"] == 0 and distances["sisa"] == 0
    assert 0 < distances["newton"] < distances["finetune"]


def test_multi_record_and_sequential_runs_write_per_record_rows(tmp_path):
    config = pipeline.RunConfig(model="softmax", n_train=200, deletions=4, deletions_per_request=2)
    result = pipeline.run(config, progress=False)
    assert len(result.rows) == 8 and [r["request"] for r in result.rows[:4]] == [0, 0, 1, 1]
    assert result.summary["attacks"]["hrec"]["cosine_median"] > 0.9
    pipeline.write_outputs(result, str(tmp_path / "k2"))
    config = pipeline.RunConfig(model="logistic", n_train=200, deletions=6, chunk_size=4,
                                sequential=True)  # fmt: skip
    result = pipeline.run(config, progress=False)
    assert result.summary["unlearning"]["max_grad_norm"] <= 1e-8
    assert result.summary["attacks"]["hrec"]["cosine_median"] > 0.9


def test_output_perturbation_protects_at_small_epsilon_and_not_at_huge_epsilon():
    base = dict(model="logistic", n_train=200, deletions=8)
    plain = pipeline.run(pipeline.RunConfig(**base), progress=False).summary["attacks"]
    noisy = pipeline.RunConfig(**base, defense="output-perturbation", epsilon=1.0)
    s = pipeline.run(noisy, progress=False).summary
    assert s["attacks"]["hrec"]["cosine_median"] < plain["maxdiff"]["cosine_median"]
    assert s["privacy"]["fisher_mse_bound_median"] > 0
    loose = pipeline.RunConfig(**base, defense="output-perturbation", epsilon=1e12)
    s = pipeline.run(loose, progress=False).summary
    assert abs(s["attacks"]["hrec"]["cosine_median"] - plain["hrec"]["cosine_median"]) < 0.02
