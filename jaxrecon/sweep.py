"""Sweeps: a grid of `jaxrecon run`s from a small TOML or JSON file, resumable, one combined table.

Grid file (TOML shown; JSON with the same keys works too)::

    datasets = ["digits"]                 # default ["digits"]
    models = ["ridge", "logistic", "softmax"]
    unlearning = ["exact"]                # default ["exact"]
    seeds = [0, 1, 2]                     # default [0]

    [options]                             # any other `RunConfig` field, shared by every run
    n_train = 500
    deletions = 50
    attacks = ["hrec", "avg", "maxdiff"]

Every run goes to `<out>/<dataset>__<model>__<unlearning>__seed<seed>/` exactly as `jaxrecon run
--out` would write it, so an interrupted sweep resumes run by run and chunk by chunk. When all runs
are done, `<out>/sweep.csv` holds one row per run.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import os
import re
import tomllib
from typing import Any

from jaxrecon import engine, report, store
from jaxrecon.config import RunConfig
from jaxrecon.errors import InputError

_GRID_KEYS = {"datasets": "dataset", "models": "model", "unlearning": "unlearning", "seeds": "seed"}


def load_grid(path: str) -> dict[str, Any]:
    """Reads a grid file (.toml or .json).

    Raises:
      InputError: unreadable file, unknown key or bad value (named in the message).
    """
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise InputError(f"grid: cannot read {path!r} ({err.strerror})") from None
    try:
        if path.endswith(".json"):
            grid = json.loads(raw)
        else:
            grid = tomllib.loads(raw.decode())
    except (ValueError, UnicodeDecodeError) as err:
        raise InputError(f"grid: {path!r} is not valid {_kind(path)}: {err}") from None
    if not isinstance(grid, dict):
        raise InputError(f"grid: {path!r} must hold a table/object at the top level")
    unknown = set(grid) - set(_GRID_KEYS) - {"options"}
    if unknown:
        raise InputError(
            f"grid: unknown key {sorted(unknown)[0]!r} in {path!r}; allowed: "
            f"{', '.join(sorted(_GRID_KEYS))}, options"
        )
    return grid


def expand(grid: dict[str, Any]) -> list[tuple[str, RunConfig]]:
    """The grid's runs as (folder name, validated RunConfig), in a fixed order."""
    fields = {f.name for f in dataclasses.fields(RunConfig)}
    options = dict(grid.get("options", {}))
    for key in options:
        if key not in fields or key in _GRID_KEYS.values():
            raise InputError(
                f"grid: options.{key} is not a run option (or is a grid axis); allowed: "
                f"{', '.join(sorted(fields - set(_GRID_KEYS.values())))}"
            )
    if "attacks" in options:
        options["attacks"] = tuple(options["attacks"])
    axes = {}
    for key, field in _GRID_KEYS.items():
        default = [getattr(RunConfig(), field)]
        values = grid.get(key, default)
        if not isinstance(values, list) or not values:
            raise InputError(f"grid: {key} must be a non-empty list, got {values!r}")
        axes[field] = values
    runs = []
    for dataset in axes["dataset"]:
        for model in axes["model"]:
            for method in axes["unlearning"]:
                for seed in axes["seed"]:
                    config = RunConfig(
                        dataset=dataset, model=model, unlearning=method, seed=seed, **options
                    )
                    try:
                        config.validate()
                    except InputError as err:
                        raise InputError(
                            f"grid run {dataset}/{model}/{method}/seed {seed}: {err}"
                        ) from None
                    name = _safe(f"{dataset}__{model}__{method}__seed{seed}")
                    runs.append((name, config))
    return runs


def run_sweep(
    grid_path: str, out_dir: str, *, overwrite: bool = False, progress: bool = True
) -> list[dict[str, Any]]:
    """Runs (or resumes) every run of the grid and writes `<out_dir>/sweep.csv`.

    Returns:
      The sweep.csv rows.
    """
    from tqdm.auto import tqdm

    runs = expand(load_grid(grid_path))
    os.makedirs(out_dir, exist_ok=True)
    rows = []
    for name, config in tqdm(runs, desc="sweep", unit="run", disable=not progress):
        folder = os.path.join(out_dir, name)
        resumed = store.prepare_out_dir(folder, config, overwrite=overwrite)
        summary_path = os.path.join(folder, "summary.json")
        if resumed and os.path.exists(summary_path):
            with open(summary_path) as f:
                summary = json.load(f)
        else:
            result = engine.run(
                config, progress=progress, checkpoint_dir=folder, overwrite=overwrite
            )
            result.summary["config"]["out"] = folder
            report.write_outputs(result, folder, save_arrays=config.save_arrays)
            summary = result.summary
        rows.append(_row(name, summary))
    store.atomic_write(os.path.join(out_dir, "sweep.csv"), store.text_writer(_csv(rows)))
    return rows


def _row(name: str, summary: dict[str, Any]) -> dict[str, Any]:
    cfg = summary["config"]
    row = {
        "run": name,
        "dataset": cfg["dataset"],
        "model": cfg["model"],
        "unlearning": cfg["unlearning"],
        "seed": cfg["seed"],
        "n_train": cfg["n_train"],
        "n_public": cfg["n_public"],
        "deletions": cfg["deletions"],
        "score_name": summary["model"]["score_name"],
        "test_score": summary["model"]["test_score"],
        "max_grad_norm": summary["unlearning"]["max_grad_norm"],
    }
    for attack, values in summary["attacks"].items():
        for key in ("cosine_median", "cosine_p10", "cosine_mean", "label_accuracy"):
            row[f"{attack}_{key}"] = values[key]
    return row


def _csv(rows: list[dict[str, Any]]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [c for c in row if c not in columns]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow(
            {
                k: "" if v is None else (repr(v) if isinstance(v, float) else v)
                for k, v in row.items()
            }
        )
    return buf.getvalue()


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _kind(path: str) -> str:
    return "JSON" if path.endswith(".json") else "TOML"
