"""What a run reports: summary.json, the deletions.csv rows, arrays.npz, the table and figures.

Pure formatting of numbers the engine computed with the composition layer (`scenario`); the only
I/O is `write_outputs`, which writes every file atomically (`store.atomic_write`). Matplotlib is
imported when a figure is drawn, not before.
"""

from __future__ import annotations

import csv
import dataclasses
import importlib.metadata
import io
import json
import os
import platform
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxrecon import data as _data
from jaxrecon import reconstruction as _reconstruction
from jaxrecon import scenario as _scenario
from jaxrecon import unlearners as _unlearners
from jaxrecon._version import __version__
from jaxrecon.config import RunConfig
from jaxrecon.models import REGRESSION
from jaxrecon.store import atomic_write, text_writer


class RunResult(NamedTuple):
    """Everything a run computed.

    Attributes:
      summary: the summary.json object.
      rows: one dict per deletion (the deletions.csv rows, in order).
      arrays: the arrays.npz contents.
      grid: (column titles, rows of (label, [C, d] images)) for reconstructions.png, or None.
      image_shape: per-sample image shape, or None for tabular data.
    """

    summary: dict[str, Any]
    rows: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    grid: tuple[list[str], list[tuple[str, np.ndarray]]] | None
    image_shape: tuple[int, ...] | None


class Outcome(NamedTuple):
    """The per-deletion outputs of a run, concatenated over its chunks.

    Attributes:
      deleted: [B] training positions.
      unlearned: θ⁻ [B, ...], relative gradient norms [B] and steps [B] (`UnlearnResult`).
      results: {attack: AttackResult [B]}.
      scores: {attack: `reconstruction.Scores`}.
      fisher: [B] the Fisher lower bound on an unbiased attacker's per-coordinate MSE, or None.
      request: [B·k] each record's request when requests remove k > 1 records (then `deleted`,
        `results` and `scores` are per record and `unlearned` per request), else None.
    """

    deleted: np.ndarray
    unlearned: Any
    results: dict[str, Any]
    scores: dict[str, _reconstruction.Scores]
    fisher: np.ndarray | None = None
    request: np.ndarray | None = None


def summary(
    config: RunConfig,
    sc: _scenario.Scenario,
    fit: Any,
    unlearner: _unlearners.Unlearner,
    outcome: Outcome,
    timing: Mapping[str, float],
    chunks: Mapping[str, int],
    *,
    attacker: _scenario.Attacker | None = None,
) -> dict[str, Any]:
    """The summary.json object (README "Output files"); `model` scores the published θ⁺,
    `attack_hessian` and `attacker` describe `attacker`, the run's (default: the truth)."""
    attacker = sc.attacker if attacker is None else attacker
    resolved = dataclasses.replace(config, n_public=len(sc.info.roles.public))
    served = unlearner.served
    utility = _scenario.utility(sc, served)
    lo, hi = _reconstruction.attacker_hessian_extremes(sc, served, attacker)
    out = {
        "config": dataclasses.asdict(resolved) | {"attacks": list(config.attacks)},
        "data": _data_summary(sc),
        "model": utility._asdict()
        | {"train_steps": int(fit.steps), "train_grad_norm": float(fit.grad_norm)},
        "unlearning": _unlearning_summary(config, unlearner.kernel, outcome.unlearned),
        "attack_hessian": {"min_eigenvalue": lo, "max_eigenvalue": hi, "condition_number": hi / lo},
        "attacker": _attacker_summary(config, sc, attacker),
        "attacks": _reconstruction.summarize(outcome.scores),
        "timing_s": dict(timing),
        "chunks": dict(chunks),
        "versions": _versions(),
    }
    if unlearner.privacy is not None:
        out["privacy"] = unlearner.privacy._asdict() | _fisher_summary(outcome)
    return out


def _attacker_summary(
    config: RunConfig, sc: _scenario.Scenario, attacker: _scenario.Attacker
) -> dict[str, Any]:
    """What the attacker believed and held, beside the truth (README "Threat-model knobs")."""
    return {
        "n_train": int(attacker.n_train),
        "l2": float(attacker.l2),
        "n_public": int(attacker.public.labels.shape[0]),
        "public_shift": config.public_shift,
        "label_known": bool(attacker.label_known),
        "truth": {"n_train": sc.n_train, "l2": float(sc.l2)},
    }


def _fisher_summary(outcome: Outcome) -> dict[str, Any]:
    """The Fisher bound's median and each attack's median ratio of its MSE to the bound."""
    if outcome.fisher is None:
        return {}
    bound = np.asarray(outcome.fisher)
    if outcome.request is not None:
        bound = bound[outcome.request]
    ratios = {
        f"{name}_mse_over_bound_median": float(np.median(np.asarray(s.mse) / bound))
        for name, s in outcome.scores.items()
    }
    return {"fisher_mse_bound_median": float(np.median(bound))} | ratios


def _unlearning_summary(config: RunConfig, kernel: str, unlearned: Any) -> dict[str, Any]:
    grad_norms = np.asarray(unlearned.grad_norm)
    distance = np.asarray(unlearned.exact_distance)
    out = {
        "method": config.unlearning,
        "kernel": kernel,
        "max_grad_norm": float(np.max(grad_norms)),
        "median_grad_norm": float(np.median(grad_norms)),
        "max_newton_steps": int(np.max(np.asarray(unlearned.steps))),
        "converged": int(np.sum(grad_norms <= _scenario.EXACT_TOL)),
        "all_finite": bool(np.all(np.isfinite(np.asarray(unlearned.params)))),
        "median_exact_distance": float(np.median(distance)),
        "max_exact_distance": float(np.max(distance)),
    }
    if unlearned.residual_bound is not None:
        out["max_residual_bound"] = float(np.max(np.asarray(unlearned.residual_bound)))
    return out


def _data_summary(sc: _scenario.Scenario) -> dict[str, Any]:
    info = sc.info
    dataset, roles = info.dataset, info.roles
    return {
        "dataset": dataset.name,
        "source": dataset.source,
        "pool_size": len(dataset.y),
        "n_train": len(roles.train),
        "n_public": len(roles.public),
        "n_test": len(roles.test),
        "input_dim": int(dataset.x.shape[1]),
        "feature_dim": int(sc.train.features.shape[1]),
        "feature_map": info.feature_info,
        "task": sc.model.task,
        "label_rule": info.label_rule,
        "source_splits": {
            role: _data.origin_counts(dataset, getattr(roles, role))
            for role in ("train", "public", "test")
        },
        "standardized_columns": _standardized(dataset),
    }


def deletion_rows(sc: _scenario.Scenario, outcome: Outcome) -> list[dict[str, Any]]:
    """One deletions.csv row per deleted record: positions, true label, the unlearning's
    gradient norm and distance to exact retraining (of its request), and each attack's cosine,
    MSE, label and label correctness (empty for regression); with k > 1 records per request a
    `request` column first."""
    task = sc.model.task
    deleted = outcome.deleted
    y_true = np.asarray(sc.train.labels)[deleted]
    pool = sc.info.roles.train[deleted]
    request = np.arange(len(deleted)) if outcome.request is None else outcome.request
    per_request = {
        "unlearn_grad_norm": np.asarray(outcome.unlearned.grad_norm),
        "unlearn_exact_distance": np.asarray(outcome.unlearned.exact_distance),
    }
    if outcome.unlearned.residual_bound is not None:
        per_request["unlearn_residual_bound"] = np.asarray(outcome.unlearned.residual_bound)
    if outcome.fisher is not None:
        per_request["fisher_mse_bound"] = np.asarray(outcome.fisher)
    rows = []
    for d, p, y, r in zip(deleted, pool, y_true, request, strict=True):
        row = {} if outcome.request is None else {"request": int(r)}
        row |= {"train_index": int(d), "pool_index": int(p), "true_label": _label_value(y, task)}
        row |= {column: float(values[r]) for column, values in per_request.items()}
        rows.append(row)
    for name, s in outcome.scores.items():
        _attack_columns(rows, name, s, outcome, task, request)
    return rows


def _attack_columns(rows, name, scores, outcome, task, request) -> None:
    cos, err = np.asarray(scores.cosine), np.asarray(scores.mse)
    y_hat = np.asarray(outcome.results[name].y_hat)
    correct = None if scores.label_correct is None else np.asarray(scores.label_correct)
    rank = None if scores.reid_rank is None else np.asarray(scores.reid_rank)
    bound = None if outcome.fisher is None else np.asarray(outcome.fisher)[request]
    for i, row in enumerate(rows):
        row[f"{name}_cosine"] = float(cos[i])
        row[f"{name}_mse"] = float(err[i])
        row[f"{name}_label"] = _label_value(y_hat[i], task)
        row[f"{name}_label_correct"] = None if correct is None else int(correct[i])
        if rank is not None:
            row[f"{name}_reid_rank"] = int(rank[i])
        if bound is not None:
            row[f"{name}_mse_over_bound"] = float(err[i] / bound[i])


def run_arrays(sc: _scenario.Scenario, theta: Any, outcome: Outcome) -> dict[str, np.ndarray]:
    """The arrays.npz contents: enough to re-check a run without jaxrecon."""
    roles = sc.info.roles
    arrays = {
        "train_index": roles.train,
        "public_index": roles.public,
        "test_index": roles.test,
        "features_train": np.asarray(sc.train.features),
        "features_public": np.asarray(sc.public.features),
        "labels_train": np.asarray(sc.train.labels),
        "deleted": outcome.deleted,
        "theta_before": np.asarray(theta),
        "theta_after": np.asarray(outcome.unlearned.params),
    }
    if outcome.request is not None:
        arrays["request"] = outcome.request
    for name, result in outcome.results.items():
        arrays[f"recon_{name}"] = np.asarray(result.x_hat)
    return arrays


def grid(sc: _scenario.Scenario, outcome: Outcome):
    """One deleted sample per raw class: the original, then each attack's reconstruction
    (image data only; None otherwise). Returns (column titles, [(row label, [C, d] images)])."""
    dataset = sc.info.dataset
    if dataset.image_shape is None:
        return None
    train_rows = sc.info.roles.train[outcome.deleted]
    raw = dataset.y[train_rows]
    if dataset.num_classes is not None:
        classes = np.unique(raw)
        picks = [int(np.flatnonzero(raw == c)[0]) for c in classes]
        titles = [str(c) for c in classes]
    else:
        picks = list(range(min(10, len(outcome.deleted))))
        titles = [f"#{outcome.deleted[i]}" for i in picks]
    rows = [("original", dataset.x[train_rows][picks])]
    for name, result in outcome.results.items():
        rows.append((_reconstruction.ATTACKS[name].title, np.asarray(result.x_hat)[picks]))
    return titles, rows


def rows_to_csv(rows: list[dict[str, Any]]) -> str:
    """The deletions.csv text (floats written with repr precision, so reruns compare bytewise)."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]), lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(v) for k, v in row.items()})
    return buf.getvalue()


def format_table(summary: dict[str, Any]) -> str:
    """A short plain-text table of a run's headline numbers."""
    cfg, mdl, unl = summary["config"], summary["model"], summary["unlearning"]
    lines = [
        f"{cfg['dataset']} / {cfg['model']} / {cfg['unlearning']} unlearning: n_train "
        f"{cfg['n_train']}, n_public {cfg['n_public']}, {cfg['deletions']} deletions, "
        f"l2 {cfg['l2']}, {cfg['dtype']}",
        f"model {mdl['score_name']}: train {mdl['train_score']:.4f}, test {mdl['test_score']:.4f}"
        f"; unlearning max relative grad norm {unl['max_grad_norm']:.2e}",
        f"{'attack':<12} {'cos median':>10} {'cos p10':>8} {'cos mean':>9} {'label acc':>9}",
    ]
    for name, a in summary["attacks"].items():
        acc = "-" if a["label_accuracy"] is None else f"{a['label_accuracy']:.3f}"
        lines.append(
            f"{name:<12} {a['cosine_median']:>10.4f} {a['cosine_p10']:>8.4f} "
            f"{a['cosine_mean']:>9.4f} {acc:>9}"
        )
    t = summary["timing_s"]
    lines.append(
        f"time: train {t['train']:.2f}s, shared setup {t.get('setup', 0.0):.2f}s, "
        f"unlearn {t['unlearn']:.2f}s, attack {t['attack']:.2f}s"
    )
    return "\n".join(lines)


def write_outputs(result: RunResult, out_dir: str, *, save_arrays: bool = False) -> list[str]:
    """Writes the run's files into `out_dir`, each atomically (temporary file, then rename).

    Returns:
      The paths written.
    """
    from jaxrecon import plots

    os.makedirs(out_dir, exist_ok=True)
    written = []

    def put(name: str, writer: Callable[[str], None]) -> None:
        path = os.path.join(out_dir, name)
        atomic_write(path, writer)
        written.append(path)

    put("summary.json", text_writer(json.dumps(result.summary, indent=2) + "\n"))
    put("deletions.csv", text_writer(rows_to_csv(result.rows)))
    cosines = {
        name: np.array([r[f"{name}_cosine"] for r in result.rows])
        for name in result.summary["attacks"]
    }
    cfg = result.summary["config"]
    title = (
        f"{cfg['dataset']} / {cfg['model']} / {cfg['unlearning']} unlearning, "
        f"{len(result.rows)} deletions\n(lower curve = stronger attack)"
    )
    put("cdf.png", lambda tmp: plots.cdf_plot(cosines, tmp, title=title))
    if result.grid is not None and result.image_shape is not None:
        titles, rows = result.grid
        put(
            "reconstructions.png",
            lambda tmp: plots.reconstruction_grid(
                rows, result.image_shape, tmp, column_titles=titles
            ),
        )
    if save_arrays:

        def npz(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **result.arrays)

        put("arrays.npz", npz)
    return written


def _standardized(dataset: _data.Dataset) -> dict[str, Any] | None:
    """Which input columns were standardised with public-split statistics (None: none)."""
    mask = dataset.numeric_columns
    if mask is None or not np.any(mask):
        return None
    names = dataset.feature_names
    return {
        "statistics_from": "public split",
        "columns": [names[i] if names else i for i in np.flatnonzero(mask).tolist()],
    }


def _label_value(y, task):
    return float(y) if task == REGRESSION else int(y)


def _fmt(value):
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return value


def _versions() -> dict[str, str]:
    return {
        "jaxrecon": __version__,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }
