"""The main job: config -> data -> train -> delete -> unlearn -> attack -> metrics -> files.

`run(config)` returns every number and array in memory; `write_outputs(result, out_dir)` writes
summary.json, deletions.csv, cdf.png, reconstructions.png (image data) and, on request,
arrays.npz. Deletions are processed in fixed-size chunks by ONE jitted kernel per stage (the
last chunk is padded), so no deletion recompiles anything and memory stays bounded.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import hashlib
import importlib.metadata
import io
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

try:  # jax >= 0.7
    from jax import shard_map as _shard_map
except ImportError:  # pragma: no cover - older jax
    from jax.experimental.shard_map import shard_map as _shard_map
from tqdm.auto import tqdm

from jaxrecon import attacks as _attacks
from jaxrecon import data as _data
from jaxrecon import features as _features
from jaxrecon import metrics as _metrics
from jaxrecon import models as _models
from jaxrecon import plots as _plots
from jaxrecon import solvers as _solvers
from jaxrecon import unlearning as _unlearning
from jaxrecon.errors import InputError, NumericalError
from jaxrecon.models import BINARY, MULTICLASS, REGRESSION

ATTACKS = ("hrec", "avg", "maxdiff", "informed", "gradmatch", "updates-leak")
# What `--attacks` means by default: the paper's comparison (the others cost more or assume more).
DEFAULT_ATTACKS = ("hrec", "avg", "maxdiff")
FEATURES = ("identity", "rff")
# Parameter counts D·K up to this train by dense Newton; above it, Newton-CG with a Nyström
# preconditioner.
DENSE_LIMIT = 3000
# Parameter counts up to this unlearn logistic / softmax with one explicit [P, P] inverse Hessian
# shared by all deletions (`unlearning.unlearn_glm`; 8192² float64 = 0.5 GB per matrix, the
# MNIST softmax's 785 x 10 fits); above it nothing [P, P] is formed (Newton-CG, Nyström).
DENSE_UNLEARN_LIMIT = 8192
# Model families that `unlearning.unlearn_glm` serves (smooth losses).
CHORD_MODELS = ("logistic", "softmax")
NYSTROM_RANK = 200
# DESIGN §3.5: an unlearned model is "exact" when its relative gradient norm is at most this.
EXACT_TOL = 1e-8
UNLEARNING_METHODS = ("exact",)
DTYPES = ("float64", "float32")


@dataclasses.dataclass(frozen=True)
class RunConfig:
    """Every option of `jaxrecon run` (see the README's CLI reference).

    Attributes:
      dataset: data set name (`data.DATASETS`; parameters after a colon, e.g. "acs_income:NY").
      model: "ridge", "logistic" or "softmax".
      unlearning: "exact".
      attacks: attacks to run, a subset of `ATTACKS`.
      n_train: training-set size n.
      n_public: the attacker's public samples m; None = the rest of the pool minus the test split.
      deletions: B, single-sample deletions drawn at random from the training set.
      l2: regulariser λ (> 0).
      seed: seeds the split, the deleted indices and synthetic data.
      data_dir: folder with local data files, also the tfds / folktables data root (unused by
        the embedded data sets).
      download: allow downloading a data set that has no local copy (tfds, folktables).
      dtype: "float64" (exactness) or "float32" (speed on accelerators).
      chunk_size: deletions per compiled batch (rounded up to a multiple of the devices).
      save_arrays: also write arrays.npz.
      devices: shard each chunk's deletions over this many local devices (None: all of them).
        Results do not depend on it.
      features: "identity" (p = [x, 1]) or "rff" (random Fourier features plus the bias).
      rff_dim: number of random Fourier features F (D = F + 1).
      rff_bandwidth: RFF kernel bandwidth σ; None = the median pairwise distance of the public
        inputs (the median heuristic; the attacker knows the map, DESIGN §2).
    """

    dataset: str = "digits"
    model: str = "softmax"
    unlearning: str = "exact"
    attacks: tuple[str, ...] = DEFAULT_ATTACKS
    n_train: int = 1000
    n_public: int | None = None
    deletions: int = 200
    l2: float = 1.0
    seed: int = 0
    data_dir: str | None = None
    dtype: str = "float64"
    chunk_size: int = 100
    save_arrays: bool = False
    devices: int | None = None
    features: str = "identity"
    rff_dim: int = 4096
    rff_bandwidth: float | None = None
    download: bool = False

    def validate(self) -> RunConfig:
        """Checks every option that does not need the data; returns self.

        Raises:
          InputError: naming the option and its value.
        """
        _choice("--model", self.model, sorted(_models.MODELS))
        _choice("--unlearning", self.unlearning, UNLEARNING_METHODS)
        _choice("--dtype", self.dtype, DTYPES)
        _choice("--features", self.features, FEATURES)
        _positive_int("--rff-dim", self.rff_dim, minimum=1)
        if self.rff_bandwidth is not None and not (
            np.isfinite(self.rff_bandwidth) and self.rff_bandwidth > 0
        ):
            raise InputError(
                f"--rff-bandwidth: must be a finite number > 0, got {self.rff_bandwidth}"
            )
        _data.parse_dataset_name(self.dataset)
        if not self.attacks:
            raise InputError("--attacks: give at least one attack")
        for name in self.attacks:
            _choice("--attacks", name, ATTACKS)
        if len(set(self.attacks)) != len(self.attacks):
            raise InputError(f"--attacks: duplicate attack in {','.join(self.attacks)!r}")
        _positive_int("--n-train", self.n_train, minimum=2)
        if self.n_public is not None:
            _positive_int("--n-public", self.n_public, minimum=1)
        _positive_int("--deletions", self.deletions, minimum=1)
        _positive_int("--chunk-size", self.chunk_size, minimum=1)
        if self.devices is not None:
            _positive_int("--devices", self.devices, minimum=1)
        if self.deletions > self.n_train:
            raise InputError(
                f"--deletions: must be <= --n-train ({self.n_train}), got {self.deletions}"
            )
        if not np.isfinite(self.l2) or self.l2 <= 0:
            raise InputError(
                f"--l2: must be a finite number > 0 (the objective must be strongly "
                f"convex), got {self.l2}"
            )
        if int(self.seed) != self.seed or self.seed < 0:
            raise InputError(f"--seed: must be a non-negative integer, got {self.seed!r}")
        return self


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


def task_labels(dataset: _data.Dataset, task: str) -> np.ndarray:
    """The labels a model of `task` learns from the raw labels of `dataset`.

    - regression: the raw value (digits: the digit 0..9 as a number), or the data set's own
      regression target once `data.task_view` has put it in place of the label;
    - binary: the raw binary label; for K > 2 classes y >= K // 2 (digits: digit >= 5); for
      real-valued targets y > median(y);
    - multiclass: the raw class id (needs a classification data set).

    Raises:
      InputError: a multiclass model on real-valued targets.
    """
    y = dataset.y
    if task == REGRESSION:
        return y.astype(np.float64)
    if task == BINARY:
        if dataset.num_classes is None:
            return (y > np.median(y)).astype(np.int64)
        if dataset.num_classes == 2:
            return y.astype(np.int64)
        return (y >= dataset.num_classes // 2).astype(np.int64)
    if dataset.num_classes is None:
        raise InputError(
            f"--model: a multiclass model needs class labels, but data set "
            f"{dataset.name!r} has real-valued targets"
        )
    return y.astype(np.int64)


def run(
    config: RunConfig,
    *,
    progress: bool = True,
    checkpoint_dir: str | None = None,
    overwrite: bool = False,
) -> RunResult:
    """Runs the whole job for `config` and returns the results.

    Args:
      config: the run's options.
      progress: show a progress bar over the chunks of deletions.
      checkpoint_dir: if given, every finished chunk of deletions is saved there atomically
        (`chunks/chunk-<k>.npz`, tagged with the config hash) and chunks already saved by an
        earlier, interrupted run of the same config are loaded instead of recomputed. Nothing
        is written before the data, the options and training have passed their checks.
        Without it, nothing is written.
      overwrite: let `checkpoint_dir` replace a run with a different config.

    Raises:
      InputError: a bad option or data set (the message names it).
      NumericalError: a solve returned non-finite values (the message names the deletion).
    """
    config.validate()
    dtype = jnp.dtype(config.dtype)
    if dtype == jnp.float64 and not jax.config.jax_enable_x64:
        raise InputError("--dtype float64 needs jax_enable_x64 (the CLI enables it)")
    key = jax.random.key(config.seed)
    k_data, k_split, k_delete = jax.random.split(key, 3)

    dataset = _data.load_dataset(
        config.dataset, key=k_data, data_dir=config.data_dir, download=config.download
    )
    if config.model in ("softmax", "ridge-onehot") and dataset.num_classes is None:
        raise InputError(
            f"--model: {config.model} needs class labels, but data set {dataset.name!r} "
            "has real-valued targets"
        )
    classes = dataset.num_classes
    if config.model == "svm" and (classes is None or classes <= 2):
        classes = None  # binary squared-hinge SVM; one-vs-rest for K > 2 classes
    model = _models.make_model(config.model, classes)
    dataset = _data.task_view(dataset, model.task)
    labels = task_labels(dataset, model.task)
    roles = _data.split(k_split, len(labels), config.n_train, config.n_public)
    dataset = _data.standardize_public(dataset, roles.public)
    n, m = len(roles.train), len(roles.public)
    resolved = dataclasses.replace(config, n_public=m)
    fmap, feature_info = _feature_map(config, dataset, roles.public, jax.random.fold_in(key, 1))

    def feats(idx):
        return jax.jit(fmap.apply)(jnp.asarray(dataset.x[idx], dtype))

    def labs(idx):
        return jnp.asarray(labels[idx], dtype if model.task == REGRESSION else jnp.int32)

    train_x = dataset.x[roles.train]
    arrays_in = {
        "features": feats(roles.train),
        "labels": labs(roles.train),
        "public_features": feats(roles.public),
        "public_labels": labs(roles.public),
        "public_x": jnp.asarray(dataset.x[roles.public], dtype),
        "rff": fmap.params,
    }
    l2 = jnp.asarray(config.l2, dtype)

    # Train θ⁺ on the full training set.
    t0 = time.perf_counter()
    fit = _train(model, arrays_in["features"], arrays_in["labels"], l2, jax.random.fold_in(key, 2))
    theta = jax.block_until_ready(fit.params)
    if not bool(jnp.all(jnp.isfinite(theta))):
        raise InputError(
            f"training produced non-finite parameters (--l2 {config.l2}, "
            f"--dtype {config.dtype}); the data may contain non-finite values"
        )
    t_train = time.perf_counter() - t0
    model_scores = _model_scores(
        model,
        theta,
        arrays_in["features"],
        arrays_in["labels"],
        feats(roles.test),
        labs(roles.test),
    )

    deleted = np.sort(
        np.asarray(jax.random.choice(k_delete, n, (config.deletions,), replace=False))
    )

    # One kernel per stage, compiled once for the chunk shape. Shared arrays (data, θ⁺, the
    # shared system, Ĥ) are arguments, not closed-over constants baked into the program.
    arrays_in["theta"] = theta
    t0 = time.perf_counter()
    arrays_in["factor"] = _shared_factor(
        model, theta, arrays_in["features"], arrays_in["labels"], l2, jax.random.fold_in(key, 3)
    )
    if _dense(model, arrays_in["features"]):
        # Small P: the attacker forms Ĥ once; every HRec product is then 2P², not 4mP.
        arrays_in["public_hessian"] = jax.jit(
            lambda t, f, y, lam: _attacks.public_hessian_matrix(
                model,
                t,
                f,
                n_train=n,
                l2=lam,
                public_labels=y if model.hessian_uses_labels else None,
            )
        )(theta, arrays_in["public_features"], arrays_in["public_labels"], l2)
    jax.block_until_ready((arrays_in["factor"], arrays_in.get("public_hessian")))
    t_setup = time.perf_counter() - t0
    mesh = _deletion_mesh(config.devices)
    unlearn_fn = jax.jit(_make_unlearn(model, l2, mesh))
    box = (float(dataset.x_min), float(dataset.x_max))
    if "updates-leak" in config.attacks:
        t0 = time.perf_counter()
        arrays_in["decoder"], arrays_in["probe_features"] = _updates_leak_decoder(
            model,
            l2,
            arrays_in,
            jax.jit(_make_unlearn(model, l2, _deletion_mesh(1))),  # any count of shadow deletions
            box,
            jax.random.fold_in(key, 4),
        )
        t_shadow = time.perf_counter() - t0
    else:
        t_shadow = 0.0
    attack_fn = jax.jit(_make_attacks(model, fmap, l2, n, config.attacks, box))
    # Every device gets the same share of each chunk: round the chunk up to a multiple.
    chunk = -(-min(config.chunk_size, config.deletions) // mesh.size) * mesh.size
    arrays_in = jax.device_put(arrays_in, NamedSharding(mesh, PartitionSpec()))
    by_deletion = NamedSharding(mesh, PartitionSpec("deletions"))
    store = None
    if checkpoint_dir is not None:
        store = _ChunkStore.open(checkpoint_dir, config, overwrite=overwrite)
    outputs: dict[str, list[np.ndarray]] = {}
    t_unlearn = t_attack = 0.0
    reused = 0
    starts = range(0, config.deletions, chunk)
    bar = tqdm(
        starts,
        desc=f"unlearn+attack ({config.deletions} deletions)",
        unit="chunk",
        disable=not progress,
        leave=False,
    )
    for number, start in enumerate(bar):
        idx = deleted[start : start + chunk]
        chunk_out = None if store is None else store.load(number, idx)
        if chunk_out is not None:
            reused += 1
        else:
            padded = np.concatenate([idx, np.full(chunk - len(idx), idx[-1])])
            t0 = time.perf_counter()
            padded = jax.device_put(padded, by_deletion)
            unlearned = jax.block_until_ready(unlearn_fn(padded, arrays_in))
            t_unlearn += time.perf_counter() - t0
            _check_finite(unlearned, idx, roles.train)
            t0 = time.perf_counter()
            recon = jax.block_until_ready(attack_fn(unlearned.params, padded, arrays_in))
            t_attack += time.perf_counter() - t0
            chunk_out = {
                "deleted": idx,
                "theta_after": unlearned.params,
                "grad_norm": unlearned.grad_norm,
                "steps": unlearned.steps,
            }
            for name, res in recon.items():
                chunk_out[f"x_{name}"] = res.x_hat
                chunk_out[f"y_{name}"] = res.y_hat
                chunk_out[f"score_{name}"] = res.score
            chunk_out = {k: np.asarray(v)[: len(idx)] for k, v in chunk_out.items()}
            if store is not None:
                store.save(number, chunk_out)
        for k, v in chunk_out.items():
            outputs.setdefault(k, []).append(v)
    out = {k: np.concatenate(v) for k, v in outputs.items()}

    x_true = train_x[deleted]
    y_true = np.asarray(labels[roles.train][deleted])
    rows, attack_summary = _score(model, config.attacks, out, x_true, y_true, roles.train, deleted)
    grad_norms = out["grad_norm"]
    summary = {
        "config": dataclasses.asdict(resolved) | {"attacks": list(config.attacks)},
        "data": {
            "dataset": dataset.name,
            "source": dataset.source,
            "pool_size": len(labels),
            "n_train": n,
            "n_public": m,
            "n_test": len(roles.test),
            "input_dim": int(dataset.x.shape[1]),
            "feature_dim": int(arrays_in["features"].shape[1]),
            "feature_map": feature_info,
            "task": model.task,
            "label_rule": _label_rule(dataset, model.task),
            "source_splits": {
                role: _data.origin_counts(dataset, rows)
                for role, rows in (
                    ("train", roles.train),
                    ("public", roles.public),
                    ("test", roles.test),
                )
            },
            "standardized_columns": _standardized(dataset),
        },
        "model": model_scores
        | {"train_steps": int(fit.steps), "train_grad_norm": float(fit.grad_norm)},
        "unlearning": {
            "method": config.unlearning,
            "kernel": _unlearning_kernel(model, arrays_in["features"]),
            "max_grad_norm": float(np.max(grad_norms)),
            "median_grad_norm": float(np.median(grad_norms)),
            "max_newton_steps": int(np.max(out["steps"])),
            "converged": int(np.sum(grad_norms <= EXACT_TOL)),
            "all_finite": bool(np.all(np.isfinite(out["theta_after"]))),
        },
        "attack_hessian": _hessian_report(model, l2, n, arrays_in),
        "attacks": attack_summary,
        "timing_s": {
            "train": t_train,
            "setup": t_setup,
            "unlearn": t_unlearn,
            "attack": t_attack + t_shadow,
        }
        | ({"updates_leak_shadow": t_shadow} if "updates-leak" in config.attacks else {}),
        "chunks": {"size": chunk, "computed": len(starts) - reused, "reused": reused},
        "versions": _versions(),
    }
    arrays = {
        "train_index": roles.train,
        "public_index": roles.public,
        "test_index": roles.test,
        "features_train": np.asarray(arrays_in["features"]),
        "features_public": np.asarray(arrays_in["public_features"]),
        "labels_train": np.asarray(arrays_in["labels"]),
        "deleted": deleted,
        "theta_before": np.asarray(theta),
        "theta_after": out["theta_after"],
    }
    for name in config.attacks:
        arrays[f"recon_{name}"] = out[f"x_{name}"]
    grid = _grid(dataset, roles.train, deleted, out, config.attacks)
    return RunResult(summary, rows, arrays, grid, dataset.image_shape)


def config_hash(config: RunConfig) -> str:
    """A fingerprint of everything that determines a run's numbers (not where it is written).

    Two configs with the same hash produce the same chunks, so an interrupted run may resume
    from the chunks of the other. Includes the jaxrecon version.
    """
    from jaxrecon import __version__

    fields = {k: v for k, v in dataclasses.asdict(config).items() if k not in _NOT_HASHED}
    fields["attacks"] = list(config.attacks)
    blob = json.dumps({"config": fields, "jaxrecon": __version__}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def prepare_out_dir(out_dir: str, config: RunConfig, *, overwrite: bool = False) -> bool:
    """Checks, without writing anything, whether `out_dir` can take `run(config)`.

    A new or empty folder, or one holding the same config (the run resumes from its saved
    chunks), is accepted. A folder holding another config is refused unless `overwrite`.

    Returns:
      True when an earlier run of the same config will be resumed.

    Raises:
      InputError: `out_dir` holds a different run and `overwrite` is false.
    """
    previous = _stored_hash(out_dir)
    if previous is None:
        return False
    digest = config_hash(config)
    if previous == digest:
        return not overwrite
    if not overwrite:
        raise InputError(
            f"--out: {out_dir!r} holds a run with a different config (hash {previous}, "
            f"this one {digest}); pass --overwrite to replace it or choose another --out"
        )
    return False


def _stored_hash(out_dir: str) -> str | None:
    marker = os.path.join(out_dir, _ChunkStore.MARKER)
    if not os.path.exists(marker):
        return None
    try:
        with open(marker) as f:
            return str(json.load(f).get("config_hash"))
    except (OSError, ValueError, AttributeError):
        return "unreadable"


def write_outputs(result: RunResult, out_dir: str, *, save_arrays: bool = False) -> list[str]:
    """Writes the run's files into `out_dir`, each atomically (temporary file, then rename).

    Returns:
      The paths written.
    """
    os.makedirs(out_dir, exist_ok=True)
    written = []

    def put(name: str, writer: Callable[[str], None]) -> None:
        path = os.path.join(out_dir, name)
        atomic_write(path, writer)
        written.append(path)

    text = text_writer

    put("summary.json", text(json.dumps(result.summary, indent=2) + "\n"))
    put("deletions.csv", text(rows_to_csv(result.rows)))
    cosines = {
        name: np.array([r[f"{name}_cosine"] for r in result.rows])
        for name in result.summary["attacks"]
    }
    cfg = result.summary["config"]
    title = (
        f"{cfg['dataset']} / {cfg['model']} / {cfg['unlearning']} unlearning, "
        f"{len(result.rows)} deletions\n(lower curve = stronger attack)"
    )
    put("cdf.png", lambda tmp: _plots.cdf_plot(cosines, tmp, title=title))
    if result.grid is not None and result.image_shape is not None:
        titles, rows = result.grid
        put(
            "reconstructions.png",
            lambda tmp: _plots.reconstruction_grid(
                rows, result.image_shape, tmp, column_titles=titles
            ),
        )
    if save_arrays:

        def npz(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **result.arrays)

        put("arrays.npz", npz)
    return written


def atomic_write(path: str, writer: Callable[[str], None]) -> None:
    """writer(tmp) fills a temporary file beside `path`, then one rename publishes it.

    A reader (or an interrupted run) sees the old file or the new one, never half of one.
    """
    folder, name = os.path.split(path)
    # Keep the extension: matplotlib and numpy pick the format from it.
    fd, tmp = tempfile.mkstemp(
        dir=folder or ".", prefix=f".{name}.", suffix=".tmp" + os.path.splitext(name)[1]
    )
    os.close(fd)
    try:
        writer(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def text_writer(content: str) -> Callable[[str], None]:
    """A writer for `atomic_write` that writes `content` as text."""

    def writer(tmp):
        with open(tmp, "w", newline="") as f:
            f.write(content)

    return writer


_OUTPUT_FILES = ("summary.json", "deletions.csv", "cdf.png", "reconstructions.png", "arrays.npz")
# Options that change where or what is written, not the numbers.
_NOT_HASHED = frozenset({"save_arrays", "devices", "download"})


def _remove_run_files(out_dir: str) -> None:
    for name in _OUTPUT_FILES + (_ChunkStore.MARKER,):
        path = os.path.join(out_dir, name)
        if os.path.exists(path):
            os.remove(path)
    chunks = os.path.join(out_dir, _ChunkStore.FOLDER)
    if os.path.isdir(chunks):
        for name in os.listdir(chunks):
            os.remove(os.path.join(chunks, name))
        os.rmdir(chunks)


class _ChunkStore:
    """Finished chunks of deletions under <out>/chunks/, one npz each, written atomically."""

    FOLDER = "chunks"
    MARKER = "run.json"

    def __init__(self, out_dir: str, digest: str):
        self.folder = os.path.join(out_dir, self.FOLDER)
        self.digest = digest

    @classmethod
    def open(cls, out_dir: str, config: RunConfig, *, overwrite: bool) -> _ChunkStore:
        """Claims `out_dir` for `config`: writes run.json, replacing another run if allowed."""
        resume = prepare_out_dir(out_dir, config, overwrite=overwrite)
        digest = config_hash(config)
        if not resume:
            if _stored_hash(out_dir) is not None or overwrite:
                _remove_run_files(out_dir)
            os.makedirs(out_dir, exist_ok=True)
            payload = {"config_hash": digest, "config": dataclasses.asdict(config)}
            atomic_write(
                os.path.join(out_dir, cls.MARKER), text_writer(json.dumps(payload, indent=2) + "\n")
            )
        store = cls(out_dir, digest)
        os.makedirs(store.folder, exist_ok=True)
        # A run killed while writing leaves a hidden temporary file; it was never published.
        ours = tuple(f".{name}." for name in _OUTPUT_FILES + (cls.MARKER,)) + (".chunk-",)
        for folder in (out_dir, store.folder):
            for name in os.listdir(folder):
                if name.startswith(ours) and ".tmp" in name:
                    os.remove(os.path.join(folder, name))
        return store

    def _path(self, number: int) -> str:
        return os.path.join(self.folder, f"chunk-{number:05d}.npz")

    def load(self, number: int, deleted: np.ndarray) -> dict[str, np.ndarray] | None:
        """The saved chunk, or None when it is missing or was made for other deletions."""
        path = self._path(number)
        if not os.path.exists(path):
            return None
        try:
            with np.load(path, allow_pickle=False) as f:
                arrays = {k: f[k] for k in f.files}
        except (OSError, ValueError, EOFError):
            return None
        if str(arrays.pop("config_hash", "")) != self.digest:
            return None
        if not np.array_equal(arrays.get("deleted"), deleted):
            return None
        return arrays

    def save(self, number: int, arrays: dict[str, np.ndarray]) -> None:
        def writer(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, config_hash=np.asarray(self.digest), **arrays)

        atomic_write(self._path(number), writer)


def _deletion_mesh(devices: int | None) -> Mesh:
    """A 1-D mesh over the first `devices` local devices, its axis named "deletions"."""
    available = jax.local_devices()
    count = len(available) if devices is None else devices
    if count > len(available):
        raise InputError(
            f"--devices: {count} requested but only {len(available)} local "
            f"{available[0].platform} device(s) are visible"
        )
    return Mesh(np.asarray(available[:count]), ("deletions",))


def _check_finite(unlearned, deleted: np.ndarray, train_index: np.ndarray) -> None:
    """Raises NumericalError naming the first deletion whose unlearned model is not finite."""
    params = np.asarray(unlearned.params)[: len(deleted)]
    bad = ~np.all(np.isfinite(params.reshape(len(deleted), -1)), axis=1)
    bad |= ~np.isfinite(np.asarray(unlearned.grad_norm)[: len(deleted)])
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        raise NumericalError(
            f"unlearning deletion train_index {int(deleted[j])} (pool index "
            f"{int(train_index[deleted[j]])}) returned non-finite parameters; {int(bad.sum())} "
            "deletion(s) of this chunk affected (try a larger --l2 or --dtype float64)"
        )


def _hessian_report(model, l2, n_train, arrays_in) -> dict[str, float]:
    """Condition number of the attacker's public Hessian estimate Ĥ (ill-conditioning check)."""

    def extremes(theta, public_features, public_labels):
        matvec = _attacks.public_hessian_matvec(
            model,
            theta,
            public_features,
            n_train=n_train,
            l2=l2,
            public_labels=public_labels if model.hessian_uses_labels else None,
        )
        return _attacks.hessian_extreme_eigenvalues(matvec, theta)

    # Arrays go in as arguments: closed over, XLA would constant-fold the products.
    lo, hi = jax.jit(extremes)(
        arrays_in["theta"], arrays_in["public_features"], arrays_in["public_labels"]
    )
    return {
        "min_eigenvalue": float(lo),
        "max_eigenvalue": float(hi),
        "condition_number": float(hi / lo),
    }


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


def _train(model, features, labels, l2, key) -> _solvers.FitResult:
    """θ⁺ on the full training set: closed form (ridge), dense Newton, or Newton-CG (large P)."""
    weights = jnp.ones(features.shape[0], features.dtype)
    if model.name in ("ridge", "ridge-onehot"):
        return jax.jit(
            lambda f, y, lam: _solvers.fit_ridge(
                f, _targets(model, y, f.dtype), l2=lam, weights=weights
            )
        )(features, labels, l2)
    if _dense(model, features):
        return jax.jit(lambda f, y, lam: _solvers.fit_newton(model, f, y, l2=lam, weights=weights))(
            features, labels, l2
        )

    def newton_cg(f, y, lam):
        # Nyström preconditioner of the Hessian at the start (θ = 0); CG only needs it to be
        # roughly right: the answer is exact to the reported gradient norm whatever its quality.
        start = model.init(f.shape[1], f.dtype)
        pre = _unlearning.hessian_nystrom(
            key, model, start, f, l2=lam, rank=_rank(model, f), labels=y
        )
        return _solvers.fit_newton(
            model,
            f,
            y,
            l2=lam,
            weights=weights,
            linear_solver="cg",
            cg_max_steps=500,
            precond=functools.partial(_solvers.apply_nystrom, pre),
        )

    return jax.jit(newton_cg)(features, labels, l2)


def _dense(model, features) -> bool:
    """Whether the parameter count D·K is small enough to train by dense Newton."""
    return _param_count(model, features) <= DENSE_LIMIT


def _rank(model, features) -> int:
    return min(NYSTROM_RANK, int(np.prod(model.param_shape(features.shape[1]))))


def _targets(model, labels, dtype):
    """Regression targets: the labels, or one-hot class targets for ridge-onehot."""
    if model.name == "ridge-onehot":
        return jax.nn.one_hot(labels, model.num_outputs, dtype=dtype)
    return labels


def _feature_map(config, dataset, public, key):
    """The attacker-known feature map and a description of it for summary.json."""
    if config.features == "identity":
        return _features.identity_features(), {"name": "identity"}
    bandwidth = config.rff_bandwidth
    rule = "given"
    if bandwidth is None:
        bandwidth = float(_features.median_bandwidth(jnp.asarray(dataset.x[public])))
        rule = "median pairwise distance of the public inputs"
    fmap = _features.rff_features(
        key, dataset.x.shape[1], config.rff_dim, bandwidth, dtype=jnp.dtype(config.dtype)
    )
    info = {
        "name": "rff",
        "num_features": config.rff_dim,
        "bandwidth": bandwidth,
        "bandwidth_rule": rule,
    }
    return fmap, info


def _param_count(model, features) -> int:
    return int(np.prod(model.param_shape(features.shape[1])))


def _unlearning_kernel(model, features) -> str:
    """Which exact-unlearning kernel serves this model and size (summary.json names it)."""
    if model.name in ("ridge", "ridge-onehot"):
        return "woodbury"
    if model.name in CHORD_MODELS and _param_count(model, features) <= DENSE_UNLEARN_LIMIT:
        return "chord"
    return "newton-cg-cholesky" if _dense(model, features) else "newton-cg-nystrom"


def _shared_factor(model, theta, features, labels, l2, key):
    """What every deletion's solve shares: H⁻¹, H and Pᵀy (ridge), the explicit inverse
    Hessian at θ⁺ with z⁺ and the full gradients (logistic / softmax, moderate P), the Cholesky
    factor of the dense ∇²L(θ⁺) (SVM, small P), or a Nyström preconditioner (large P)."""
    kernel = _unlearning_kernel(model, features)
    if kernel == "woodbury":
        return jax.jit(
            lambda f, y, lam: _unlearning.ridge_system(f, _targets(model, y, f.dtype), l2=lam)
        )(features, labels, l2)
    if kernel == "chord":
        return jax.jit(lambda t, f, y, lam: _unlearning.glm_system(model, t, f, y, l2=lam))(
            theta, features, labels, l2
        )
    if kernel == "newton-cg-cholesky":
        return jax.jit(
            lambda t, f, y, lam: _unlearning.hessian_cholesky(model, t, f, l2=lam, labels=y)
        )(theta, features, labels, l2)
    return jax.jit(
        lambda t, f, y, lam: _unlearning.hessian_nystrom(
            key, model, t, f, l2=lam, rank=_rank(model, f), labels=y
        )
    )(theta, features, labels, l2)


def _make_unlearn(model, l2, mesh):
    """(deleted [C], arrays) -> UnlearnResult batched over the C deletions.

    The chord kernel compacts its own lanes, so under several devices it runs per device on
    its share of the chunk (`shard_map`); the vmapped kernels are partitioned by jit.
    """
    if model.name in ("ridge", "ridge-onehot"):

        def fn(deleted, arrays):
            targets = _targets(model, arrays["labels"], arrays["features"].dtype)
            return jax.vmap(
                lambda d: _unlearning.unlearn_ridge(
                    arrays["theta"], arrays["factor"], arrays["features"], targets, d, l2=l2
                )
            )(deleted)

        return fn

    def chord(deleted, arrays):
        return _unlearning.unlearn_glm(
            model,
            arrays["factor"],
            arrays["theta"],
            arrays["features"],
            arrays["labels"],
            deleted,
            l2=l2,
        )

    def retrain(deleted, arrays):
        if isinstance(arrays["factor"], _unlearning.GLMSystem):
            return (
                chord(deleted, arrays)
                if mesh.size == 1
                else _per_device(chord, mesh)(deleted, arrays)
            )
        masks = _unlearning.deletion_masks(
            deleted, arrays["features"].shape[0], arrays["features"].dtype
        )
        dense = not isinstance(arrays["factor"], _solvers.NystromPreconditioner)
        return jax.vmap(
            lambda w: _unlearning.unlearn_retrain(
                model,
                arrays["theta"],
                arrays["features"],
                arrays["labels"],
                w,
                l2=l2,
                precond_factor=arrays["factor"] if dense else None,
                preconditioner=None if dense else arrays["factor"],
                cg_max_steps=500,
            )
        )(masks)

    return retrain


def _per_device(fn, mesh):
    """fn(deleted, arrays) run on each device's share of `deleted`, arrays replicated."""
    return _shard_map(
        fn,
        mesh=mesh,
        in_specs=(PartitionSpec("deletions"), PartitionSpec()),
        out_specs=PartitionSpec("deletions"),
    )


def _make_attacks(model, fmap, l2, n_train, names, box):
    """(θ⁻ [C, ...], deleted [C], arrays) -> {attack name: AttackResult batched over C}."""
    lower, upper = box

    def fn(thetas_after, deleted, arrays):
        theta = arrays["theta"]
        if fmap.params is None:
            apply = fmap.apply
        else:

            def apply(x):
                return _features.rff_apply(arrays["rff"], x)

        invert = None
        if fmap.invert is None:
            invert = _attacks.feature_inverter(
                apply, arrays["public_x"], arrays["public_features"], lower=lower, upper=upper
            )
        out = {}
        count = thetas_after.shape[0]
        prior = _attacks.avg(
            arrays["public_x"], arrays["public_labels"], model.task, model.num_outputs
        )
        if "public_hessian" in arrays:
            matvec = _attacks.dense_matvec(arrays["public_hessian"])
        else:
            matvec = _attacks.public_hessian_matvec(
                model,
                theta,
                arrays["public_features"],
                n_train=n_train,
                l2=l2,
                public_labels=arrays["public_labels"] if model.hessian_uses_labels else None,
            )
        if "hrec" in names:
            out["hrec"] = jax.vmap(
                lambda t: _attacks.hrec(
                    model, fmap, theta, t, matvec, invert=invert, fallback=prior
                )
            )(thetas_after)
        if "avg" in names:
            out["avg"] = jax.tree.map(lambda a: jnp.broadcast_to(a, (count,) + a.shape), prior)
        if "maxdiff" in names:
            out["maxdiff"] = jax.vmap(
                lambda t: _attacks.maxdiff(
                    model,
                    theta,
                    t,
                    arrays["public_features"],
                    arrays["public_x"],
                    arrays["public_labels"],
                )
            )(thetas_after)
        if "informed" in names:
            masks = _unlearning.deletion_masks(
                deleted, arrays["features"].shape[0], arrays["features"].dtype
            )
            out["informed"] = jax.vmap(
                lambda w: _attacks.informed(
                    model,
                    fmap,
                    theta,
                    arrays["features"],
                    arrays["labels"],
                    w,
                    l2=l2,
                    invert=invert,
                    fallback=prior,
                )
            )(masks)
        if "gradmatch" in names:
            if model.task == REGRESSION:
                pub = arrays["public_labels"]
                candidates = jnp.stack([jnp.min(pub), jnp.max(pub)])
            else:
                candidates = jnp.arange(model.num_outputs or 2, dtype=jnp.int32)
            starts = jnp.mean(arrays["public_x"], axis=0, keepdims=True)

            def loss_fn(t, x, y):
                return _models.loss(model, t, apply(x), y)

            out["gradmatch"] = jax.vmap(
                lambda t: _attacks.gradmatch(
                    loss_fn, theta, t, matvec, starts, candidates, lower=lower, upper=upper
                )
            )(thetas_after)
        if "updates-leak" in names:
            out["updates-leak"] = jax.vmap(
                lambda t: _attacks.apply_updates_leak_decoder(
                    arrays["decoder"],
                    _attacks.updates_leak_signature(model, theta, t, arrays["probe_features"]),
                )
            )(thetas_after)
        return out

    return fn


def _updates_leak_decoder(
    model, l2, arrays_in, unlearn_fn, box, key, *, probes=32, shadow_deletions=400
):
    """Updates-Leak (Salem et al. 2020) from public data only: a shadow model trained on the
    public samples (minus a fixed probe set), its own exact deletions (the same unlearning
    kernel), and a decoder from update signatures (posterior changes on the probes) to the
    deleted records."""
    public_f, public_y = arrays_in["public_features"], arrays_in["public_labels"]
    public_x = arrays_in["public_x"]
    m = public_f.shape[0]
    if m < probes + 10:
        raise InputError(
            f"--attacks: updates-leak needs at least {probes + 10} public samples, got {m}"
        )
    probe_f = public_f[:probes]
    shadow_f, shadow_y, shadow_x = public_f[probes:], public_y[probes:], public_x[probes:]
    k_fit, k_factor, k_dec = jax.random.split(key, 3)
    shadow_theta = _train(model, shadow_f, shadow_y, l2, k_fit).params
    shadow = {
        "features": shadow_f,
        "labels": shadow_y,
        "theta": shadow_theta,
        "factor": _shared_factor(model, shadow_theta, shadow_f, shadow_y, l2, k_factor),
    }
    count = min(shadow_deletions, shadow_f.shape[0])
    after = unlearn_fn(jnp.arange(count), shadow).params
    signatures = jax.vmap(
        lambda t: _attacks.updates_leak_signature(model, shadow_theta, t, probe_f)
    )(after)
    num_classes = (
        model.num_outputs if model.task == MULTICLASS else (None if model.task == REGRESSION else 2)
    )
    decoder = jax.jit(
        lambda s, x, y: _attacks.fit_updates_leak_decoder(
            k_dec, s, x, y, num_classes=num_classes, lower=box[0], upper=box[1]
        )
    )(signatures, shadow_x[:count], shadow_y[:count])
    return decoder, probe_f


def _score(model, names, out, x_true, y_true, train_index, deleted):
    rows = [
        {
            "train_index": int(d),
            "pool_index": int(train_index[d]),
            "true_label": _label_value(y, model.task),
            "unlearn_grad_norm": float(g),
        }
        for d, y, g in zip(deleted, y_true, out["grad_norm"], strict=True)
    ]
    summary = {}
    for name in names:
        x_hat, y_hat = out[f"x_{name}"], out[f"y_{name}"]
        cos = np.asarray(_metrics.cosine_similarity(jnp.asarray(x_hat), jnp.asarray(x_true)))
        err = np.asarray(_metrics.mse(jnp.asarray(x_hat), jnp.asarray(x_true)))
        if model.task == REGRESSION:
            correct = None
            label_acc = None
        else:
            correct = np.asarray(y_hat) == y_true
            label_acc = float(np.mean(correct))
        for i, row in enumerate(rows):
            row[f"{name}_cosine"] = float(cos[i])
            row[f"{name}_mse"] = float(err[i])
            row[f"{name}_label"] = _label_value(y_hat[i], model.task)
            row[f"{name}_label_correct"] = None if correct is None else int(correct[i])
        summary[name] = _metrics.summarize(cos) | {
            "mse_mean": float(np.mean(err)),
            "label_accuracy": label_acc,
        }
        if name in ("hrec", "informed"):
            # score 0: the deletion left no trace; the attack answered its prior (Avg).
            summary[name]["no_signal"] = int(np.sum(out[f"score_{name}"] == 0))
        if model.task == REGRESSION:
            summary[name]["label_mae"] = float(np.mean(np.abs(np.asarray(y_hat) - y_true)))
    return rows, summary


def _model_scores(model, theta, features, labels, test_features, test_labels):
    def score(f, y):
        pred = _models.predict(model, theta, f)
        if model.task == REGRESSION:
            return float(_metrics.r2_score(pred, y))
        if model.task == BINARY:
            return float(_metrics.accuracy((pred > 0.5).astype(jnp.int32), y))
        return float(_metrics.accuracy(jnp.argmax(pred, axis=-1), y))

    return {
        "score_name": "r2" if model.task == REGRESSION else "accuracy",
        "train_score": score(features, labels),
        "test_score": score(test_features, test_labels),
    }


def _grid(dataset, train_index, deleted, out, names):
    """One deleted sample per raw class: original / HRec / MaxDiff rows (image data only)."""
    if dataset.image_shape is None:
        return None
    raw = dataset.y[train_index][deleted]
    if dataset.num_classes is not None:
        classes = np.unique(raw)
        picks = [int(np.flatnonzero(raw == c)[0]) for c in classes]
        titles = [str(c) for c in classes]
    else:
        picks = list(range(min(10, len(deleted))))
        titles = [f"#{deleted[i]}" for i in picks]
    rows = [("original", dataset.x[train_index][deleted][picks])]
    labels = {
        "hrec": "HRec",
        "maxdiff": "MaxDiff",
        "avg": "Avg",
        "informed": "Informed",
        "gradmatch": "GradMatch",
        "updates-leak": "Updates-Leak",
    }
    for name in names:
        rows.append((labels[name], out[f"x_{name}"][picks]))
    return titles, rows


def _label_rule(dataset, task) -> str:
    what = f" ({dataset.label_name})" if dataset.label_name else ""
    if task == REGRESSION:
        if dataset.regression_target:
            return f"regression on {dataset.regression_target}"
        return f"regression on the raw label value{what}"
    if task == BINARY:
        if dataset.num_classes is None:
            target = f" ({dataset.regression_target})" if dataset.regression_target else ""
            return f"binary: y > median(y){target}"
        if dataset.num_classes == 2:
            return f"binary: raw label{what}"
        return f"binary: y >= {dataset.num_classes // 2}{what}"
    return f"multiclass: raw class id{what}"


def _standardized(dataset) -> dict[str, Any] | None:
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
    from jaxrecon import __version__

    return {
        "jaxrecon": __version__,
        "jax": jax.__version__,
        "jaxlib": importlib.metadata.version("jaxlib"),
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _choice(option: str, value: str, allowed) -> None:
    if value not in allowed:
        raise InputError(f"{option}: unknown value {value!r}; choose from {', '.join(allowed)}")


def _positive_int(option: str, value, *, minimum: int) -> None:
    if isinstance(value, bool) or int(value) != value or value < minimum:
        raise InputError(f"{option}: must be an integer >= {minimum}, got {value!r}")
