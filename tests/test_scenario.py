"""The composition layer: policy by model properties, registries, pytrees under jit, scores.

Every number is checked against independent NumPy float64 code (`tests/reference.py`): the
attacker's Hessian in both branches (dense and matrix-free) with the attacker's own n and l2,
training, exact unlearning through the `Unlearner`, and HRec's reconstruction through `Attack`.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from jaxrecon import data, models, pipeline, reconstruction, scenario, unlearners
from jaxrecon.attacks import AttackResult
from jaxrecon.errors import InputError
from jaxrecon.unlearning import UnlearnResult

TOL = ref.TOL[np.float64]


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


def _scenario(digits, model, **kw):
    kw.setdefault("n_train", 200)
    return scenario.make_scenario(digits, model=model, key=jax.random.key(0), **kw)


def _np_public_hessian(model_name, theta, pub, n, l2):
    """Ĥ = ((n−1)/m) Σ_pub ∇²ℓ(θ; p_k) + l2·I from the formulas (DESIGN §3.1-3.2)."""
    m = len(pub)
    w = np.full(m, (n - 1) / m)
    if model_name == "ridge":
        return pub.T @ (w[:, None] * pub) + l2 * np.eye(pub.shape[1])
    if model_name == "logistic":
        return ref.logistic_hessian(theta, pub, l2, w)
    return ref.softmax_hessian(theta, pub, l2, w)


def _np_hrec(model_name, theta, after, hess):
    """p̂ from g = Ĥ(θ⁻ − θ⁺): g/g[-1], or the top singular pair for a matrix θ."""
    g = (hess @ (after - theta).reshape(-1)).reshape(theta.shape)
    if g.ndim == 1:
        return g / g[-1]
    u, s, _ = np.linalg.svd(g, full_matrices=False)
    a = u[:, 0] * s[0]
    return a / a[-1]


@pytest.mark.parametrize(
    "model,features,expected",
    [
        ("ridge", "identity", "woodbury"),
        ("ridge-onehot", "identity", "woodbury"),
        ("logistic", "identity", "chord"),
        ("softmax", "identity", "chord"),
        ("svm", "identity", "newton-cg-cholesky"),
        ("softmax", "rff", "chord-kfac"),
    ],
)
def test_exact_kernel_follows_model_properties(digits, model, features, expected):
    sc = _scenario(digits, model, features=features, rff_dim=900)
    assert unlearners.exact_kernel(sc) == expected
    # Properties, not names: a renamed family is served by the same kernel.
    renamed = scenario.Scenario(**{**sc.__dict__, "model": sc.model._replace(name="custom")})
    assert unlearners.exact_kernel(renamed) == expected


@pytest.mark.parametrize("model", ["ridge", "logistic", "softmax"])
def test_fit_equals_numpy_training(digits, model):
    sc = _scenario(digits, model)
    fit = jax.jit(scenario.fit)(sc)
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    ones = np.ones(len(y))
    if model == "ridge":
        expected = ref.ridge_solve(p, y, 1.0)
    elif model == "logistic":
        expected = ref.newton(
            lambda t: ref.logistic_grad(t, p, y, 1.0, ones),
            lambda t: ref.logistic_hessian(t, p, 1.0, ones),
            np.zeros(p.shape[1]),
        )
    else:
        expected = ref.newton(
            lambda t: ref.softmax_grad(t, p, y, 1.0, ones),
            lambda t: ref.softmax_hessian(t, p, 1.0, ones),
            np.zeros((p.shape[1], 10)),
        )
    np.testing.assert_allclose(fit.params, expected, rtol=TOL["solve"], atol=TOL["solve"])
    assert float(fit.grad_norm) <= 1e-10


@pytest.mark.parametrize("model", ["ridge", "logistic"])
def test_unlearner_equals_numpy_retraining_and_a_loop(digits, model):
    sc = _scenario(digits, model)
    theta = scenario.fit(sc).params
    unlearner = unlearners.make_unlearn(sc, theta)
    deleted = np.array([3, 50, 199])
    batch = unlearner(deleted)
    p, y = np.asarray(sc.train.features), np.asarray(sc.train.labels)
    for b, j in enumerate(deleted):
        w = np.ones(len(y))
        w[j] = 0
        if model == "ridge":
            expected = ref.ridge_solve(p, y, 1.0, w)
        else:
            expected = ref.newton(
                lambda t, w=w: ref.logistic_grad(t, p, y, 1.0, w),
                lambda t, w=w: ref.logistic_hessian(t, p, 1.0, w),
                np.asarray(theta),
            )
        np.testing.assert_allclose(batch.params[b], expected, rtol=1e-9, atol=1e-11)
        alone = unlearner(deleted[b : b + 1])
        np.testing.assert_allclose(batch.params[b], alone.params[0], rtol=1e-12, atol=1e-14)
    assert float(jnp.max(batch.grad_norm)) <= scenario.EXACT_TOL


def test_unlearner_and_attack_compile_once_for_new_deletions(digits):
    """The objects are pytrees: new deletions of the same shape reuse the compiled function,
    and jit of `apply` by hand equals the call."""
    sc = _scenario(digits, "logistic")
    theta = scenario.fit(sc).params
    unlearner = unlearners.make_unlearn(sc, theta)
    attack = reconstruction.make_attack(sc, theta)
    before = (unlearners._unlearn_batch._cache_size(), reconstruction._attack_batch._cache_size())
    outs = []
    for deleted in (np.array([1, 2, 3]), np.array([7, 8, 9]), np.array([4, 90, 150])):
        after = unlearner(deleted)
        outs.append(attack(after.params, deleted))
    after_sizes = (
        unlearners._unlearn_batch._cache_size(),
        reconstruction._attack_batch._cache_size(),
    )
    assert after_sizes == (before[0] + 1, before[1] + 1)
    by_hand = jax.jit(lambda u, d: u.apply(d))(unlearner, jnp.asarray([4, 90, 150]))
    np.testing.assert_array_equal(by_hand.params, unlearner(np.array([4, 90, 150])).params)
    assert not np.allclose(outs[0]["hrec"].x_hat, outs[1]["hrec"].x_hat)


@pytest.mark.parametrize("model", ["ridge", "logistic", "softmax"])
@pytest.mark.parametrize("hessian", ["dense", "matrix-free"])
def test_hrec_uses_the_attackers_n_and_l2_in_both_branches(digits, model, hessian):
    """HRec through `make_attack` equals NumPy HRec with Ĥ built from the attacker's beliefs
    (n = 300, l2 = 2.5 against a truth of 200 and 1): catches m in place of n, a dropped or
    true-valued l2 term, in either branch."""
    sc = _scenario(digits, model)
    theta = scenario.fit(sc).params
    deleted = np.array([0, 17, 120])
    after = unlearners.make_unlearn(sc, theta)(deleted).params
    believer = scenario.make_attacker(sc, n_train=300, l2=2.5)
    out = reconstruction.make_attack(sc, theta, ["hrec"], believer, hessian=hessian)(after, deleted)
    pub = np.asarray(sc.public.features)
    hess = _np_public_hessian(model, np.asarray(theta), pub, 300, 2.5)
    for b in range(len(deleted)):
        p_hat = _np_hrec(model, np.asarray(theta), np.asarray(after[b]), hess)
        np.testing.assert_allclose(out["hrec"].x_hat[b], p_hat[:-1], rtol=1e-8, atol=1e-10)


def test_attacker_hessian_matrix_equals_numpy(digits):
    sc = _scenario(digits, "softmax")
    theta = scenario.fit(sc).params
    believer = scenario.make_attacker(sc, n_train=1000, l2=0.3)
    dense = np.asarray(reconstruction.attacker_hessian(sc, theta, believer))
    pub = np.asarray(sc.public.features)
    expected = _np_public_hessian("softmax", np.asarray(theta), pub, 1000, 0.3)
    np.testing.assert_allclose(dense, expected, rtol=1e-10, atol=1e-10)
    lo, hi = reconstruction.attacker_hessian_extremes(sc, theta, believer)
    eig = np.linalg.eigvalsh(expected)
    np.testing.assert_allclose((lo, hi), (eig[0], eig[-1]), rtol=1e-8)


def test_gradmatch_with_a_known_label_answers_that_label(digits):
    sc = _scenario(digits, "softmax", n_train=100)
    theta = scenario.fit(sc).params
    deleted = np.array([5, 60])
    after = unlearners.make_unlearn(sc, theta)(deleted).params
    knows = scenario.make_attacker(sc, label_known=True)
    out = reconstruction.make_attack(sc, theta, ["gradmatch"], knows)(after, deleted)
    np.testing.assert_array_equal(out["gradmatch"].y_hat, np.asarray(sc.train.labels)[deleted])
    assert float(jnp.min(out["gradmatch"].score)) > 0.9  # cosine of the matched gradient


def test_a_new_unlearning_method_and_attack_are_one_registry_entry_each(digits, monkeypatch):
    """Influence removal (one Newton step with H⁺) and a zero attack, registered and run."""

    def prepare(sc, theta):
        hess = models.dense_hessian(
            sc.model, theta, sc.train.features, l2=sc.l2, weights=jnp.ones(sc.n_train)
        )
        inverse = jnp.linalg.inv(hess)
        plan = unlearners.Plan("newton-step", reference_kernel="chord")
        exact = unlearners.make_unlearn(sc, theta).prepared.state  # exact reference's system
        prepared = unlearners.Prepared(theta, theta, inverse, exact, jnp.zeros(()), sc.key)
        return plan, prepared

    def unlearn(plan, sc, prepared, deleted):
        theta = prepared.params

        def one(j):
            g = models.per_example_grad(sc.model, theta, sc.train.features[j], sc.train.labels[j])
            step = (prepared.state @ g.reshape(-1)).reshape(theta.shape)
            return UnlearnResult(theta + step, jnp.zeros(()), jnp.ones((), jnp.int32))

        return jax.vmap(one)(deleted)

    def zero(ctx, thetas_after, deleted):
        shape = (thetas_after.shape[0], ctx.scenario.train.x.shape[1])
        return AttackResult(jnp.zeros(shape), jnp.zeros(shape[0], jnp.int32), jnp.zeros(shape[0]))

    monkeypatch.setitem(
        unlearners.UNLEARNING, "influence", unlearners.UnlearningMethod(prepare, unlearn)
    )
    monkeypatch.setitem(reconstruction.ATTACKS, "zero", reconstruction.AttackSpec(zero, "Zero"))
    sc = _scenario(digits, "logistic")
    theta = scenario.fit(sc).params
    deleted = np.array([4, 8])
    approx = unlearners.make_unlearn(sc, theta, "influence")(deleted)
    exact = unlearners.make_unlearn(sc, theta)(deleted)
    # A step with the full-data H⁺ misses the deleted record's own curvature (leverage ~ D/n):
    # near exact retraining, not equal to it; the Unlearner measures that distance itself.
    gap = np.linalg.norm(approx.params - exact.params) / np.linalg.norm(exact.params - theta[None])
    assert 0.01 < gap < 0.5
    np.testing.assert_allclose(
        approx.exact_distance,
        np.linalg.norm((approx.params - exact.params).reshape(2, -1), axis=1)
        / np.linalg.norm(exact.params.reshape(2, -1), axis=1),
        rtol=1e-9,
    )
    out = reconstruction.make_attack(sc, theta, ["hrec", "zero"])(approx.params, deleted)
    scores = reconstruction.score(sc, out, deleted)
    np.testing.assert_array_equal(scores["zero"].cosine, 0.0)
    assert float(jnp.min(scores["hrec"].cosine)) > 0.9
    # ... and both are options of the whole job, its summary and its table.
    config = pipeline.RunConfig(
        model="logistic", n_train=100, deletions=2, unlearning="influence", attacks=("hrec", "zero")
    )
    summary = pipeline.run(config, progress=False).summary
    assert summary["unlearning"]["kernel"] == "newton-step"
    assert summary["attacks"]["zero"]["cosine_median"] == 0.0


def test_score_and_summarize_exact_values(digits):
    sc = _scenario(digits, "softmax")
    deleted = np.array([0, 1])
    x, y = np.asarray(sc.train.x[deleted]), np.asarray(sc.train.labels[deleted])
    results = {
        "hrec": AttackResult(jnp.asarray(2 * x), jnp.asarray(y), jnp.asarray([0.5, 0.0])),
        "avg": AttackResult(jnp.asarray(-x), jnp.asarray((y + 1) % 10), jnp.zeros(2)),
    }
    scores = reconstruction.score(sc, results, deleted)
    np.testing.assert_allclose(scores["hrec"].cosine, [1.0, 1.0], rtol=1e-14)
    np.testing.assert_allclose(scores["avg"].cosine, [-1.0, -1.0], rtol=1e-14)
    np.testing.assert_allclose(scores["hrec"].mse, np.mean(x**2, axis=1), rtol=1e-14)
    np.testing.assert_array_equal(scores["hrec"].no_signal, [False, True])
    assert scores["avg"].no_signal is None and scores["hrec"].label_error is None
    summary = reconstruction.summarize(scores)
    assert summary["hrec"]["label_accuracy"] == 1.0 and summary["avg"]["label_accuracy"] == 0.0
    assert summary["hrec"]["no_signal"] == 1 and "no_signal" not in summary["avg"]
    ridge = _scenario(digits, "ridge")
    yr = np.asarray(ridge.train.labels[deleted])
    out = {"hrec": AttackResult(jnp.asarray(x), jnp.asarray(yr + 0.5), jnp.ones(2))}
    s = reconstruction.summarize(reconstruction.score(ridge, out, deleted))["hrec"]
    assert s["label_accuracy"] is None and s["label_mae"] == pytest.approx(0.5)


def test_roles_are_disjoint_and_features_carry_the_bias(digits):
    sc = _scenario(digits, "softmax", n_public=300)
    roles = sc.info.roles
    assert len(roles.train) == 200 and len(roles.public) == 300
    assert not set(roles.train) & set(roles.public) and not set(roles.test) & set(roles.public)
    np.testing.assert_array_equal(sc.train.features[:, -1], 1.0)
    np.testing.assert_allclose(sc.train.x, digits.x[roles.train], rtol=0)
    assert sc.attacker.public is sc.public and int(sc.attacker.n_train) == 200


@pytest.mark.parametrize(
    "call,needle",
    [
        (lambda sc, t: unlearners.make_unlearn(sc, t, "magic"), "method: unknown value 'magic'"),
        (lambda sc, t: reconstruction.make_attack(sc, t, ["hrec", "magic"]), "attacks: unknown"),
        (lambda sc, t: reconstruction.make_attack(sc, t, ["hrec", "hrec"]), "attacks: duplicate"),
        (lambda sc, t: reconstruction.make_attack(sc, t, hessian="exact"), "hessian: unknown"),
        (lambda sc, t: unlearners.make_unlearn(sc, t)(np.array([[1, 2]])), "deleted: the chord"),
        (lambda sc, t: unlearners.make_unlearn(sc, t)(np.array([1.0])), "deleted: need"),
        (lambda sc, t: unlearners.make_unlearn(sc, t, block=0), "block: must be"),
        (lambda sc, t: scenario.draw_deletions(sc, 201), "deletions: must be"),
        (lambda sc, t: scenario.make_attacker(sc, l2=-1.0), "l2: must be"),
    ],
)
def test_bad_arguments_name_themselves(digits, call, needle):
    sc = _scenario(digits, "logistic")
    theta = jnp.zeros(65)
    with pytest.raises(InputError, match=needle) as err:
        call(sc, theta)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"model": "mlp"}, "model: unknown"),
        ({"n_train": 1}, "n_train: must be"),
        ({"n_train": 1700}, "n_train: must be <"),
        ({"l2": 0.0}, "l2: must be a finite number > 0"),
        ({"features": "poly"}, "features: unknown"),
        ({"dtype": "float16"}, "dtype: unknown"),
        ({"rff_bandwidth": float("nan")}, "rff_bandwidth: must be"),
    ],
)
def test_make_scenario_rejects_bad_options(digits, kwargs, needle):
    kwargs = {"model": "ridge"} | kwargs
    with pytest.raises(InputError, match=needle):
        scenario.make_scenario(digits, key=jax.random.key(0), **kwargs)


def test_multiclass_model_on_real_targets_is_refused():
    regression = data.synthetic_regression(jax.random.key(0), 100, 3)
    with pytest.raises(InputError, match="model: softmax needs class labels"):
        scenario.make_scenario(regression, model="softmax", n_train=50, key=jax.random.key(0))


def test_fixed_roles_are_used_as_given_and_checked(digits):
    given = data.Split(np.arange(0, 150), np.arange(150, 400), np.arange(400, 420))
    sc = scenario.make_scenario(digits, model="logistic", key=jax.random.key(0), roles=given)
    np.testing.assert_array_equal(sc.info.roles.train, given.train)
    np.testing.assert_allclose(sc.public.x, digits.x[150:400], rtol=0)
    assert sc.n_train == 150 and int(sc.attacker.n_train) == 150
    overlapping = data.Split(np.arange(0, 150), np.arange(100, 400), np.arange(400, 420))
    with pytest.raises(InputError, match="roles: train, public and test must be disjoint"):
        scenario.make_scenario(digits, model="logistic", key=jax.random.key(0), roles=overlapping)
    with pytest.raises(InputError, match="roles: test"):
        scenario.make_scenario(
            digits, model="logistic", key=jax.random.key(0), roles=given._replace(test=[5000])
        )
