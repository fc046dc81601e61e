"""Smoke runs of the experiment drivers (seconds each). Elsewhere, to share compiled kernels:
image_cdfs and image_grids run through notebooks/reproduce_figures.ipynb (test_notebooks.py),
updates_leak_vs_hrec beside the Updates-Leak tests (test_updates_leak.py)."""

from conftest import load_experiment


def test_digits_headline_smoke():
    exp = load_experiment("digits_headline")
    results = exp.run(exp.get_config(smoke=True))
    assert set(results) == {"ridge", "logistic", "softmax"}
    table = exp.markdown_table(results)
    assert table.count("\n") == 4
    hrec_cell = table.splitlines()[-1].split(" | ")[2]  # the columns follow the header's order
    assert hrec_cell.startswith(f"{results['softmax']['attacks']['hrec']['cosine_median']:.3f}")
    for r in results.values():
        assert r["max_grad_norm"] <= 1e-8
        attacks = r["attacks"]
        assert attacks["hrec"]["cosine_median"] > attacks["avg"]["cosine_median"] + 0.05
    assert results["softmax"]["attacks"]["hrec"]["label_accuracy"] >= 0.9


def test_unlearning_methods_smoke():
    exp = load_experiment("unlearning_methods")
    results = exp.run(exp.get_config(smoke=True))["digits"]
    assert results["exact"]["distance_to_exact"] == 0 < results["newton"]["distance_to_exact"]
    assert results["newton"]["hrec"] > results["newton"]["avg"]
    assert exp.markdown_table({"digits": results}).count("|") > 20


def test_privacy_curves_smoke(tmp_path):
    exp = load_experiment("privacy_curves")
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
    exp = load_experiment("multi_record")
    results = exp.run(exp.get_config(smoke=True))["records_per_request"]
    assert set(results) == {1, 2} and results[2]["hrec"][0] > 0.8


def test_model_quality_smoke():
    exp = load_experiment("model_quality")
    results = exp.run(exp.get_config(smoke=True))["digits"]
    for features in ("identity", "rff"):
        assert 0 < results["ridge"][features]["r2"] < 1
        assert results["logistic"][features]["accuracy"] > 0.8
        assert 0 < results["logistic"][features]["macro_f1"] <= 1
    assert exp.markdown_table({"digits": results}).count("\n") == 4


def test_membership_inference_smoke(tmp_path):
    exp = load_experiment("membership_inference")
    results = exp.run(exp.get_config(smoke=True))
    attacks = results["attacks"]
    assert attacks["pair"]["auc"] > 0.9
    assert attacks["pair"]["auc"] > attacks["loss"]["auc"]
    assert results["hrec_cosine_median"] > 0.9
    exp.plot(results, tmp_path / "roc.png")
    assert (tmp_path / "roc.png").stat().st_size > 0


def test_census_cdfs_smoke(tmp_path):
    exp = load_experiment("census_cdfs")
    config = exp.get_config(smoke=True)
    results = exp.run(config)
    panels = results["synthetic_classification"]
    assert list(panels) == [key for key, *_ in exp.runs(config)]
    for key, r in panels.items():
        assert r["max_grad_norm"] <= 1e-8, key  # exact unlearning, l2 -> 0 included
        assert len(r["medians"]["hrec"]) == len(config.seeds)
        assert len(r["cosines"]["hrec"]) == len(config.seeds) * config.deletions
        low, high = r["range"]["hrec"]
        assert low <= r["mean"]["hrec"] <= high
    r = panels["logistic/identity"]
    assert r["mean"]["hrec"] > r["mean"]["avg"] + 0.3
    assert r["range"]["hrec"][0] > r["range"]["maxdiff"][1]  # HRec wins for every seed
    unregularised = panels["ridge l2=1e-06/identity"]
    assert unregularised["l2"] == 1e-6 and unregularised["mean"]["hrec"] > 0.8
    assert exp.markdown_table(results).count("\n") == 1 + len(panels)
    exp.plot(results, tmp_path / "cdfs.png")
    assert (tmp_path / "cdfs.png").stat().st_size > 10_000
