"""Auditing released scikit-learn models: HRec from two snapshots, with and without knowing n.

Command:   python experiments/audit_sklearn.py [--smoke]   (writes results/audit_sklearn.json)
           python experiments/audit_sklearn.py --adult ../shared/data   (UCI Adult, census data:
           logistic regression and LinearSVC; writes results/audit_sklearn_adult.json)
Runtime:   about 10-40 s on a 2-core CPU (digits: 1,000 training and 617 public records, 20
           deletions per estimator, each θ⁻ a scikit-learn refit without the record; float64).
Headline:  from two scikit-learn releases and the public digits alone, HRec rebuilds the deleted
           digit far better than Avg / MaxDiff for Ridge, LogisticRegression (binary and
           multinomial) and LinearSVC, whether n is given or estimated from the update; an
           SGDClassifier's own optimisation noise hides the deletion.

Every θ⁻ is a fresh `fit` of the same estimator on the training set minus one record (exact
retraining as an operator would do it, tight tolerances); the snapshots go through skops files
(`skops.io.dump` -> `snapshots.load_snapshot`) so the measured path is the file path.
"""

import dataclasses
import json
import os
import sys
import tempfile

import jax
import numpy as np

from jaxrecon import auditing, data, snapshots

ESTIMATORS = ("ridge", "logistic", "softmax", "svm", "sgd")


@dataclasses.dataclass(frozen=True)
class Config:
    estimators: tuple[str, ...] = ESTIMATORS
    n_train: int = 1000
    n_public: int = 617
    deletions: int = 20
    seed: int = 0
    dataset: str = "digits"  # or "adult" (binary estimators only; needs data_dir)
    data_dir: str | None = None


def get_config(smoke: bool = False) -> Config:
    """The experiment's configuration; `smoke` shrinks it to run in seconds in the tests."""
    if smoke:
        return Config(estimators=("logistic", "softmax"), n_train=300, n_public=400, deletions=3)
    return Config()


def make_estimator(name: str, seed: int):
    """The scikit-learn estimator of `name`, with tolerances tight enough for exact refits."""
    from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
    from sklearn.svm import LinearSVC

    return {
        "ridge": lambda: Ridge(alpha=1.0),
        "logistic": lambda: LogisticRegression(C=1.0, solver="newton-cholesky", tol=1e-10),
        "softmax": lambda: LogisticRegression(C=1.0, tol=1e-10, max_iter=10_000),
        "svm": lambda: LinearSVC(C=1.0, tol=1e-10, max_iter=100_000),
        "sgd": lambda: SGDClassifier(
            loss="log_loss", alpha=1e-3, max_iter=200, tol=None, average=True, random_state=seed
        ),
    }[name]()


def targets(name: str, y: np.ndarray) -> np.ndarray:
    """Labels as each estimator learns them: the value (ridge), a binary label (digits: digit
    >= 5; two-class data: as is), or the class."""
    if name == "ridge":
        return y.astype(np.float64)
    if name in ("logistic", "svm", "sgd") and y.max() > 1:
        return (y >= 5).astype(np.int64)
    return y


def load(config: Config) -> data.Dataset:
    """Digits, or UCI Adult with its numeric columns standardised on the public rows."""
    if config.dataset == "digits":
        return data.load_digits()
    ds = data.load_dataset(
        config.dataset, key=jax.random.key(config.seed), data_dir=config.data_dir
    )
    rows = _roles(config, len(ds.y))[1]
    return data.standardize_public(ds, rows)


def _roles(config: Config, size: int) -> tuple[np.ndarray, np.ndarray]:
    perm = np.asarray(jax.random.permutation(jax.random.key(config.seed), size))
    return perm[: config.n_train], perm[config.n_train : config.n_train + config.n_public]


def run(config: Config) -> dict[str, dict]:
    """{estimator: {"given": summary, "estimated": summary, "n_estimate": ..., ...}}."""
    import skops.io as sio

    ds = load(config)
    train, public = _roles(config, len(ds.y))
    deleted = np.sort(
        np.random.default_rng(config.seed).choice(config.n_train, config.deletions, replace=False)
    )
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in config.estimators:
            x, y = ds.x[train], targets(name, ds.y[train])

            def release(rows, tag, name=name, x=x, y=y):
                est = make_estimator(name, config.seed).fit(x[rows], y[rows])
                path = os.path.join(tmp, f"{name}-{tag}.skops")
                sio.dump(est, path)
                return snapshots.load_snapshot(path, argument=tag)

            before = release(np.arange(config.n_train), "before")
            afters = [
                release(np.delete(np.arange(config.n_train), j), f"after{j}") for j in deleted
            ]
            common = dict(truth_x=x[deleted], truth_y=y[deleted])
            pub_x, pub_y = ds.x[public], targets(name, ds.y[public])
            given = auditing.run_audit(
                before, afters, pub_x, pub_y, n_train=config.n_train, **common
            )
            estimated = auditing.run_audit(before, afters, pub_x, pub_y, **common)
            out[name] = {
                "kind": before.kind,
                "given": _row(given),
                "estimated": _row(estimated),
            }
    return out


def _row(result: auditing.AuditResult) -> dict:
    s = auditing.summary(result)
    b, e = result.beliefs, result.estimates
    sens = np.stack(list(result.sensitivity.values()))
    return {
        "n_train": b.n_train,
        "n_source": b.n_source,
        "l2": b.l2,
        "l2_per_sample_stationarity": e.l2_per_sample,
        "stationarity_residual": e.stationarity_residual,
        "n_estimate": s["estimates"]["n_train_update_scale"],
        "sensitivity_min_cosine": {k: float(v.min()) for k, v in result.sensitivity.items()},
        "sensitivity_median_cosine": float(np.median(sens)),
        "label_spread_max": float(np.max(result.label_spread)),
        "truth": s["truth"],
    }


def markdown_table(results: dict[str, dict]) -> str:
    """One row per estimator: HRec / Avg / MaxDiff median cosine (label accuracy, or ridge's
    label MAE) with n given, HRec with n left to the audit, the n it used (estimated, or read
    from the snapshot), and the smallest sensitivity cosine."""
    lines = [
        "| estimator | hrec (n given) | avg | maxdiff | hrec (n estimated) | n estimated "
        "| min cos under n, λ x0.5/x2 |",
        "|---" * 7 + "|",
    ]
    for r in results.values():
        g, e = r["given"], r["estimated"]

        def cell(t):
            acc, mae = t["label_accuracy"], t["label_mae"]
            extra = (
                f" ({acc:.2f})"
                if acc is not None
                else f" (MAE {mae:.2f})"
                if mae is not None
                else ""
            )
            return f"{t['cosine_median']:.3f}" + extra

        n_cell = f"{e['n_train']:.0f} ({e['n_source'].split(':')[0]})"
        sens = min(g["sensitivity_min_cosine"].values())
        lines.append(
            f"| {r['kind']} | {cell(g['truth']['hrec'])} | {cell(g['truth']['avg'])} | "
            f"{cell(g['truth']['maxdiff'])} | {cell(e['truth']['hrec'])} | {n_cell} | "
            f"{sens:.3f} |"
        )
    return "\n".join(lines)


def main() -> None:
    jax.config.update("jax_enable_x64", True)
    config, name = get_config(smoke="--smoke" in sys.argv), "audit_sklearn"
    if "--adult" in sys.argv:
        folder = sys.argv[sys.argv.index("--adult") + 1]
        config = dataclasses.replace(
            config,
            estimators=("logistic", "svm"),
            n_train=2000,
            n_public=2000,
            dataset="adult",
            data_dir=folder,
        )
        name = "audit_sklearn_adult"
    results = run(config)
    os.makedirs("results", exist_ok=True)
    with open(f"results/{name}.json", "w") as f:
        json.dump(results, f, indent=2)
    print(markdown_table(results))


if __name__ == "__main__":
    main()
