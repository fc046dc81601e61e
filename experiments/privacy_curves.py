"""Privacy–utility–leakage curves (issue 11, (b)): against ε, for output perturbation (exact
unlearning, Gaussian noise on both releases), descent-to-delete and certified removal (objective
perturbation shared by both releases), HRec's median cosine, the released model's test accuracy,
and HRec's MSE against the Fisher lower bound on any unbiased attacker's MSE (output
perturbation).

Command:   python experiments/privacy_curves.py [--smoke] [--data-dir ../shared/data]
Runtime:   about 4 minutes on a 2-core CPU (digits logistic and softmax, 1,000 train, 50
           deletions, 10 values of ε; MNIST softmax with --data-dir: ~10 min more).
Output:    results/privacy_curves.json and results/privacy_curves.png.
Headline:  see RESULTS.md "Defences".
"""

import dataclasses
import json
import os
import sys

import jax
import numpy as np

import jaxrecon as jr


@dataclasses.dataclass(frozen=True)
class Config:
    settings: tuple[tuple[str, str, int, int], ...] = (
        ("digits", "logistic", 1000, 50),
        ("digits", "softmax", 1000, 50),
    )
    epsilons: tuple[float, ...] = (0.1, 1.0, 10.0, 1e2, 1e3, 1e4, 1e6, 1e8, 1e10, 1e12)
    data_dir: str | None = None


def get_config(smoke: bool = False, data_dir: str | None = None) -> Config:
    if smoke:
        return Config(settings=(("digits", "logistic", 150, 4),), epsilons=(1.0, 1e12))
    extra = (("mnist", "softmax", 2000, 50),) if data_dir else ()
    return Config(settings=Config.settings + extra, data_dir=data_dir)


def run(config: Config) -> dict[str, dict]:
    """{"<dataset>/<model>": {"none": {...}, "<mechanism>": {"epsilon": [...], metric: [...]}}}."""
    out = {}
    for name, model, n_train, count in config.settings:
        key = jax.random.key(0)
        pool = jr.load_dataset(name, key=key, data_dir=config.data_dir)
        sc = jr.make_scenario(pool, model=model, n_train=n_train, key=key)
        theta = jax.jit(jr.fit)(sc).params
        deleted = jr.draw_deletions(sc, count)
        curves = {"none": _point(sc, jr.make_unlearn(sc, theta), deleted)}
        for mechanism, kwargs in (
            ("output-perturbation", {"defense": "output-perturbation"}),
            ("descent-to-delete", {"method": "descent-to-delete"}),
            ("certified", {"method": "certified"}),
        ):
            points = [
                _point(sc, jr.make_unlearn(sc, theta, epsilon=e, **kwargs), deleted)
                for e in config.epsilons
            ]
            curves[mechanism] = {"epsilon": list(config.epsilons)} | {
                k: [p[k] for p in points] for k in points[0]
            }
        out[f"{name}/{model}"] = curves
    return out


def _point(sc, unlearner, deleted) -> dict:
    after = unlearner(deleted)
    recon = jr.make_attack(sc, unlearner.released)(after.params, deleted)
    scores = jr.score(sc, recon, deleted)
    point = {a: float(np.median(s.cosine)) for a, s in scores.items()} | {
        "test_accuracy": jr.utility(sc, unlearner.served).test_score,
        "hrec_mse": float(np.median(scores["hrec"].mse)),
    }
    if jr.fisher_applies(unlearner):
        point["fisher_bound"] = float(np.median(jr.fisher_bounds(unlearner, deleted)))
    return point


def plot(results: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(results), 3, figsize=(13, 3.4 * len(results)), squeeze=False)
    for row, (title, curves) in zip(axes, results.items(), strict=True):
        for mechanism in ("output-perturbation", "descent-to-delete", "certified"):
            c = curves[mechanism]
            row[0].semilogx(c["epsilon"], c["hrec"], "o-", label=f"HRec, {mechanism}")
            row[1].semilogx(c["epsilon"], c["test_accuracy"], "o-", label=mechanism)
        op = curves["output-perturbation"]
        row[2].loglog(op["epsilon"], op["hrec_mse"], "o-", label="HRec MSE (median)")
        row[2].loglog(op["epsilon"], op["fisher_bound"], "s--", label="Fisher bound (unbiased)")
        for name, style in (("hrec", "k-"), ("maxdiff", "k--"), ("avg", "k:")):
            row[0].axhline(
                curves["none"][name], ls=style[1:], c="k", lw=0.8, label=f"{name}, no defence"
            )
        row[1].axhline(curves["none"]["test_accuracy"], c="k", lw=0.8, label="no defence")
        row[0].set(title=f"{title}: leakage", xlabel="ε", ylabel="median cosine")
        row[1].set(title="utility of the released model", xlabel="ε", ylabel="test accuracy")
        row[2].set(
            title="output perturbation: MSE vs limit", xlabel="ε", ylabel="per-coordinate MSE"
        )
        for ax in row:
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else None
    results = run(get_config(smoke="--smoke" in sys.argv, data_dir=data_dir))
    os.makedirs("results", exist_ok=True)
    with open("results/privacy_curves.json", "w") as f:
        json.dump(results, f, indent=2)
    plot(results, "results/privacy_curves.png")
    print(json.dumps({k: v["none"] for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
