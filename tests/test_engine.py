"""The main job end to end (`pipeline.run`): acceptance numbers on digits, every model, feature
map and attack, the large-parameter and matrix-free paths, exactness re-checked from arrays.npz,
one compilation per stage, dtypes and numerical edge cases.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from jaxrecon import engine, pipeline, unlearning
from jaxrecon.errors import InputError, NumericalError


@pytest.mark.parametrize("model", ["ridge", "logistic", "softmax"])
def test_default_digits_run_meets_acceptance(model):
    """Defaults on digits: HRec median >= 0.97 and above both baselines; exact unlearning."""
    result = pipeline.run(pipeline.RunConfig(model=model), progress=False)
    s = result.summary
    hrec = s["attacks"]["hrec"]["cosine_median"]
    assert hrec >= 0.97
    assert hrec > s["attacks"]["avg"]["cosine_median"]
    assert hrec > s["attacks"]["maxdiff"]["cosine_median"]
    assert s["unlearning"]["max_grad_norm"] <= 1e-8
    # HRec singles the deleted digit out among 1,617 candidates; Avg's one guess cannot.
    assert s["attacks"]["hrec"]["reidentification"] > 0.5 > s["attacks"]["avg"]["reidentification"]
    if model == "softmax":
        assert s["attacks"]["hrec"]["label_accuracy"] >= 0.9
    if model == "ridge":
        assert s["attacks"]["hrec"]["label_accuracy"] is None
        assert s["model"]["score_name"] == "r2"


def test_synthetic_data_runs_for_every_model(tmp_path):
    for model, dataset in (
        ("ridge", "synthetic_regression"),
        ("logistic", "synthetic_regression"),
        ("softmax", "synthetic_classification"),
    ):
        result = pipeline.run(
            pipeline.RunConfig(dataset=dataset, model=model, n_train=300, deletions=10),
            progress=False,
        )
        assert result.summary["unlearning"]["max_grad_norm"] <= 1e-8
        assert result.grid is None
        pipeline.write_outputs(result, str(tmp_path / f"{model}"))
        assert not (tmp_path / model / "reconstructions.png").exists()


@pytest.mark.parametrize(
    "model,features,cosine,labels",
    [
        # With pixels, 1,400 public samples estimate the 650-parameter Ĥ roughly; the OvR SVM's
        # label rule reads ten signs off a noisy q̂ (README: its weakest case).
        ("svm", "identity", 0.85, 0.5),
        ("ridge-onehot", "identity", 0.85, 1.0),
        ("ridge-onehot", "rff", 0.98, 1.0),
        ("svm", "rff", 0.98, 1.0),
    ],
)
def test_models_and_features_run_exactly(model, features, cosine, labels):
    config = pipeline.RunConfig(
        model=model, features=features, rff_dim=128, n_train=200, deletions=6, save_arrays=True
    )
    result = pipeline.run(config, progress=False)
    s = result.summary
    assert s["unlearning"]["max_grad_norm"] <= 1e-8
    assert s["data"]["feature_map"]["name"] == features
    assert s["data"]["feature_dim"] == (129 if features == "rff" else 65)
    traceless = _beyond_margin(result.arrays) if model == "svm" else np.zeros(6, bool)
    # A record beyond every margin never moved the optimum: HRec says so (no signal) and answers
    # the prior (Avg); every other record is reconstructed, and its label read.
    assert s["attacks"]["hrec"]["no_signal"] == int(traceless.sum())
    cos = np.array([r["hrec_cosine"] for r in result.rows])
    avg = np.array([r["avg_cosine"] for r in result.rows])
    np.testing.assert_array_equal(cos[traceless], avg[traceless])
    assert np.median(cos[~traceless]) > cosine
    correct = np.array([r["hrec_label_correct"] for r in result.rows])
    assert np.mean(correct[~traceless]) >= labels


def _beyond_margin(arrays):
    """Deleted SVM records with s·z >= 1 in every output under θ⁺ (zero loss gradient)."""
    theta = arrays["theta_before"]
    z = arrays["features_train"][arrays["deleted"]] @ theta
    y = arrays["labels_train"][arrays["deleted"]]
    if theta.ndim == 1:
        return (2 * y - 1) * z >= 1
    signs = 2 * np.eye(theta.shape[1])[y] - 1
    return np.all(signs * z >= 1, axis=1)


def test_every_attack_reports_with_the_same_keys(tmp_path):
    config = pipeline.RunConfig(
        model="softmax", n_train=200, n_public=300, deletions=4, attacks=pipeline.ATTACKS
    )
    result = pipeline.run(config, progress=False)
    assert set(result.summary["attacks"]) == set(pipeline.ATTACKS)
    for name in pipeline.ATTACKS:
        assert {
            "cosine_median",
            "cosine_p10",
            "cosine_mean",
            "label_accuracy",
            "reidentification",
        } <= set(result.summary["attacks"][name])
        assert f"{name}_cosine" in result.rows[0] and f"{name}_reid_rank" in result.rows[0]
        assert result.arrays[f"recon_{name}"].shape == (4, 64)
    # The informed adversary knows every other record: exact for a GLM trained to round-off.
    assert result.summary["attacks"]["informed"]["cosine_median"] > 1 - 1e-6
    titles, rows = result.grid
    assert [label for label, _ in rows][0] == "original" and len(rows) == 1 + len(pipeline.ATTACKS)
    pipeline.write_outputs(result, str(tmp_path))


def test_large_parameter_path_never_forms_the_hessian():
    """P = 901 x 10 > DENSE_UNLEARN_LIMIT: chord iterations with CG solves on Kronecker factors."""
    config = pipeline.RunConfig(
        model="softmax", features="rff", rff_dim=900, n_train=200, deletions=4
    )
    s = pipeline.run(config, progress=False).summary
    assert 901 * 10 > pipeline.DENSE_UNLEARN_LIMIT
    assert s["unlearning"]["kernel"] == "chord-kfac"
    assert s["unlearning"]["max_grad_norm"] <= 1e-8
    assert s["model"]["train_grad_norm"] <= 1e-8


def test_given_bandwidth_is_used():
    config = pipeline.RunConfig(
        model="ridge", features="rff", rff_dim=32, rff_bandwidth=2.5, n_train=100, deletions=2
    )
    info = pipeline.run(config, progress=False).summary["data"]["feature_map"]
    assert info == {"name": "rff", "num_features": 32, "bandwidth": 2.5, "bandwidth_rule": "given"}


def test_svm_binary_on_two_class_data():
    config = pipeline.RunConfig(
        model="svm", dataset="synthetic_regression", n_train=200, deletions=5
    )
    result = pipeline.run(config, progress=False)
    assert result.summary["data"]["task"] == "binary"
    assert result.summary["unlearning"]["max_grad_norm"] <= 1e-8
    # Most records of this well-separated problem lie beyond the margin and leave no trace.
    traceless = _beyond_margin(result.arrays)
    assert result.summary["attacks"]["hrec"]["no_signal"] == int(traceless.sum()) >= 1


def test_float32_and_float64_agree_to_documented_tolerance():
    """README: per-deletion cosines within 0.01, medians within 1e-3."""
    for model in ("ridge", "softmax"):
        runs = [
            pipeline.run(
                pipeline.RunConfig(model=model, n_train=300, deletions=20, dtype=d), progress=False
            )
            for d in ("float64", "float32")
        ]
        c64, c32 = (np.array([r["hrec_cosine"] for r in run.rows]) for run in runs)
        assert np.max(np.abs(c64 - c32)) <= 0.01
        assert abs(np.median(c64) - np.median(c32)) <= 1e-3
        assert runs[1].arrays["theta_after"].dtype == np.float32


def test_non_finite_solve_is_reported_with_the_deletion():
    bad = unlearning.UnlearnResult(
        jnp.asarray([[1.0, 2.0], [np.nan, 0.0]]), jnp.asarray([0.0, np.nan]), jnp.zeros(2, int)
    )
    with pytest.raises(NumericalError, match="train_index 9 .pool index 42"):
        engine._check_finite(bad, np.array([3, 9]), np.arange(100) + 33)
    assert issubclass(NumericalError, InputError)


def test_small_n_below_dimension_with_l2():
    """n <= D with l2 > 0: still strictly convex; unlearning stays exact, HRec still works."""
    result = pipeline.run(
        pipeline.RunConfig(model="ridge", n_train=40, deletions=10), progress=False
    )
    assert result.summary["unlearning"]["max_grad_norm"] <= 1e-8
    assert result.summary["data"]["feature_dim"] > 40
    attacks = result.summary["attacks"]
    assert attacks["hrec"]["cosine_median"] > attacks["avg"]["cosine_median"] + 0.05


def test_attack_hessian_condition_is_reported():
    result = pipeline.run(
        pipeline.RunConfig(model="logistic", n_train=200, deletions=4), progress=False
    )
    report = result.summary["attack_hessian"]
    assert report["min_eigenvalue"] >= 1.0 - 1e-9  # l2 = 1 bounds it below
    assert report["condition_number"] == pytest.approx(
        report["max_eigenvalue"] / report["min_eigenvalue"]
    )


def test_one_compilation_of_each_stage_serves_every_chunk(caplog):
    """Five chunks of deletions: the unlearning and the attack functions compile once each."""
    import logging

    config = pipeline.RunConfig(model="logistic", n_train=200, deletions=10, chunk_size=2)
    with jax.log_compiles(True), caplog.at_level(logging.WARNING, logger="jax"):
        result = pipeline.run(config, progress=False)
    assert result.summary["chunks"]["computed"] == 5
    compiled = [r.getMessage() for r in caplog.records if "Compiling" in r.getMessage()]
    assert sum("_unlearn_chunk" in m for m in compiled) == 1, compiled
    assert sum("_attack_chunk" in m for m in compiled) == 1, compiled


def test_matrix_free_branch_and_rff_inversion_recover_the_records():
    """401 × 10 = 4,010 parameters > DENSE_LIMIT: the attacker's Ĥ is matrix-free and HRec's p̂
    is inverted through the random Fourier features; the records still come back."""
    config = pipeline.RunConfig(
        model="softmax", features="rff", rff_dim=400, n_train=300, deletions=6
    )
    assert 401 * 10 > pipeline.DENSE_LIMIT
    s = pipeline.run(config, progress=False).summary
    assert s["unlearning"]["kernel"] == "chord"
    assert s["attacks"]["hrec"]["cosine_median"] > 0.97
    assert s["attacks"]["hrec"]["cosine_p10"] > 0.9
    assert s["attacks"]["hrec"]["label_accuracy"] == 1.0
    assert s["attacks"]["hrec"]["cosine_median"] > s["attacks"]["maxdiff"]["cosine_median"]


@pytest.mark.parametrize("model", ["logistic", "softmax"])
def test_unlearned_models_equal_an_independent_numpy_retrain(tmp_path, model):
    """θ⁻ from arrays.npz against NumPy Newton from zero on the retained rows (no jaxrecon)."""
    config = pipeline.RunConfig(model=model, n_train=150, deletions=3, chunk_size=2)
    a = pipeline.run(config, progress=False).arrays
    p, y = a["features_train"], a["labels_train"]
    grad, hess = (
        (ref.logistic_grad, ref.logistic_hessian)
        if model == "logistic"
        else (ref.softmax_grad, ref.softmax_hessian)
    )
    for b, j in enumerate(a["deleted"]):
        w = np.ones(len(y))
        w[j] = 0
        expected = ref.newton(
            lambda t, w=w: grad(t, p, y, 1.0, w),
            lambda t, w=w: hess(t, p, 1.0, w),
            np.zeros_like(a["theta_before"]),
        )
        np.testing.assert_allclose(a["theta_after"][b], expected, rtol=1e-9, atol=1e-11)


def test_labels_are_recovered_for_logistic_and_ridge():
    logistic = pipeline.run(
        pipeline.RunConfig(model="logistic", n_train=300, deletions=40), progress=False
    ).summary["attacks"]
    assert logistic["hrec"]["label_accuracy"] >= 0.95
    assert logistic["hrec"]["label_accuracy"] > logistic["avg"]["label_accuracy"] + 0.3
    ridge = pipeline.run(
        pipeline.RunConfig(model="ridge", n_train=300, deletions=40), progress=False
    ).summary["attacks"]
    # Ridge regresses the digit's value: HRec reads it as ŷ = θ⁺ᵀp̂ − ĝ₀.
    assert ridge["hrec"]["label_accuracy"] is None
    assert ridge["hrec"]["label_mae"] < 0.5 * ridge["avg"]["label_mae"]


def test_float32_unlearning_meets_the_float32_tolerance_of_a_float64_reference():
    """--dtype float32: θ⁻ against NumPy float64 retraining on the same (float32) features."""
    result = pipeline.run(
        pipeline.RunConfig(model="logistic", n_train=200, deletions=3, dtype="float32"),
        progress=False,
    )
    a = result.arrays
    assert a["theta_after"].dtype == np.float32
    p, y = a["features_train"].astype(np.float64), a["labels_train"]
    for b, j in enumerate(a["deleted"]):
        w = np.ones(len(y))
        w[j] = 0
        expected = ref.newton(
            lambda t, w=w: ref.logistic_grad(t, p, y, 1.0, w),
            lambda t, w=w: ref.logistic_hessian(t, p, 1.0, w),
            np.zeros(p.shape[1]),
        )
        tol = ref.TOL[np.float32]["solve"]
        np.testing.assert_allclose(a["theta_after"][b], expected, rtol=tol, atol=tol)
