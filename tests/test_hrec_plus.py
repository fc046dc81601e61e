"""hrec-plus (issue 13): every ingredient off is HRec exactly; the path-averaged Hessian is the
exact secant; the shrinkage estimate matches its closed form and lowers the Hessian's error where
the truth is known; the sign rule never touches a well-determined answer and mends a noisy one.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from conftest import IDENTITY, cosine, load_experiment, trained_glm
from jaxrecon import attacks, data, models, reconstruction, scenario, solvers, unlearners
from jaxrecon.errors import InputError

OFF = {"box": False, "shrinkage": False, "sign_rule": False}


@pytest.fixture(scope="module")
def digits():
    return scenario.make_scenario(
        data.load_digits(), model="softmax", key=jax.random.key(0), n_train=300
    )


@pytest.mark.parametrize("hessian", ["auto", "matrix-free"])
def test_every_ingredient_off_is_hrec(digits, hessian):
    theta = scenario.fit(digits).params
    deleted = scenario.draw_deletions(digits, 6)
    after = unlearners.make_unlearn(digits, theta)(deleted)
    state = reconstruction.prepare_attack(digits, theta, "hrec-plus", **OFF)
    attack = reconstruction.make_attack(
        digits, theta, ["hrec", "hrec-plus"], states={"hrec-plus": state}, hessian=hessian
    )
    out = attack(after.params, deleted)
    for field in ("x_hat", "y_hat", "score"):
        np.testing.assert_array_equal(getattr(out["hrec"], field), getattr(out["hrec-plus"], field))


def test_hrec_plus_on_digits_runs_every_ingredient_and_knows_the_label(digits):
    theta = scenario.fit(digits).params
    deleted = scenario.draw_deletions(digits, 4)
    after = unlearners.make_unlearn(digits, theta)(deleted)
    state = reconstruction.prepare_attack(digits, theta, "hrec-plus", path=2, refine=3)
    assert 0 <= float(state.alpha) <= 1
    attacker = scenario.make_attacker(digits, label_known=True)
    attack = reconstruction.make_attack(
        digits, theta, ["hrec-plus"], attacker, states={"hrec-plus": state}
    )
    out = attack(after.params, deleted)["hrec-plus"]
    lower, upper = digits.box
    assert np.all((np.asarray(out.x_hat) >= lower) & (np.asarray(out.x_hat) <= upper))
    np.testing.assert_array_equal(out.y_hat, digits.train.labels[deleted])
    assert min(cosine(out.x_hat[i], digits.train.x[d]) for i, d in enumerate(deleted)) > 0.9


@pytest.mark.parametrize(
    "options, needle",
    [
        ({"shrinkage": "magic"}, "shrinkage"),
        ({"shrinkage": 1.5}, "shrinkage"),
        ({"path": -1}, "path"),
        ({"box": "yes"}, "box"),
        ({"probes": 3}, "probes"),
    ],
)
def test_hrec_plus_rejects_bad_options(digits, options, needle):
    with pytest.raises(InputError, match=needle):
        reconstruction.prepare_attack(digits, digits.model.init(65), "hrec-plus", **options)


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_path_averaged_hessian_of_exact_retraining_recovers_the_record(rng, name):
    """∫₀¹ H₋(θ⁺ + tδ) dt · δ = ∇L₋(θ⁻) − ∇L₋(θ⁺) = ∇ℓ(θ⁺; z_j) exactly: with the retained
    Hessian the path-averaged HRec is exact for exact retraining, where the one-point Newton
    identity is not."""
    model, x, p, y, theta = trained_glm(rng, name, n=40, d=3, l2=0.1)
    j = 7
    w = jnp.ones(40).at[j].set(0.0)
    after = solvers.fit_newton(model, p, y, l2=0.1, weights=w, init=theta).params

    def hessian_at(t):
        h = models.dense_hessian(model, t, p, l2=0.1, weights=w, labels=y)
        return lambda v: (h @ v.reshape(-1)).reshape(v.shape)

    truth = models.per_example_grad(model, theta, p[j], y[j])
    path = attacks.path_hessian_product(hessian_at, theta, after - theta, 8)
    np.testing.assert_allclose(path, truth, rtol=1e-9, atol=1e-11)
    newton = hessian_at(theta)(after - theta)
    assert np.max(np.abs(newton - truth)) > 1e3 * np.max(np.abs(path - truth))

    def run(points):
        ing = attacks.Ingredients(box=False, shrinkage=False, path=points, sign_rule=False)
        return attacks.hrec_plus(
            model,
            IDENTITY,
            theta,
            after,
            hessian_at(theta),
            ingredients=ing,
            hessian_at=hessian_at,
            public_features=p,
            lower=-10.0,
            upper=10.0,
        )

    np.testing.assert_allclose(run(8).x_hat, x[j], rtol=1e-8, atol=1e-9)
    assert np.max(np.abs(run(0).x_hat - x[j])) > 1e-6


def test_path_average_is_exact_for_quadratic_losses_with_one_point(rng):
    model, _, p, y, theta = trained_glm(rng, "ridge", n=30, d=3)
    delta = jnp.asarray(rng.normal(size=theta.shape))

    def hessian_at(t):
        return lambda v: models.hvp(model, t, p, jnp.ones(30), v) + 0.5 * v

    secant = models.gradient(model, theta + delta, p, y, l2=0.5, weights=jnp.ones(30))
    secant = secant - models.gradient(model, theta, p, y, l2=0.5, weights=jnp.ones(30))
    for points in (1, 3):
        np.testing.assert_allclose(
            attacks.path_hessian_product(hessian_at, theta, delta, points), secant, rtol=1e-12
        )


def _softmax_population(rng, size, k=3, d=4):
    """Inputs, labels, features and a fixed θ of a 3-class softmax model with informative x."""
    centres = rng.normal(size=(k, d)) * 1.5
    y = rng.integers(0, k, size=size)
    x = centres[y] + rng.normal(size=(size, d))
    p = np.concatenate([x, np.ones((size, 1))], axis=1)
    theta = np.concatenate([centres.T, np.zeros((1, k))], axis=0) * 0.8
    return jnp.asarray(p), jnp.asarray(y), jnp.asarray(theta)


def test_ledoit_wolf_intensity_matches_its_closed_form(rng):
    """β² / δ² from the Gram matrix equals the formula on explicitly formed [P, P] matrices."""
    p, y, theta = _softmax_population(rng, 40)
    model = models.softmax_model(3)
    curv = models.curvature_matrices(model, theta, p)
    alpha = attacks.shrinkage_intensity(p, curv, y, 3, block=16)
    pn, cn, yn = np.asarray(p), np.asarray(curv), np.asarray(y)
    xs = np.stack([np.kron(np.outer(pi, pi), ci) for pi, ci in zip(pn, cn, strict=True)])
    s = xs.mean(0)
    means = np.stack([cn[yn == c].mean(0) for c in range(3)])
    t = np.mean([np.kron(np.outer(pi, pi), means[c]) for pi, c in zip(pn, yn, strict=True)], 0)
    beta2 = np.mean([np.sum((xi - s) ** 2) for xi in xs]) / len(xs)
    delta2 = np.sum((s - t) ** 2)
    np.testing.assert_allclose(alpha, min(1.0, beta2 / delta2), rtol=1e-10)


def _dirichlet_curvatures(rng, size, k, concentration):
    """Softmax-like curvatures diag(s) − ssᵀ with s ~ Dirichlet(concentration): [size, k, k]."""
    s = rng.dirichlet(concentration, size=size)
    return np.einsum("ia,ab->iab", s, np.eye(k)) - s[:, :, None] * s[:, None, :]


def test_shrinkage_lowers_the_hessian_error_where_the_truth_is_known(rng):
    """X_k = (p_k p_kᵀ) ⊗ C_k with p | g ~ N(μ_g, I) (bias coordinate 1) and C_k | g drawn
    independently of p: H = Σ_g π_g E[ppᵀ | g] ⊗ E[C | g] in closed form (E[C | g] from 200,000
    draws). The class-mean target is then unbiased, and from m = 30 samples of a P = 5·3
    Hessian the Ledoit–Wolf intensity lowers ‖Ĥ − H‖_F on average over draws."""
    k, d = 3, 4
    centres = rng.normal(size=(k, d))
    alphas = [np.full(k, 0.3) + 3 * np.eye(k)[g] for g in range(k)]
    mean_c = [_dirichlet_curvatures(rng, 200_000, k, a).mean(0) for a in alphas]
    truth = (
        sum(
            np.kron(np.outer(np.append(mu, 1), np.append(mu, 1)) + np.diag([1.0] * d + [0.0]), c)
            for mu, c in zip(centres, mean_c, strict=True)
        )
        / k
    )

    def draw(m):
        g = np.arange(m) % k
        x = centres[g] + rng.normal(size=(m, d))
        p = jnp.asarray(np.concatenate([x, np.ones((m, 1))], axis=1))
        curv = np.stack([_dirichlet_curvatures(rng, 1, k, alphas[c])[0] for c in g])
        return p, jnp.asarray(curv), jnp.asarray(g)

    def errors(m):
        p, curv, g = draw(m)
        alpha = attacks.shrinkage_intensity(p, curv, g, k)
        shrunk = attacks.shrunk_curvatures(curv, g, k, alpha)
        hess = [
            models.hessian_from_curvatures(p, c / m, l2=0.0, param_shape=(d + 1, k))
            for c in (curv, shrunk)
        ]
        return [float(np.linalg.norm(h - truth)) for h in hess] + [float(alpha)]

    small = np.array([errors(30) for _ in range(20)])
    raw, shrunk, alpha = small.mean(0)
    assert 0 < alpha <= 1
    assert shrunk < 0.9 * raw


def test_validation_intensity_is_on_the_grid_and_zero_for_constant_curvature(digits):
    ridge = scenario.make_scenario(
        data.load_digits(), model="ridge", key=jax.random.key(0), n_train=300
    )
    theta = scenario.fit(ridge).params
    state = reconstruction.prepare_attack(ridge, theta, "hrec-plus", shrinkage="ledoit-wolf")
    assert float(state.alpha) == 0.0  # T = S: nothing to shrink toward
    theta = scenario.fit(digits).params
    state = reconstruction.prepare_attack(digits, theta, "hrec-plus")
    assert float(state.alpha) in attacks.SHRINKAGE_GRID


@pytest.mark.parametrize("name", ["ridge", "logistic", "softmax"])
def test_sign_rule_never_changes_a_well_determined_answer(rng, name):
    """Exact gradients of every training record: the rule keeps HRec's division by a₀."""
    model, x, p, y, theta = trained_glm(rng, name, n=50, d=4)
    for j in range(50):
        g = models.per_example_grad(model, theta, p[j], y[j])
        a, _, _ = attacks.gradient_direction(model, g)
        if abs(float(a[-1])) * np.median(np.linalg.norm(p, axis=1)) < 0.5 * float(
            jnp.linalg.norm(a)
        ):
            continue  # a vanishing residual: not well determined (none expected here)
        assert float(attacks.robust_direction(a, p)) == float(a[-1])


def test_sign_rule_takes_the_sign_from_the_public_data_when_the_bias_is_noise(rng):
    """Inputs in a positive box: a direction whose bias coordinate is pure noise gets the sign
    that puts it among the public samples, and the public median norm."""
    x = rng.uniform(0.2, 1.0, size=(200, 6))
    p = jnp.asarray(np.concatenate([x, np.ones((200, 1))], axis=1))
    record = p[3]
    for noise in (1e-9, -1e-9):
        a = 1e-3 * record.at[-1].set(noise)  # ℓ' ≈ 0: the bias coordinate is the noise
        scale = attacks.robust_direction(a, p)
        p_hat = a / scale
        assert cosine(p_hat[:-1], record[:-1]) > 0.999
        np.testing.assert_allclose(
            jnp.linalg.norm(p_hat[:-1]), np.median(np.linalg.norm(x, axis=1)), rtol=1e-12
        )
        plain = a / a[-1]
        assert (cosine(plain[:-1], record[:-1]) > 0) == (noise > 0)


def test_hrec_plus_driver_smoke(tmp_path):
    driver = load_experiment("hrec_plus")
    results = driver.run(driver.get_config(smoke=True))
    row = results["digits softmax"]
    assert set(row["attacks"]) == {"hrec", "avg", "maxdiff", "hrec-plus", "-shrinkage", "+path"}
    assert row["attacks"]["hrec-plus"]["cosine_median"] > row["attacks"]["avg"]["cosine_median"]
    assert row["shrinkage_alpha"]["-shrinkage"] == 0.0
    assert "| digits softmax |" in driver.markdown_table(results)
    driver.plot(results, str(tmp_path / "hrec_plus.png"))
    assert (tmp_path / "hrec_plus.png").stat().st_size > 0


def test_threat_model_driver_smoke(tmp_path):
    driver = load_experiment("threat_model")
    results = driver.run(driver.get_config(smoke=True))
    row = results["digits softmax"]
    assert set(row["budgets"]) == {200} and set(row["n_factor"]) == {0.5}
    assert set(row["shifts"]) == {"noise:0.1"}
    assert row["label"]["known"]["hrec-plus"]["label_accuracy"] == 1.0
    driver.plot(results, str(tmp_path / "threat_model.png"))
    assert "public samples for median 0.9" in driver.markdown_table(results)


def test_budget_for_target_interpolates_in_log_m():
    budget_for = load_experiment("threat_model").budget_for
    medians = {100: 0.8, 1000: 0.95, 10000: 0.99}
    budgets = {m: {"a": {"cosine_median": v}} for m, v in medians.items()}
    # 0.9 is two thirds of the way from 0.8 to 0.95: log m = 2 + 2/3 decades.
    assert abs(budget_for(budgets, "a", 0.9) - 10 ** (2 + 2 / 3)) < 1e-9
    assert budget_for(budgets, "a", 0.5) == 100.0
    assert budget_for(budgets, "a", 0.999) is None


def test_hrec_plus_on_release_pairs_rebuilds_its_hessian_at_each_release(digits):
    """`apply_pairs` (sequential releases) drops the Ĥ prepared at θ⁺ and rebuilds it at each
    pair's own θ⁺: with θ⁺ itself as every pair's first release it matches the prepared one."""
    theta = scenario.fit(digits).params
    deleted = scenario.draw_deletions(digits, 3)
    after = unlearners.make_unlearn(digits, theta)(deleted)
    state = reconstruction.prepare_attack(digits, theta, "hrec-plus", shrinkage=0.4)
    attack = reconstruction.make_attack(digits, theta, ["hrec-plus"], states={"hrec-plus": state})
    direct = attack(after.params, deleted)["hrec-plus"]
    before = jnp.broadcast_to(theta, after.params.shape)
    pairs = jax.jit(lambda a, b, t, d, n: a.apply_pairs(b, t, d, n))(
        attack, before, after.params, deleted, jnp.full(3, digits.n_train)
    )["hrec-plus"]
    np.testing.assert_allclose(pairs.x_hat, direct.x_hat, rtol=1e-9, atol=1e-10)
    np.testing.assert_array_equal(pairs.y_hat, direct.y_hat)
