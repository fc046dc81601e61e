"""The main job with the models, features and attacks beyond the first slice (small settings)."""

import numpy as np
import pytest

from jaxrecon import cli, pipeline


@pytest.mark.parametrize(
    "model,features",
    [("svm", "identity"), ("ridge-onehot", "identity"), ("ridge-onehot", "rff"), ("svm", "rff")],
)
def test_models_and_features_run_exactly(model, features):
    config = pipeline.RunConfig(
        model=model, features=features, rff_dim=128, n_train=200, deletions=6
    )
    s = pipeline.run(config, progress=False).summary
    assert s["unlearning"]["max_grad_norm"] <= 1e-8
    assert s["data"]["feature_map"]["name"] == features
    assert s["data"]["feature_dim"] == (129 if features == "rff" else 65)
    assert 0 <= s["attacks"]["hrec"]["cosine_median"] <= 1


def test_every_attack_reports_with_the_same_keys(tmp_path):
    config = pipeline.RunConfig(model="softmax", n_train=200, deletions=4, attacks=pipeline.ATTACKS)
    result = pipeline.run(config, progress=False)
    assert set(result.summary["attacks"]) == set(pipeline.ATTACKS)
    for name in pipeline.ATTACKS:
        assert {"cosine_median", "cosine_p10", "cosine_mean", "label_accuracy"} <= set(
            result.summary["attacks"][name]
        )
        assert f"{name}_cosine" in result.rows[0]
        assert result.arrays[f"recon_{name}"].shape == (4, 64)
    # The informed adversary knows every other record: exact for a GLM trained to round-off.
    assert result.summary["attacks"]["informed"]["cosine_median"] > 1 - 1e-6
    titles, rows = result.grid
    assert [label for label, _ in rows][0] == "original" and len(rows) == 7
    pipeline.write_outputs(result, str(tmp_path))


def test_large_parameter_path_never_forms_the_hessian():
    """P = 901 x 10 > DENSE_UNLEARN_LIMIT: Newton-CG with a Nyström preconditioner, still exact."""
    config = pipeline.RunConfig(
        model="softmax", features="rff", rff_dim=900, n_train=200, deletions=4
    )
    s = pipeline.run(config, progress=False).summary
    assert 901 * 10 > pipeline.DENSE_UNLEARN_LIMIT
    assert s["unlearning"]["kernel"] == "newton-cg-nystrom"
    assert s["unlearning"]["max_grad_norm"] <= 1e-8
    assert s["model"]["train_grad_norm"] <= 1e-8


def test_given_bandwidth_is_used():
    config = pipeline.RunConfig(
        model="ridge", features="rff", rff_dim=32, rff_bandwidth=2.5, n_train=100, deletions=2
    )
    info = pipeline.run(config, progress=False).summary["data"]["feature_map"]
    assert info == {"name": "rff", "num_features": 32, "bandwidth": 2.5, "bandwidth_rule": "given"}


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--features", "poly"], "--features"),
        (["--rff-dim", "0"], "--rff-dim"),
        (["--rff-bandwidth", "-1"], "--rff-bandwidth"),
        (["--rff-bandwidth", "inf"], "--rff-bandwidth"),
        (["--model", "ridge-onehot", "--dataset", "synthetic_regression"], "--model"),
    ],
)
def test_bad_new_options(tmp_path, capsys, args, needle):
    assert cli.main(["run", "--quiet", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "o").exists()


def test_svm_binary_on_two_class_data():
    config = pipeline.RunConfig(
        model="svm", dataset="synthetic_regression", n_train=200, deletions=5
    )
    s = pipeline.run(config, progress=False).summary
    assert s["data"]["task"] == "binary"
    assert np.isfinite(s["attacks"]["hrec"]["cosine_median"])
