"""Smoke runs of every experiment driver (seconds each); notebooks: test_notebooks.py."""

import importlib.util
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_digits_headline_smoke():
    exp = _load(ROOT / "experiments" / "digits_headline.py")
    results = exp.run(exp.get_config(smoke=True))
    assert set(results) == {"ridge", "logistic", "softmax"}
    assert exp.markdown_table(results).count("\n") == 4
    for r in results.values():
        assert r["max_grad_norm"] <= 1e-8
        attacks = r["attacks"]
        assert attacks["hrec"]["cosine_median"] > attacks["avg"]["cosine_median"] + 0.05
    assert results["softmax"]["attacks"]["hrec"]["label_accuracy"] >= 0.9


def test_unlearning_methods_smoke():
    exp = _load(ROOT / "experiments" / "unlearning_methods.py")
    results = exp.run(exp.get_config(smoke=True))["digits"]
    assert results["exact"]["distance_to_exact"] == 0 < results["newton"]["distance_to_exact"]
    assert results["newton"]["hrec"] > results["newton"]["avg"]
    assert exp.markdown_table({"digits": results}).count("|") > 20


def test_privacy_curves_smoke(tmp_path):
    exp = _load(ROOT / "experiments" / "privacy_curves.py")
    results = exp.run(exp.get_config(smoke=True))
    curves = results["digits/logistic"]["output-perturbation"]
    assert curves["epsilon"] == [1.0, 1e12]
    assert curves["hrec"][0] < curves["hrec"][1]  # strong noise hides the record, none does not
    assert curves["fisher_bound"][0] > curves["fisher_bound"][1] > 0
    # Objective perturbation is shared by θ⁺ and θ⁻: once the model is useful, the pair leaks.
    assert results["digits/logistic"]["certified"]["hrec"][1] > 0.9
    exp.plot(results, str(tmp_path / "curves.png"))
    assert (tmp_path / "curves.png").stat().st_size > 10_000


def test_multi_record_smoke():
    exp = _load(ROOT / "experiments" / "multi_record.py")
    results = exp.run(exp.get_config(smoke=True))["records_per_request"]
    assert set(results) == {1, 2} and results[2]["hrec"][0] > 0.8


def test_model_quality_smoke():
    exp = _load(ROOT / "experiments" / "model_quality.py")
    results = exp.run(exp.get_config(smoke=True))["digits"]
    for features in ("identity", "rff"):
        assert 0 < results["ridge"][features]["r2"] < 1
        assert results["logistic"][features]["accuracy"] > 0.8
        assert 0 < results["logistic"][features]["macro_f1"] <= 1
    assert exp.markdown_table({"digits": results}).count("\n") == 4


def test_membership_inference_smoke(tmp_path):
    exp = _load(ROOT / "experiments" / "membership_inference.py")
    results = exp.run(exp.get_config(smoke=True))
    attacks = results["attacks"]
    assert attacks["pair"]["auc"] > 0.9
    assert attacks["pair"]["auc"] > attacks["loss"]["auc"]
    assert results["hrec_cosine_median"] > 0.9
    exp.plot(results, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 0
