"""Smoke runs of every experiment driver and notebook (seconds each)."""

import importlib.util
import json
import pathlib
import sys

import matplotlib

matplotlib.use("Agg")

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _load(path):
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_digits_headline_smoke():
    exp = _load(ROOT / "experiments" / "digits_headline.py")
    summaries = exp.run(exp.get_config(smoke=True))
    assert set(summaries) == {"ridge", "logistic", "softmax"}
    table = exp.markdown_table(summaries)
    assert table.count("\n") == 4
    for s in summaries.values():
        assert s["unlearning"]["max_grad_norm"] <= 1e-8


def test_quickstart_notebook_runs():
    nb = json.loads((ROOT / "notebooks" / "quickstart.ipynb").read_text())
    namespace = {}
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            exec(compile("".join(cell["source"]), "quickstart.ipynb", "exec"), namespace)
    assert namespace["result"].summary["attacks"]["hrec"]["cosine_median"] > 0.9
