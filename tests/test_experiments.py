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
