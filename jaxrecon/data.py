"""Data: arrays in, splits out.

The embedded default is scikit-learn's bundled digits (no download, no files): 1,797 grey 8x8
images with pixels scaled to [0, 1]. Synthetic data come from `jax.random` with an explicit key.
Real data sets (MNIST, Fashion-MNIST, CIFAR-10, UCI Adult, ACS Income, your own npz file) are read
by `jaxrecon.datasets`, imported on first use because it pulls in tensorflow-datasets, pandas and
folktables; `DATASETS` lists them all and `load_dataset` parses names such as
`acs_income:NY:2018` or `npz:/path/to/file.npz`.

A `Dataset` is the pooled data (inputs and raw labels, every source split together); `split`
draws disjoint seeded index sets for the three roles of the threat model (DESIGN §2): the training
set the operator learns from, the attacker's public samples, and a held-out test set for utility
metrics. Tabular numeric columns are standardised after the split, with statistics from the public
rows only (`standardize`), since the attacker is the one who knows those rows.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrecon import _validate
from jaxrecon.datatypes import Dataset as Dataset
from jaxrecon.datatypes import data_dir_path as data_dir_path
from jaxrecon.datatypes import missing as missing
from jaxrecon.errors import InputError

# The held-out test split is this fraction of the pooled data (rounded, at least one sample).
TEST_FRACTION = 0.1


class Split(NamedTuple):
    """Disjoint positions into a `Dataset` for each role.

    Attributes:
      train: [n] positions of the training set.
      public: [m] positions of the attacker's public samples (disjoint from train).
      test: [t] positions of the held-out test set (utility metrics only).
    """

    train: np.ndarray
    public: np.ndarray
    test: np.ndarray


def load_digits() -> Dataset:
    """scikit-learn's bundled 8x8 digits, pixels scaled from 0..16 to [0, 1]. Needs no files."""
    from sklearn.datasets import load_digits as _sk_digits

    bunch = _sk_digits()
    x = np.asarray(bunch.data, dtype=np.float64) / 16.0
    y = np.asarray(bunch.target, dtype=np.int64)
    return Dataset("digits", x, y, 10, (8, 8), 0.0, 1.0, label_name="digit 0-9", source="embedded")


def synthetic_regression(key: jax.Array, n: int, dim: int, *, noise: float = 0.1) -> Dataset:
    """Gaussian inputs and a noisy linear target y = x·w + b + noise·ε.

    Args:
      key: PRNG key.
      n: number of samples.
      dim: input dimension d.
      noise: standard deviation of the additive Gaussian noise.

    Returns:
      A `Dataset` with float targets and `num_classes=None`.
    """
    _validate.integer("n", n, minimum=1)
    _validate.integer("dim", dim, minimum=1)
    k_x, k_w, k_e = jax.random.split(key, 3)
    x = jax.random.normal(k_x, (n, dim))
    w = jax.random.normal(k_w, (dim,))
    y = x @ w + 0.5 + noise * jax.random.normal(k_e, (n,))
    x = np.asarray(x, dtype=np.float64)
    return Dataset(
        "synthetic",
        x,
        np.asarray(y, np.float64),
        None,
        None,
        float(x.min()),
        float(x.max()),
        source="generated",
    )


def synthetic_classification(
    key: jax.Array, n: int, dim: int, num_classes: int, *, separation: float = 2.0
) -> Dataset:
    """A Gaussian mixture: class c has mean separation·μ_c, μ_c ~ N(0, I/d), identity covariance.

    Args:
      key: PRNG key.
      n: number of samples.
      dim: input dimension d.
      num_classes: number of mixture components (= classes), at least 2.
      separation: scale of the class means.

    Returns:
      A `Dataset` with integer labels in [0, num_classes).
    """
    _validate.integer("n", n, minimum=1)
    _validate.integer("dim", dim, minimum=1)
    if num_classes < 2:
        _validate.integer("num_classes", num_classes, minimum=2)
    k_mu, k_y, k_x = jax.random.split(key, 3)
    means = separation * jax.random.normal(k_mu, (num_classes, dim)) / jnp.sqrt(dim)
    y = jax.random.randint(k_y, (n,), 0, num_classes)
    x = means[y] + jax.random.normal(k_x, (n, dim))
    x = np.asarray(x, dtype=np.float64)
    return Dataset(
        "synthetic",
        x,
        np.asarray(y, np.int64),
        num_classes,
        None,
        float(x.min()),
        float(x.max()),
        source="generated",
    )


def split(
    key: jax.Array,
    num_samples: int,
    n_train: int,
    n_public: int | None,
    *,
    test_fraction: float = TEST_FRACTION,
) -> Split:
    """Seeded disjoint train / public / test positions.

    The test split is `round(test_fraction * num_samples)` (at least 1) positions; the training set
    the next `n_train`; the public set the next `n_public` (None: all the rest).

    Raises:
      InputError: if the sizes do not fit in `num_samples`.
    """
    n_test = max(1, int(round(test_fraction * num_samples)))
    available = num_samples - n_test
    if n_train < 2:
        raise _validate.fail("n_train", f"must be >= 2, got {n_train}")
    if n_train >= available:
        raise _validate.fail(
            "n_train",
            f"must be < {available} (pool of {num_samples} minus a test split of {n_test}), "
            f"got {n_train}",
        )
    if n_public is None:
        n_public = available - n_train
    if n_public < 1:
        raise _validate.fail("n_public", f"must be >= 1, got {n_public}")
    if n_train + n_public > available:
        raise _validate.fail(
            "n_public",
            f"must be <= {available - n_train} (pool {num_samples} - test {n_test} - "
            f"train {n_train}), got {n_public}",
        )
    perm = np.asarray(jax.random.permutation(key, num_samples))
    test = np.sort(perm[:n_test])
    train = np.sort(perm[n_test : n_test + n_train])
    public = np.sort(perm[n_test + n_train : n_test + n_train + n_public])
    return Split(train, public, test)


def standardize(x: np.ndarray, columns: np.ndarray, reference_rows: np.ndarray) -> np.ndarray:
    """Centres and scales the chosen columns with the mean and std of the reference rows only.

    x'[:, c] = (x[:, c] − mean_R(x[:, c])) / std_R(x[:, c]) for each c with columns[c] true, R the
    reference rows (the attacker's public split: a pre-processing the attacker can reproduce, and
    one that leaks nothing about the training rows). Columns that are constant on R are only
    centred. Other columns (one-hot indicators) are left as they are.

    Args:
      x: [N, d] inputs.
      columns: [d] bool mask of the columns to standardise.
      reference_rows: positions of the rows whose statistics are used (at least one).

    Returns:
      A new float64 [N, d] array.

    Raises:
      InputError: a mask of the wrong length, or no reference rows.
    """
    columns = np.asarray(columns, dtype=bool)
    if columns.shape != (x.shape[1],):
        raise _validate.fail(
            "columns", f"need a bool mask of shape ({x.shape[1]},), got shape {columns.shape}"
        )
    if len(reference_rows) < 1:
        raise _validate.fail("reference_rows", "need at least one row")
    out = np.array(x, dtype=np.float64)
    ref = out[np.asarray(reference_rows)][:, columns]
    mean = ref.mean(axis=0)
    std = ref.std(axis=0)
    out[:, columns] = (out[:, columns] - mean) / np.where(std > 0, std, 1.0)
    return out


def standardize_public(dataset: Dataset, public_rows: np.ndarray) -> Dataset:
    """`dataset` with its `numeric_columns` standardised on the public rows (see `standardize`).

    A data set without numeric columns (images, synthetic data) comes back unchanged.
    """
    if dataset.numeric_columns is None or not np.any(dataset.numeric_columns):
        return dataset
    x = standardize(dataset.x, dataset.numeric_columns, public_rows)
    return dataset._replace(x=x, x_min=float(x.min()), x_max=float(x.max()))


def task_view(dataset: Dataset, task: str) -> Dataset:
    """The data set as a model of `task` sees it.

    For "regression" on a data set with a separate regression target (`y_regression`), the labels
    become that target (`num_classes` None) and the `regression_drop` input columns, which hold the
    target itself, are removed. Every other case returns `dataset` unchanged.
    """
    if task != "regression" or dataset.y_regression is None:
        return dataset
    keep = np.setdiff1d(np.arange(dataset.x.shape[1]), dataset.regression_drop)
    x = dataset.x[:, keep]
    return dataset._replace(
        x=x,
        y=np.asarray(dataset.y_regression, np.float64),
        num_classes=None,
        x_min=float(x.min()),
        x_max=float(x.max()),
        y_regression=None,
        regression_drop=(),
        numeric_columns=None
        if dataset.numeric_columns is None
        else np.asarray(dataset.numeric_columns)[keep],
        feature_names=None
        if dataset.feature_names is None
        else tuple(dataset.feature_names[i] for i in keep),
    )


def origin_counts(dataset: Dataset, rows: np.ndarray) -> dict[str, int]:
    """How many of the pooled `rows` come from each source split (e.g. {"train": 9, "test": 1})."""
    if dataset.origin is None:
        return {"all": int(len(rows))}
    codes = np.bincount(dataset.origin[np.asarray(rows)], minlength=len(dataset.origin_names))
    return {name: int(c) for name, c in zip(dataset.origin_names, codes, strict=True) if c}


class DatasetSpec(NamedTuple):
    """One entry of `DATASETS`.

    Attributes:
      usage: the `--dataset` form, with its parameters (e.g. "acs_income:<STATE>[:<YEAR>]").
      description: one line: what it is, its task, its licence.
      parse: the text after "name:" (None when absent) -> parsed parameters; raises InputError.
      load: (key, data_dir, download, params) -> Dataset; raises InputError when missing.
      locate: (data_dir, params) -> (available, where it looked); params None describes the
        family (for `jaxrecon datasets`). available is None when it cannot be told (npz:).
      how_to_get: one line: how to get it offline and online.
    """

    usage: str
    description: str
    parse: Callable[[str | None], Any]
    load: Callable[[jax.Array, str | None, bool, Any], Dataset]
    locate: Callable[[str | None, Any], tuple[bool | None, str]]
    how_to_get: str


def _no_params(family: str) -> Callable[[str | None], None]:
    def parse(arg):
        if arg is not None:
            raise InputError(f"--dataset: {family!r} takes no parameters, got {family}:{arg}")

    return parse


def _embedded(where: str) -> Callable[[str | None, Any], tuple[bool, str]]:
    return lambda data_dir, params: (True, where)


# Real data sets live in jaxrecon.datasets, imported on first use (tfds / pandas / folktables are
# slow to import and not needed for the embedded data).
def _real(attr: str) -> Callable[..., Any]:
    def call(*args):
        from jaxrecon import datasets as _datasets

        return getattr(_datasets, attr)(*args)

    return call


def _image_spec(name: str, description: str) -> DatasetSpec:
    return DatasetSpec(
        name,
        description,
        _no_params(name),
        lambda key, data_dir, download, params: _real("load_images")(name, key, data_dir, download),
        lambda data_dir, params: _real("locate_images")(name, data_dir),
        f"offline: {name}.npz (uint8 x_train, y_train, x_test, y_test) in --data-dir; "
        "online: --download (tensorflow-datasets, into --data-dir or its default folder)",
    )


DATASETS: dict[str, DatasetSpec] = {
    "digits": DatasetSpec(
        "digits",
        "scikit-learn's bundled UCI optical digits, 8x8, 10 classes (BSD-3 via scikit-learn)",
        _no_params("digits"),
        lambda key, data_dir, download, params: load_digits(),
        _embedded("embedded in scikit-learn"),
        "nothing to get",
    ),
    "synthetic_regression": DatasetSpec(
        "synthetic_regression",
        "Gaussian inputs (16 dims), noisy linear target, 2,000 samples from the seed",
        _no_params("synthetic_regression"),
        lambda key, data_dir, download, params: synthetic_regression(key, 2000, 16),
        _embedded("generated from the seed"),
        "nothing to get",
    ),
    "synthetic_classification": DatasetSpec(
        "synthetic_classification",
        "Gaussian mixture (16 dims, 4 classes), 2,000 samples from the seed",
        _no_params("synthetic_classification"),
        lambda key, data_dir, download, params: synthetic_classification(key, 2000, 16, 4),
        _embedded("generated from the seed"),
        "nothing to get",
    ),
    "mnist": _image_spec("mnist", "MNIST, 28x28 grey, 10 classes, 70,000 (CC BY-SA 3.0)"),
    "fashion_mnist": _image_spec(
        "fashion_mnist", "Fashion-MNIST, 28x28 grey, 10 classes, 70,000 (MIT, Zalando)"
    ),
    "cifar10": _image_spec(
        "cifar10",
        "CIFAR-10, 32x32 RGB, 10 classes (60,000; cite Krizhevsky 2009), shuffled with the seed",
    ),
    "adult": DatasetSpec(
        "adult",
        "UCI Adult: income >50K (classifiers); ridge regresses hours_per_week as a stand-in "
        "(CC BY 4.0)",
        _no_params("adult"),
        lambda key, data_dir, download, params: _real("load_adult")(data_dir, download),
        lambda data_dir, params: _real("locate_adult")(data_dir),
        "offline: adult.csv.gz, or UCI's adult.data + adult.test (gzipped or not), in "
        "--data-dir; no download",
    ),
    "acs_income": DatasetSpec(
        "acs_income:<STATE>[:<YEAR>]",
        "folktables ACSIncome (ACS PUMS 1-Year, YEAR default 2018): income >50,000 "
        "(classifiers), log income (ridge) (US Census public data)",
        _real("parse_acs"),
        lambda key, data_dir, download, params: _real("load_acs")(data_dir, download, params),
        _real("locate_acs"),
        "offline: a folktables data root in --data-dir (<YEAR>/1-Year/psam_p<FIPS>.csv); "
        "online: --download (folktables, from census.gov, into --data-dir)",
    ),
    "acs_income_partial": DatasetSpec(
        "acs_income_partial:NY",
        "ACSIncome NY 2018, 6 of 10 features, binary label income >50,000 only (US Census "
        "public data)",
        _real("parse_acs_partial"),
        lambda key, data_dir, download, params: _real("load_acs_partial")(data_dir),
        lambda data_dir, params: _real("locate_acs_partial")(data_dir),
        "offline: acs_income_NY_partial.csv.gz in --data-dir; no download",
    ),
    "npz": DatasetSpec(
        "npz:<PATH>",
        "your own .npz: x_train, y_train [, x_test, y_test]; uint8 images scaled to [0, 1]",
        _real("parse_npz"),
        lambda key, data_dir, download, params: _real("load_npz")(params),
        _real("locate_npz"),
        "bring your own file (read with allow_pickle=False)",
    ),
}


def parse_dataset_name(name: str) -> tuple[str, Any]:
    """Splits `name` into its `DATASETS` key and checked parameters ("acs_income:NY" -> NY, 2018).

    Raises:
      InputError: unknown name or bad parameters (the message starts with "--dataset", like
        every data-set error).
    """
    family, sep, arg = str(name).partition(":")
    if family not in DATASETS:
        usages = ", ".join(spec.usage for spec in DATASETS.values())
        raise InputError(f"--dataset: unknown data set {name!r}; choose from {usages}")
    return family, DATASETS[family].parse(arg if sep else None)


def load_dataset(
    name: str, *, key: jax.Array, data_dir: str | None = None, download: bool = False
) -> Dataset:
    """The pooled data set called `name` (see `DATASETS`; parameters after a colon).

    Args:
      name: e.g. "digits", "mnist", "acs_income:NY:2018", "npz:/data/mine.npz".
      key: seeds generated data and the shuffle of data stored in class order (CIFAR-10).
      data_dir: folder with local data files (and the tfds / folktables data root).
      download: allow downloading (tensorflow-datasets, folktables) when no local copy exists.

    Raises:
      InputError: unknown name, bad parameters, or the data set's files are missing (one line
        saying where it looked and how to get it).
    """
    family, params = parse_dataset_name(name)
    return DATASETS[family].load(key, data_dir, download, params)


class DatasetStatus(NamedTuple):
    """One line of `jaxrecon datasets`: whether a data set can be loaded, and from where."""

    usage: str
    available: bool | None
    where: str
    how_to_get: str
    description: str


def dataset_status(data_dir: str | None = None) -> list[DatasetStatus]:
    """Every data set of `DATASETS`, where it would be read from `data_dir`, and if it is there."""
    out = []
    for spec in DATASETS.values():
        available, where = spec.locate(data_dir, None)
        out.append(DatasetStatus(spec.usage, available, where, spec.how_to_get, spec.description))
    return out
