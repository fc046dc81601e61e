"""Smoke runs of the model-quality and membership-inference drivers, and `roc_summary`."""

import importlib.util
import pathlib
import sys

import numpy as np
from sklearn.metrics import roc_auc_score

from jaxrecon.metrics import roc_summary

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_roc_summary_matches_sklearn():
    rng = np.random.default_rng(0)
    for n in (7, 300, 4000):
        is_member = rng.random(n) < 0.3
        is_member[:2] = (True, False)
        scores = np.round(rng.normal(size=n) + is_member, 1)  # rounded: ties count half
        summary = roc_summary(scores, is_member)
        assert abs(summary["auc"] - roc_auc_score(is_member, scores)) <= 1e-12
        assert 0 <= summary["tpr_at_0_1pct"] <= summary["tpr_at_1pct"] <= 1
    perfect = roc_summary(np.arange(10.0), np.arange(10) >= 5)
    assert perfect == {"auc": 1.0, "tpr_at_1pct": 1.0, "tpr_at_0_1pct": 1.0}


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
