"""How robust is the attack to a weaker attacker (issue 13, DESIGN §2)? HRec and hrec-plus (and
the baselines where they apply) against the attacker's knowledge, one assumption at a time:

- public budget: m public samples, 50 ... 20,000 (the first m of one public pool, so the sets are
  nested); the smallest m at which each attack's median cosine reaches 0.9 is reported;
- a wrong n or l2: the attacker believes n·f or l2·f, f = 0.25 ... 4 (the operator's are true);
- shifted public data (`jr.shifted_public`): another class balance (balance:10), Gaussian noise
  on the inputs (noise:0.1, noise:0.3 in pixel units of [0, 1]), another data set of the same
  shape (Fashion-MNIST public data against an MNIST model and the reverse);
- the label: known or not (hrec-plus then answers the known label; gradient matching tries only
  it).

One θ⁺ and one batch of exact deletions per setting; only the attacker changes. Settings:
digits softmax (1,000 train, up to 617 public, 200 deletions); with --data-dir MNIST and
Fashion-MNIST softmax (2,000 train, 50 deletions, reference m = 2,000, the acceptance setting).

Command:   python experiments/threat_model.py [--smoke] [--data-dir ../shared/data]
Output:    results/threat_model.json, results/threat_model.png (per setting: median cosine
           against m, against the n and l2 factors, and per public shift), a markdown table.
Runtime:   digits about 2 min on a 2-core CPU; with --data-dir about 25 min.
"""

import dataclasses
import json
import os
import sys
import time

import jax
import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import jaxrecon as jr  # noqa: E402
from jaxrecon import scenario  # noqa: E402

SWEEP_ATTACKS = ("hrec", "hrec-plus", "avg", "maxdiff")  # against m and the shifts
BELIEF_ATTACKS = ("hrec", "hrec-plus")  # the only ones that read n and l2
TARGET = 0.9


@dataclasses.dataclass(frozen=True)
class Setting:
    dataset: str
    model: str
    n_train: int
    deletions: int
    m_reference: int
    shifts: tuple[str, ...] = ("none", "balance:10", "noise:0.1", "noise:0.3")


@dataclasses.dataclass(frozen=True)
class Config:
    settings: tuple[Setting, ...] = (Setting("digits", "softmax", 1000, 200, 617),)
    budgets: tuple[int, ...] = (50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000)
    factors: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0)
    label_attacks: tuple[str, ...] = ("hrec-plus", "gradmatch")
    seed: int = 0
    data_dir: str | None = None


REAL = (
    Setting("mnist", "softmax", 2000, 50, 2000, Setting.shifts + ("dataset:fashion_mnist",)),
    Setting("fashion_mnist", "softmax", 2000, 50, 2000, Setting.shifts + ("dataset:mnist",)),
)


def get_config(smoke: bool = False, data_dir: str | None = None) -> Config:
    """The experiment's configuration; `smoke` shrinks it to run in seconds without data files."""
    if smoke:
        return Config(
            settings=(Setting("digits", "softmax", 300, 8, 200, ("noise:0.1",)),),
            budgets=(200,),
            factors=(0.5,),
            label_attacks=("hrec-plus",),
        )
    if data_dir is None:
        return Config()
    return Config(settings=Config().settings + REAL, data_dir=data_dir)


def _attack(sc, theta, after, deleted, names, attacker):
    """{name: summary} of `names` against the exact deletions, with this attacker."""
    recon = jr.make_attack(sc, theta, names, attacker)(after.params, deleted)
    return jr.summarize(jr.score(sc, recon, deleted))


def _row(summary: dict) -> dict:
    keep = ("cosine_median", "cosine_p10", "label_accuracy")
    return {name: {k: s[k] for k in keep} for name, s in summary.items()}


def run_one(setting: Setting, config: Config) -> dict:
    """One setting: the public-budget sweep, the belief sweeps, the shifts and the label."""
    key = jax.random.key(config.seed)
    load = lambda name: jr.load_dataset(  # noqa: E731
        name, key=jr.subkey(key, "data"), data_dir=config.data_dir
    )
    pool = load(setting.dataset)
    biggest = len(pool.y) - round(0.1 * len(pool.y)) - setting.n_train
    budgets = tuple(m for m in config.budgets if m < biggest) + (
        (biggest,) if max(config.budgets) >= biggest else ()
    )
    sc = jr.make_scenario(
        pool, model=setting.model, n_train=setting.n_train, n_public=max(budgets), key=key
    )
    theta = jr.fit(sc).params
    deleted = jr.draw_deletions(sc, setting.deletions)
    after = jr.make_unlearn(sc, theta)(deleted)
    start = time.perf_counter()

    def public(m):
        return scenario.Data(*(a[:m] for a in sc.public))

    out = {"budgets": {}, "n_factor": {}, "l2_factor": {}, "shifts": {}, "label": {}}
    for m in budgets:
        attacker = jr.make_attacker(sc, public=public(m))
        out["budgets"][m] = _row(_attack(sc, theta, after, deleted, SWEEP_ATTACKS, attacker))
        print(f"  {setting.dataset} m={m}", file=sys.stderr, flush=True)
    reference = dataclasses.replace(sc, public=public(setting.m_reference))
    for f in config.factors:
        believes_n = jr.make_attacker(
            reference, public=reference.public, n_train=max(2, round(f * setting.n_train))
        )
        believes_l2 = jr.make_attacker(reference, public=reference.public, l2=f * float(sc.l2))
        for name, attacker in (("n_factor", believes_n), ("l2_factor", believes_l2)):
            out[name][f] = _row(_attack(sc, theta, after, deleted, BELIEF_ATTACKS, attacker))
        print(f"  {setting.dataset} factor {f}", file=sys.stderr, flush=True)
    for shift in setting.shifts:
        other = load(shift.partition(":")[2]) if shift.startswith("dataset:") else None
        shifted = jr.shifted_public(reference, shift, key=jr.subkey(key, "public"), dataset=other)
        attacker = jr.make_attacker(sc, public=shifted)
        out["shifts"][shift] = _row(_attack(sc, theta, after, deleted, SWEEP_ATTACKS, attacker))
        print(f"  {setting.dataset} {shift}", file=sys.stderr, flush=True)
    for known in (False, True):
        attacker = jr.make_attacker(reference, public=reference.public, label_known=known)
        summary = _attack(sc, theta, after, deleted, config.label_attacks, attacker)
        out["label"]["known" if known else "unknown"] = _row(summary)
    out["budget_for_target"] = {
        name: budget_for(out["budgets"], name, TARGET) for name in SWEEP_ATTACKS
    }
    out["max_grad_norm"] = float(np.max(after.grad_norm))
    out["seconds"] = time.perf_counter() - start
    return out


def budget_for(budgets: dict, name: str, target: float) -> float | None:
    """The public budget m at which `name`'s median cosine first reaches `target`, interpolated
    linearly in log m between the two budgets around it (None: never reached in the sweep)."""
    ms = sorted(budgets)
    medians = [budgets[m][name]["cosine_median"] for m in ms]
    for i, (m, med) in enumerate(zip(ms, medians, strict=True)):
        if med >= target:
            if i == 0:
                return float(m)
            lo, hi = np.log(ms[i - 1]), np.log(m)
            t = (target - medians[i - 1]) / (med - medians[i - 1])
            return float(np.exp(lo + t * (hi - lo)))
    return None


def run(config: Config) -> dict[str, dict]:
    """{"<dataset> <model>": `run_one`'s result} for every setting."""
    out = {}
    for setting in config.settings:
        print(f"{setting.dataset} {setting.model} ...", file=sys.stderr, flush=True)
        out[f"{setting.dataset} {setting.model}"] = run_one(setting, config)
    return out


def markdown_table(results: dict) -> str:
    """Per setting: the budget each attack needs for a median of 0.9, then the medians under
    the reference budget for every belief factor and shift."""
    lines = []
    for setting, r in results.items():
        need = ", ".join(
            f"{n} {'never' if v is None else f'{v:,.0f}'}"
            for n, v in r["budget_for_target"].items()
        )
        lines += [f"**{setting}** — public samples for median {TARGET}: {need}", ""]
        lines += ["| knob | value | " + " | ".join(SWEEP_ATTACKS) + " |"]
        lines += ["|---" * (len(SWEEP_ATTACKS) + 2) + "|"]
        for knob in ("budgets", "n_factor", "l2_factor", "shifts"):
            for value, row in r[knob].items():
                cells = [
                    f"{row[n]['cosine_median']:.3f}" if n in row else "" for n in SWEEP_ATTACKS
                ]
                lines.append(f"| {knob} | {value} | " + " | ".join(cells) + " |")
        for known, row in r["label"].items():
            cells = [
                f"{s['cosine_median']:.3f} (labels {s['label_accuracy']:.2f}) {n}"
                for n, s in row.items()
            ]
            lines.append(f"| label {known} | | " + "; ".join(cells) + " | | | |")
        lines.append("")
    return "\n".join(lines)


def plot(results: dict, path: str) -> None:
    """One row per setting: median cosine against m (log), the n factor, the l2 factor, and a
    bar per public shift (HRec and hrec-plus)."""
    rows = len(results)
    fig, axes = plt.subplots(rows, 4, figsize=(14, 3.0 * rows), squeeze=False)
    for i, (setting, r) in enumerate(results.items()):
        ax = axes[i, 0]
        ms = sorted(r["budgets"], key=float)
        for name in SWEEP_ATTACKS:
            ax.plot(
                [float(m) for m in ms],
                [r["budgets"][m][name]["cosine_median"] for m in ms],
                marker="o",
                label=name,
            )
        ax.axhline(TARGET, color="gray", ls=":", lw=1)
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_xlabel("public samples m")
        ax.set_ylabel(f"{setting}\nmedian cosine")
        ax.legend(fontsize=7)
        for j, knob in ((1, "n_factor"), (2, "l2_factor")):
            ax = axes[i, j]
            fs = sorted(r[knob], key=float)
            for name in BELIEF_ATTACKS:
                ax.plot(
                    [float(f) for f in fs],
                    [r[knob][f][name]["cosine_median"] for f in fs],
                    marker="o",
                    label=name,
                )
            ax.set_xscale("log", base=2)
            ax.set_xlabel(f"believed {knob.split('_')[0]} / true")
            ax.legend(fontsize=7)
        ax = axes[i, 3]
        shifts = list(r["shifts"])
        for k, name in enumerate(SWEEP_ATTACKS):
            ax.bar(
                np.arange(len(shifts)) + 0.2 * (k - 1.5),
                [r["shifts"][s][name]["cosine_median"] for s in shifts],
                width=0.2,
                label=name,
            )
        ax.set_xticks(np.arange(len(shifts)), shifts, rotation=20, fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_xlabel("public data")
        ax.legend(fontsize=6)
    for ax in axes.ravel():
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    data_dir = sys.argv[sys.argv.index("--data-dir") + 1] if "--data-dir" in sys.argv else None
    config = get_config(smoke="--smoke" in sys.argv, data_dir=data_dir)
    results = run(config)
    os.makedirs("results", exist_ok=True)
    with open("results/threat_model.json", "w") as f:
        json.dump(results, f, indent=1)
    plot(results, "results/threat_model.png")
    print(markdown_table(results))


if __name__ == "__main__":
    main()
