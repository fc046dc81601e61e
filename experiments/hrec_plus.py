"""HRec vs hrec-plus vs the baselines, and hrec-plus's ablation (issue 13): which of the
attacker's other knowledge helps, measured one ingredient at a time.

hrec-plus (`reconstruction.ATTACKS["hrec-plus"]`) is HRec with switchable ingredients: the data
box (clip x̂), shrinkage of the public Hessian toward its class-mean curvature with an intensity
chosen by simulating HRec across two public folds, a public-data sign and scale rule for records
whose bias coordinate is at the noise level, the Hessian averaged along θ⁺ → θ⁻ (off by default)
and gradient matching started from the closed-form answer (off by default). Variants:
`hrec-plus` (the defaults), `-box`, `-shrinkage`, `-sign` (one default removed), `+path`,
`+refine` (one extra added), `ledoit-wolf` (the Frobenius-optimal intensity instead) and
`+label` (the attacker knows the deleted label), beside HRec, Avg and MaxDiff.

Settings: digits ridge / logistic / softmax (1,000 train, the other 617 rows public, 200
deletions); with --data-dir: MNIST and Fashion-MNIST softmax (2,000 train, 2,000 public, 50
deletions: the issue's acceptance setting) and Adult logistic with few public samples (2,000
train, 100 public, 200 deletions: where the sign rule matters).

Command:   python experiments/hrec_plus.py [--smoke] [--data-dir ../shared/data]
Output:    results/hrec_plus.json, results/hrec_plus.png (cosine CDFs: HRec, hrec-plus and the
           baselines per setting), a markdown table on stdout.
Runtime:   digits about 1 min on a 2-core CPU; with --data-dir about 10 min.
"""

import dataclasses
import json
import os
import sys
import time

import jax
import numpy as np

import jaxrecon as jr
from jaxrecon import plots, reconstruction

# Variant -> (prepare options of hrec-plus, attacker knows the label).
VARIANTS = {
    "hrec-plus": ({}, False),
    "-box": ({"box": False}, False),
    "-shrinkage": ({"shrinkage": False}, False),
    "-sign": ({"sign_rule": False}, False),
    "+path": ({"path": 2}, False),
    "+refine": ({"refine": 100}, False),
    "ledoit-wolf": ({"shrinkage": "ledoit-wolf"}, False),
    "+label": ({}, True),
}
BASELINES = ("hrec", "avg", "maxdiff")


@dataclasses.dataclass(frozen=True)
class Setting:
    dataset: str
    model: str
    n_train: int
    n_public: int | None
    deletions: int


@dataclasses.dataclass(frozen=True)
class Config:
    settings: tuple[Setting, ...] = (
        Setting("digits", "ridge", 1000, None, 200),
        Setting("digits", "logistic", 1000, None, 200),
        Setting("digits", "softmax", 1000, None, 200),
    )
    variants: tuple[str, ...] = tuple(VARIANTS)
    seed: int = 0
    data_dir: str | None = None


REAL = (
    Setting("mnist", "softmax", 2000, 2000, 50),
    Setting("fashion_mnist", "softmax", 2000, 2000, 50),
    Setting("adult", "logistic", 2000, 100, 200),
)


def get_config(smoke: bool = False, data_dir: str | None = None) -> Config:
    """The experiment's configuration; `smoke` shrinks it to run in seconds without data files."""
    if smoke:
        return Config(
            settings=(Setting("digits", "softmax", 300, None, 10),),
            variants=("hrec-plus", "-shrinkage", "+path"),
        )
    if data_dir is None:
        return Config()
    return Config(settings=Config().settings + REAL, data_dir=data_dir)


def run_one(setting: Setting, config: Config) -> dict:
    """One setting: every variant's summary (jr.summarize) and cosines, the shrinkage α used."""
    key = jax.random.key(config.seed)
    pool = jr.load_dataset(setting.dataset, key=jr.subkey(key, "data"), data_dir=config.data_dir)
    sc = jr.make_scenario(
        pool, model=setting.model, n_train=setting.n_train, n_public=setting.n_public, key=key
    )
    start = time.perf_counter()
    theta = jr.fit(sc).params
    deleted = jr.draw_deletions(sc, setting.deletions)
    after = jr.make_unlearn(sc, theta)(deleted)
    recon = jr.make_attack(sc, theta, BASELINES)(after.params, deleted)
    alphas = {}
    for variant in config.variants:
        options, label_known = VARIANTS[variant]
        attacker = jr.make_attacker(sc, label_known=label_known)
        state = reconstruction.prepare_attack(sc, theta, "hrec-plus", attacker, **options)
        alphas[variant] = float(state.alpha)
        attack = jr.make_attack(sc, theta, ["hrec-plus"], attacker, states={"hrec-plus": state})
        recon[variant] = attack(after.params, deleted)["hrec-plus"]
        print(f"  {setting.dataset} {setting.model} {variant}", file=sys.stderr, flush=True)
    scores = jr.score(sc, recon, deleted)
    order = BASELINES + tuple(config.variants)
    return {
        "n_public": int(sc.public.labels.shape[0]),
        "max_grad_norm": float(np.max(after.grad_norm)),
        "attacks": {name: jr.summarize(scores)[name] for name in order},
        "cosines": {name: np.asarray(scores[name].cosine).tolist() for name in order},
        "shrinkage_alpha": alphas,
        "seconds": time.perf_counter() - start,
    }


def run(config: Config) -> dict[str, dict]:
    """{"<dataset> <model>": `run_one`'s result} for every setting."""
    out = {}
    for setting in config.settings:
        print(f"{setting.dataset} {setting.model} ...", file=sys.stderr, flush=True)
        out[f"{setting.dataset} {setting.model}"] = run_one(setting, config)
    return out


def markdown_table(results: dict) -> str:
    """Median cosine (10th percentile) of every attack and variant, one row per setting."""
    names = list(next(iter(results.values()))["attacks"])
    lines = ["| setting | m | " + " | ".join(names) + " |", "|---" * (len(names) + 2) + "|"]
    for setting, r in results.items():
        cells = [
            f"{r['attacks'][n]['cosine_median']:.3f} ({r['attacks'][n]['cosine_p10']:.3f})"
            for n in names
        ]
        lines.append(f"| {setting} | {r['n_public']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """Cosine CDFs per setting: HRec, hrec-plus and the baselines."""
    names = {"hrec-plus": "HRec+", "hrec": "HRec", "avg": "Avg", "maxdiff": "MaxDiff"}
    panels = [
        (setting, {title: r["cosines"][n] for n, title in names.items()})
        for setting, r in results.items()
    ]
    plots.cdf_grid([panels[i : i + 3] for i in range(0, len(panels), 3)], path)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else None
    config = get_config(smoke="--smoke" in sys.argv, data_dir=data_dir)
    results = run(config)
    os.makedirs("results", exist_ok=True)
    with open("results/hrec_plus.json", "w") as f:
        json.dump(results, f, indent=1)
    plot(results, "results/hrec_plus.png")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
