"""Headline table on the embedded digits: HRec vs Avg vs MaxDiff for ridge, logistic and softmax.

Command:   python experiments/digits_headline.py [--smoke]   (writes results/digits_headline.json)
Runtime:   about 15 s on a 2-core CPU (1,000 training digits, 617 public, 200 exact deletions
           per model, float64).
Headline:  HRec's median cosine similarity to the deleted digit is about 0.98 for every model,
           against 0.83 (Avg) and 0.90-0.93 (MaxDiff); softmax recovers every label.
"""

import dataclasses
import json
import os
import sys

import jax

import jaxrecon as jr


@dataclasses.dataclass(frozen=True)
class Config:
    models: tuple[str, ...] = ("ridge", "logistic", "softmax")
    n_train: int = 1000
    deletions: int = 200
    seed: int = 0


def get_config(smoke: bool = False) -> Config:
    """The experiment's configuration; `smoke` shrinks it to run in seconds in the tests."""
    return Config(n_train=200, deletions=10) if smoke else Config()


def run(config: Config) -> dict[str, dict]:
    """{model: {"utility", "max_grad_norm", "attacks": jr.summarize(scores)}}."""
    out = {}
    for model in config.models:
        key = jax.random.key(config.seed)
        sc = jr.make_scenario(jr.load_digits(), model=model, n_train=config.n_train, key=key)
        theta = jr.fit(sc).params
        deleted = jr.draw_deletions(sc, config.deletions)
        after = jr.make_unlearn(sc, theta)(deleted)
        recon = jr.make_attack(sc, theta)(after.params, deleted)  # hrec, avg, maxdiff
        out[model] = {
            "utility": jr.utility(sc, theta)._asdict(),
            "max_grad_norm": float(after.grad_norm.max()),
            "attacks": jr.summarize(jr.score(sc, recon, deleted)),
        }
    return out


def markdown_table(results: dict[str, dict]) -> str:
    """One row per model: test utility, then each attack's median cosine (label accuracy)."""
    lines = ["| model | utility (test) | hrec | avg | maxdiff |", "|---" * 5 + "|"]
    for model, r in results.items():
        cells = [f"{r['utility']['score_name']} {r['utility']['test_score']:.3f}"]
        for a in r["attacks"].values():
            acc = a["label_accuracy"]
            cells.append(f"{a['cosine_median']:.3f}" + (f" ({acc:.2f})" if acc is not None else ""))
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    results = run(get_config(smoke="--smoke" in sys.argv))
    os.makedirs("results", exist_ok=True)
    with open("results/digits_headline.json", "w") as f:
        json.dump(results, f, indent=2)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
