"""Leakage per unlearning method: HRec, MaxDiff, Avg and the informed adversary against exact,
Newton, certified, descent-to-delete, gradient-ascent, fine-tuning and SISA unlearning, beside
each method's distance to exact retraining and the model's test accuracy (issue 11, (a)).

Command:   python experiments/unlearning_methods.py [--smoke] [--data-dir ../shared/data]
Runtime:   about 2 minutes on a 2-core CPU (digits softmax, 1,000 train, 100 deletions; with
           --data-dir also MNIST softmax, 2,000 train / 2,000 public / 50 deletions: ~10 min).
Headline:  see RESULTS.md "Approximate unlearning".
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
    datasets: tuple[tuple[str, int, int | None, int], ...] = (("digits", 1000, None, 100),)
    methods: tuple[str, ...] = tuple(jr.UNLEARNING)
    attacks: tuple[str, ...] = ("hrec", "maxdiff", "avg", "informed")
    epsilon: float = 1.0
    data_dir: str | None = None


def get_config(smoke: bool = False, data_dir: str | None = None) -> Config:
    """(dataset, n_train, n_public, deletions) per data set; `smoke` runs in seconds."""
    if smoke:
        return Config(datasets=(("digits", 150, 300, 4),), methods=("exact", "newton"))
    extra = (("mnist", 2000, 2000, 50),) if data_dir else ()
    return Config(datasets=Config.datasets + extra, data_dir=data_dir)


def run(config: Config) -> dict[str, dict[str, dict]]:
    """{dataset: {method: {attack medians, distance, accuracy, privacy}}}."""
    out = {}
    for name, n_train, n_public, count in config.datasets:
        key = jax.random.key(0)
        pool = jr.load_dataset(name, key=key, data_dir=config.data_dir)
        sc = jr.make_scenario(pool, model="softmax", n_train=n_train, n_public=n_public, key=key)
        theta = jax.jit(jr.fit)(sc).params
        deleted = jr.draw_deletions(sc, count)
        out[name] = {}
        for method in config.methods:
            extra = (
                {"epsilon": config.epsilon} if method in ("certified", "descent-to-delete") else {}
            )
            unlearner = jr.make_unlearn(sc, theta, method, **extra)
            after = unlearner(deleted)
            names = [a for a in config.attacks if not (method == "sisa" and a == "informed")]
            recon = jr.make_attack(sc, unlearner.released, names)(after.params, deleted)
            summary = jr.summarize(jr.score(sc, recon, deleted))
            out[name][method] = {a: summary[a]["cosine_median"] for a in names} | {
                "distance_to_exact": float(np.median(after.exact_distance)),
                "test_accuracy": jr.utility(sc, unlearner.served).test_score,
                "noise_std": None if unlearner.privacy is None else unlearner.privacy.noise_std,
            }
    return out


def markdown_table(results: dict) -> str:
    lines = []
    for name, methods in results.items():
        lines += [f"{name}:", "", "| method | hrec | maxdiff | avg | informed | distance to exact "
                  "| test accuracy |", "|---" * 7 + "|"]  # fmt: skip
        for method, r in methods.items():
            cells = [
                f"{r.get(a, float('nan')):.3f}" for a in ("hrec", "maxdiff", "avg", "informed")
            ]
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {r['distance_to_exact']:.2e} "
                         f"| {r['test_accuracy']:.3f} |")  # fmt: skip
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else None
    results = run(get_config(smoke="--smoke" in sys.argv, data_dir=data_dir))
    os.makedirs("results", exist_ok=True)
    with open("results/unlearning_methods.json", "w") as f:
        json.dump(results, f, indent=2)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
