"""Real data sets: readers from local files, tensorflow-datasets and folktables (DESIGN §4).

Beside `jaxrecon.data`, which lists these in `DATASETS` and imports this module on first use;
both build on `jaxrecon.datatypes`, and this module never imports `data`. Every reader returns a
pooled `Dataset` with every source split together and `origin` saying which split each row came
from; `scenario.make_scenario` draws the roles.

- `mnist`, `fashion_mnist`, `cifar10`: `<data-dir>/<name>.npz` when present (no network), else
  `tfds.data_source` in `--data-dir`, downloading only with `download`. Reading a prepared copy
  needs no TensorFlow (images decode with PIL); tfds' builders need it to prepare one.
  Pixels scaled to [0, 1] (stored as float32 to keep 70,000 MNIST images at 220 MB) and flattened
  in row-major (H, W, C) order. CIFAR-10 is shuffled with the key (a local copy may be sorted by
  class).
- `adult`: UCI Adult from `adult.csv.gz` or `adult.data(.gz)` + `adult.test(.gz)`. Label income
  >50K; regression models regress hours_per_week (a stand-in: Adult has no income value).
- `acs_income:<STATE>[:<YEAR>]`: folktables' ACSIncome feature set from the PUMS person file in a
  folktables data root (`<data-dir>/<YEAR>/1-Year/psam_p<FIPS>.csv`). Label PINCP > 50,000;
  regression models regress log(PINCP).
- `acs_income_partial:NY`: a partial ACSIncome NY 2018 extract (6 features, binary label only).
- `npz:<PATH>`: your own arrays, validated.

Tabular inputs: categorical columns one-hot encoded over the values present in the pooled data;
numeric columns kept raw here and standardised by the pipeline with public-split statistics
(`data.standardize`).

Every failure a user can cause is an `InputError` with one line naming the data set, the file or
array and what to do; no reader downloads anything unless asked.
"""

from __future__ import annotations

import glob
import math
import os
import zipfile
import zlib
from typing import NamedTuple

import jax
import numpy as np

from jaxrecon.datatypes import Dataset, data_dir_path, missing
from jaxrecon.errors import InputError

# ---------------------------------------------------------------------------------------------
# Images: MNIST, Fashion-MNIST, CIFAR-10.


class _ImageSet(NamedTuple):
    shape: tuple[int, ...]  # per-sample shape in the Dataset (grey images without a channel axis)
    tfds_version: str  # pinned, so a run reads the same data whatever tfds prefers later


_IMAGE_SETS = {
    "mnist": _ImageSet((28, 28), "3.0.1"),
    "fashion_mnist": _ImageSet((28, 28), "3.0.1"),
    "cifar10": _ImageSet((32, 32, 3), "3.0.2"),
}
_IMAGE_CLASSES = 10


def _tfds_dir(data_dir: str | None) -> str:
    """The tensorflow-datasets data dir: --data-dir, else tfds' own default."""
    if data_dir is not None:
        return os.path.expanduser(data_dir)
    return os.path.expanduser(os.environ.get("TFDS_DATA_DIR", "~/tensorflow_datasets"))


def _tfds_prepared(name: str, data_dir: str | None) -> bool:
    """Whether tfds has `name` prepared in a random-access format that `data_source` can read."""
    folder = os.path.join(_tfds_dir(data_dir), name, _IMAGE_SETS[name].tfds_version)
    return os.path.isfile(os.path.join(folder, "dataset_info.json")) and bool(
        glob.glob(os.path.join(folder, "*.array_record*"))
    )


def _image_places(name: str, data_dir: str | None) -> list[str]:
    places = []
    if data_dir is not None:
        places.append(data_dir_path(data_dir, f"{name}.npz"))
    places.append(f"tfds {os.path.join(_tfds_dir(data_dir), name)}")
    return places


def locate_images(name: str, data_dir: str | None) -> tuple[bool, str]:
    """(available, where): the local npz first, then a prepared tfds copy."""
    local = data_dir_path(data_dir, f"{name}.npz")
    if local is not None and os.path.isfile(local):
        return True, local
    tfds_folder = os.path.join(_tfds_dir(data_dir), name, _IMAGE_SETS[name].tfds_version)
    if _tfds_prepared(name, data_dir):
        return True, f"tfds {tfds_folder}"
    return False, ", ".join(_image_places(name, data_dir))


def load_images(name: str, key: jax.Array, data_dir: str | None, download: bool) -> Dataset:
    """MNIST / Fashion-MNIST / CIFAR-10, train and test pooled, pixels in [0, 1], flattened.

    Args:
      name: "mnist", "fashion_mnist" or "cifar10".
      key: shuffles CIFAR-10 (whose local copy is stored sorted by class).
      data_dir: folder with `<name>.npz`, and the tfds data dir.
      download: let tensorflow-datasets download and prepare it when no local copy exists.

    Returns:
      A `Dataset` with float32 x [N, prod(shape)], int64 labels 0..9, origin train/test.

    Raises:
      InputError: no local copy and no download asked for, a malformed npz, or tfds failed.
    """
    spec = _IMAGE_SETS[name]
    local = data_dir_path(data_dir, f"{name}.npz")
    if local is not None and os.path.isfile(local):
        splits = _read_image_npz(name, local, spec.shape)
        source = local
    elif download or _tfds_prepared(name, data_dir):
        splits = _read_tfds(name, data_dir, download, spec)
        source = f"tfds {name}:{spec.tfds_version} in {_tfds_dir(data_dir)}"
    else:
        raise missing(
            name,
            _image_places(name, data_dir),
            f"put {name}.npz (uint8 x_train, y_train, x_test, y_test) in --data-dir, "
            "or add --download (tensorflow-datasets)",
        )
    images = np.concatenate([splits["x_train"], splits["x_test"]])
    labels = np.concatenate([splits["y_train"], splits["y_test"]]).astype(np.int64)
    origin = np.repeat(np.arange(2, dtype=np.int8), [len(splits["y_train"]), len(splits["y_test"])])
    if name == "cifar10":
        perm = np.asarray(jax.random.permutation(key, len(labels)))
        images, labels, origin = images[perm], labels[perm], origin[perm]
    return Dataset(
        name,
        _scale_pixels(images),
        labels,
        _IMAGE_CLASSES,
        spec.shape,
        0.0,
        1.0,
        label_name="class 0-9",
        origin=origin,
        origin_names=("train", "test"),
        source=source,
    )


def _scale_pixels(images: np.ndarray) -> np.ndarray:
    """uint8 [N, ...] -> float32 [N, d] in [0, 1], without a float64 intermediate."""
    x = images.reshape(len(images), -1).astype(np.float32)
    np.divide(x, np.float32(255), out=x)
    return x


def _read_image_npz(name: str, path: str, shape: tuple[int, ...]) -> dict[str, np.ndarray]:
    arrays = _read_npz(path, f"--dataset {name}", ("x_train", "y_train", "x_test", "y_test"))
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        where = f"--dataset {name}: {path}"
        if x.dtype != np.uint8:
            raise InputError(f"{where}: x_{split} must be uint8 images, got dtype {x.dtype}")
        if x.shape[1:] not in (shape, shape + (1,)):
            raise InputError(
                f"{where}: x_{split} must have shape [N, {', '.join(map(str, shape))}], "
                f"got {list(x.shape)}"
            )
        _check_labels(y, len(x), f"{where}: y_{split}", num_classes=_IMAGE_CLASSES)
        arrays[f"x_{split}"] = x.reshape((len(x),) + shape)
    return arrays


def _read_tfds(
    name: str, data_dir: str | None, download: bool, spec: _ImageSet
) -> dict[str, np.ndarray]:
    import tensorflow_datasets as tfds

    out = {}
    versioned = f"{name}:{spec.tfds_version}"
    try:
        for split in ("train", "test"):
            source = tfds.data_source(versioned, split=split, data_dir=data_dir, download=download)
            count = len(source)
            images = np.empty((count,) + spec.shape, np.uint8)
            labels = np.empty(count, np.int64)
            for i in range(count):
                example = source[i]
                images[i] = np.asarray(example["image"]).reshape(spec.shape)
                labels[i] = example["label"]
            out[f"x_{split}"], out[f"y_{split}"] = images, labels
    except Exception as err:  # tfds raises many kinds (network, file format, missing files)
        if _needs_tensorflow(err):
            raise InputError(
                f"--dataset {name}: tensorflow-datasets needs TensorFlow to prepare {versioned} "
                "(pip install tensorflow-cpu; reading a prepared copy does not need it), or put "
                f"{name}.npz in --data-dir"
            ) from err
        action = "download and prepare" if download else "read"
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(
            f"--dataset {name}: tensorflow-datasets could not {action} {versioned} in "
            f"{_tfds_dir(data_dir)}: {first}"
        ) from err
    return out


def _needs_tensorflow(err: BaseException | None) -> bool:
    """Whether `err` (or what caused it) is tfds' builders failing to import TensorFlow."""
    while err is not None:
        if isinstance(err, ImportError) and "tensorflow" in str(err).split("'")[1:2]:
            return True
        err = err.__cause__ or err.__context__
    return False


# ---------------------------------------------------------------------------------------------
# Tabular helpers.


def _encode(
    columns: dict[str, np.ndarray], numeric: tuple[str, ...], categorical: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Numeric columns as they are, then one 0/1 column per value of each categorical column.

    Returns:
      x [N, d] float64, the [d] bool mask of numeric columns, the d column names.
    """
    blocks = [np.stack([np.asarray(columns[c], np.float64) for c in numeric], axis=1)]
    names = list(numeric)
    for c in categorical:
        values, codes = np.unique(np.asarray(columns[c]), return_inverse=True)
        blocks.append(np.eye(len(values))[codes.reshape(-1)])
        names += [f"{c}={_value_name(v)}" for v in values]
    x = np.concatenate(blocks, axis=1)
    mask = np.zeros(x.shape[1], bool)
    mask[: len(numeric)] = True
    return x, mask, tuple(names)


def _value_name(value) -> str:
    if isinstance(value, float | np.floating) and float(value).is_integer():
        return str(int(value))
    return str(value)


def _read_csv(path: str, where: str, **kwargs):
    import pandas as pd

    try:
        return pd.read_csv(path, **kwargs)
    # EOFError: a truncated .gz; zlib.error: a corrupt one.
    except (OSError, ValueError, EOFError, zlib.error, pd.errors.ParserError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{where}: cannot read {path}: {first}") from err


def _check_last_row(path: str, where: str) -> None:
    """A plain CSV cut short parses as a shorter table; its last row gives it away: it has
    fewer fields than the header."""
    try:
        with open(path, "rb") as f:
            header = f.readline()
            f.seek(max(f.tell(), os.path.getsize(path) - 65536))
            tail = f.read().rstrip(b"\r\n").rsplit(b"\n", 1)[-1]
        fields, last = header.count(b","), tail.count(b",")
    except OSError as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{where}: cannot read {path}: {first}") from err
    if tail and last != fields:
        raise InputError(
            f"{where}: cannot read {path}: its last row has {last + 1} fields, the header "
            f"{fields + 1} (a truncated file?)"
        )


def _numeric_columns(frame, names, where: str) -> dict[str, np.ndarray]:
    import pandas as pd

    out = {}
    for c in names:
        values = pd.to_numeric(frame[c], errors="coerce").to_numpy(np.float64)
        bad = ~np.isfinite(values)
        if bad.any():
            raise InputError(
                f"{where}: column {c} must be numeric, got {frame[c].iloc[int(np.argmax(bad))]!r}"
            )
        out[c] = values
    return out


def _require_columns(frame, names, where: str) -> None:
    absent = [c for c in names if c not in frame.columns]
    if absent:
        raise InputError(f"{where}: missing column(s) {', '.join(absent)}")


# ---------------------------------------------------------------------------------------------
# UCI Adult.

ADULT_COLUMNS = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education_num",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital_gain",
    "capital_loss",
    "hours_per_week",
    "native_country",
    "income",
)
# fnlwgt is a census sampling weight, not a trait of the person; education is education_num as text.
ADULT_NUMERIC = ("age", "education_num", "capital_gain", "capital_loss", "hours_per_week")
ADULT_CATEGORICAL = (
    "workclass",
    "marital_status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native_country",
)
ADULT_REGRESSION_TARGET = (
    "hours_per_week (a stand-in census regression target, NOT income: Adult has no income "
    "value; the column is removed from the inputs)"
)


def _adult_files(data_dir: str | None) -> tuple[str, str | None] | None:
    """(csv, None) or (adult.data, adult.test) found in data_dir, else None."""
    if data_dir is None:
        return None
    for name in ("adult.csv.gz", "adult.csv"):
        path = data_dir_path(data_dir, name)
        if os.path.isfile(path):
            return path, None
    for suffix in (".gz", ""):
        train = data_dir_path(data_dir, "adult.data" + suffix)
        test = data_dir_path(data_dir, "adult.test" + suffix)
        if os.path.isfile(train) and os.path.isfile(test):
            return train, test
    return None


def _adult_places(data_dir: str | None) -> str:
    if data_dir is None:
        return "no --data-dir given"
    return (
        f"{data_dir_path(data_dir, 'adult.csv.gz')}, "
        f"{data_dir_path(data_dir, 'adult.data.gz')} + adult.test.gz"
    )


def locate_adult(data_dir: str | None) -> tuple[bool, str]:
    """(available, where) for UCI Adult."""
    files = _adult_files(data_dir)
    if files is None:
        return False, _adult_places(data_dir)
    return True, files[0] if files[1] is None else f"{files[0]} + {os.path.basename(files[1])}"


def load_adult(data_dir: str | None, download: bool = False) -> Dataset:
    """UCI Adult (Becker & Kohavi 1996), train and test pooled.

    Inputs: age, education_num, capital_gain, capital_loss, hours_per_week (numeric) and
    workclass, marital_status, occupation, relationship, race, sex, native_country (one-hot;
    "?" is a category of its own). fnlwgt (a sampling weight) and education (= education_num)
    are left out. Label: income >50K (1) vs <=50K (0). Regression target: hours_per_week,
    removed from the inputs for that task (see `data.task_view`).

    Args:
      data_dir: folder with adult.csv.gz, or adult.data + adult.test (gzipped or not).
      download: ignored (no download source is wired up); a missing file says how to get it.

    Raises:
      InputError: files missing or malformed.
    """
    del download
    files = _adult_files(data_dir)
    if files is None:
        raise missing(
            "adult",
            _adult_places(data_dir),
            "put adult.csv.gz (or the UCI files adult.data and adult.test) in --data-dir",
        )
    where = "--dataset adult"
    if files[1] is None:
        frame = _read_csv(files[0], where, skipinitialspace=True, na_filter=False)
        frame.columns = [str(c).strip() for c in frame.columns]
        _require_columns(frame, ADULT_COLUMNS, f"{where}: {files[0]}")
        if "split" in frame.columns:
            origin_names = tuple(sorted(set(frame["split"].astype(str)), key=_train_first))
            split_values = frame["split"].astype(str).to_numpy()
            origin = np.array([origin_names.index(s) for s in split_values], np.int8)
        else:
            origin_names, origin = ("all",), np.zeros(len(frame), np.int8)
        source = files[0]
    else:
        import pandas as pd

        parts = [
            # The UCI test file starts with the line "|1x3 Cross validator".
            _read_csv(
                path,
                where,
                header=None,
                names=list(ADULT_COLUMNS),
                skipinitialspace=True,
                comment="|",
                na_filter=False,
            )
            for path in files
        ]
        frame = pd.concat(parts, ignore_index=True)
        origin_names = ("train", "test")
        origin = np.repeat(np.arange(2, dtype=np.int8), [len(p) for p in parts])
        source = f"{files[0]} + {os.path.basename(files[1])}"
    if len(frame) < 2:
        raise InputError(f"{where}: {source} holds {len(frame)} rows")
    income = frame["income"].astype(str).str.strip().str.rstrip(".").to_numpy()
    bad = ~np.isin(income, ["<=50K", ">50K"])
    if bad.any():
        raise InputError(
            f"{where}: {source}: income must be <=50K or >50K, got {income[np.argmax(bad)]!r}"
        )
    numeric = _numeric_columns(frame, ADULT_NUMERIC, f"{where}: {source}")
    categorical = {c: frame[c].astype(str).str.strip().to_numpy() for c in ADULT_CATEGORICAL}
    x, mask, names = _encode(numeric | categorical, ADULT_NUMERIC, ADULT_CATEGORICAL)
    return Dataset(
        "adult",
        x,
        (income == ">50K").astype(np.int64),
        2,
        None,
        float(x.min()),
        float(x.max()),
        y_regression=numeric["hours_per_week"],
        regression_target=ADULT_REGRESSION_TARGET,
        regression_drop=(names.index("hours_per_week"),),
        label_name="income >50K",
        numeric_columns=mask,
        feature_names=names,
        origin=origin,
        origin_names=origin_names,
        source=source,
    )


def _train_first(name: str) -> tuple[int, str]:
    return (0 if name == "train" else 1, name)


# ---------------------------------------------------------------------------------------------
# ACS Income (folktables).

# folktables' state list and FIPS codes (folktables.load_acs), so names are checked without
# importing pandas.
ACS_STATE_CODES = {
    "AL": "01", "AK": "02", "AZ": "04", "AR": "05", "CA": "06", "CO": "08", "CT": "09",
    "DE": "10", "FL": "12", "GA": "13", "HI": "15", "ID": "16", "IL": "17", "IN": "18",
    "IA": "19", "KS": "20", "KY": "21", "LA": "22", "ME": "23", "MD": "24", "MA": "25",
    "MI": "26", "MN": "27", "MS": "28", "MO": "29", "MT": "30", "NE": "31", "NV": "32",
    "NH": "33", "NJ": "34", "NM": "35", "NY": "36", "NC": "37", "ND": "38", "OH": "39",
    "OK": "40", "OR": "41", "PA": "42", "RI": "44", "SC": "45", "SD": "46", "TN": "47",
    "TX": "48", "UT": "49", "VT": "50", "VA": "51", "WA": "53", "WV": "54", "WI": "55",
    "WY": "56", "PR": "72",
}  # fmt: skip
ACS_DEFAULT_YEAR = 2018
# ACSIncome's features: the ordered/continuous ones standardised, the coded ones one-hot.
# SCHL (educational attainment, 1-24) is ordered, like Adult's education_num.
ACS_NUMERIC = ("AGEP", "SCHL", "WKHP")
ACS_CATEGORICAL = ("COW", "MAR", "OCCP", "POBP", "RELP", "SEX", "RAC1P")


class AcsParams(NamedTuple):
    """Parsed `acs_income:<STATE>[:<YEAR>]`."""

    state: str
    year: int


def parse_acs(arg: str | None) -> AcsParams:
    """Parses "NY" or "NY:2018" into AcsParams; raises InputError naming the bad part."""
    if not arg:
        raise InputError(
            "--dataset acs_income: give a state, e.g. acs_income:NY or acs_income:CA:2018"
        )
    state, _, year = arg.partition(":")
    state = state.upper()
    if state not in ACS_STATE_CODES:
        raise InputError(
            f"--dataset acs_income:{arg}: unknown state {state!r}; "
            f"choose from {', '.join(ACS_STATE_CODES)}"
        )
    if not year:
        return AcsParams(state, ACS_DEFAULT_YEAR)
    if not year.isdigit() or int(year) < 2014:
        raise InputError(
            f"--dataset acs_income:{arg}: YEAR must be a year >= 2014 (folktables), got {year!r}"
        )
    return AcsParams(state, int(year))


def acs_person_file(root: str, state: str, year: int) -> str:
    """Where folktables keeps the 1-Year PUMS person file of `state` and `year` under `root`."""
    code = ACS_STATE_CODES[state]
    name = f"psam_p{code}.csv" if year >= 2017 else f"ss{str(year)[-2:]}p{state.lower()}.csv"
    return os.path.join(os.path.expanduser(root), str(year), "1-Year", name)


def locate_acs(data_dir: str | None, params: AcsParams | None) -> tuple[bool, str]:
    """(available, where) for one state and year, or for any (params None)."""
    if data_dir is None:
        return False, "no --data-dir given (the folktables data root)"
    if params is not None:
        path = acs_person_file(data_dir, params.state, params.year)
        return os.path.isfile(path), path
    codes = {code: state for state, code in ACS_STATE_CODES.items()}
    found = []
    pattern = os.path.join(os.path.expanduser(data_dir), "*", "1-Year", "psam_p*.csv")
    for path in sorted(glob.glob(pattern)):
        state = codes.get(os.path.basename(path)[6:8])
        year = os.path.basename(os.path.dirname(os.path.dirname(path)))
        if state is not None:
            found.append(f"{state}:{year}")
    if found:
        return True, f"{data_dir} (folktables root: {', '.join(found)})"
    return False, os.path.join(data_dir, "<YEAR>", "1-Year", "psam_p<FIPS>.csv")


def load_acs(data_dir: str | None, download: bool, params: AcsParams) -> Dataset:
    """folktables ACSIncome for one state and year (1-Year PUMS person file).

    Rows pass folktables' `adult_filter` (age > 16, PINCP > 100, WKHP > 0, PWGTP >= 1). Inputs:
    the ACSIncome features; AGEP, SCHL, WKHP numeric, the others one-hot over the codes present.
    Label PINCP > 50,000 (ACSIncome's); regression target log(PINCP).

    Args:
      data_dir: the folktables data root.
      download: let folktables download the PUMS file from census.gov when it is absent.
      params: the state and survey year.

    Raises:
      InputError: no --data-dir, the file missing without `download`, or folktables failed.
    """
    name = f"acs_income:{params.state}:{params.year}"
    if data_dir is None:
        raise InputError(
            f"--dataset {name}: needs --data-dir (the folktables data root that holds, or "
            "with --download receives, the PUMS files)"
        )
    path = acs_person_file(data_dir, params.state, params.year)
    if not os.path.isfile(path) and not download:
        raise missing(
            name,
            path,
            "add --download (folktables fetches it from census.gov), or put the 1-Year PUMS "
            "person CSV there",
        )
    if os.path.isfile(path):
        _check_last_row(path, f"--dataset {name}")
    import folktables

    try:
        source = folktables.ACSDataSource(
            survey_year=str(params.year),
            horizon="1-Year",
            survey="person",
            root_dir=os.path.expanduser(data_dir),
        )
        frame = source.get_data(states=[params.state], download=download)
        features, label, _ = folktables.ACSIncome.df_to_numpy(frame)
        income = folktables.adult_filter(frame)["PINCP"].to_numpy(np.float64)
    except Exception as err:  # folktables raises many kinds (network, parsing, missing columns)
        if download and not os.path.isfile(path):  # folktables prints the download error itself
            raise InputError(
                f"--dataset {name}: folktables could not download {path} from census.gov "
                "(its message is above)"
            ) from err
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"--dataset {name}: folktables could not read {path}: {first}") from err
    if len(income) < 2:
        raise InputError(f"--dataset {name}: {path} has {len(income)} rows after adult_filter")
    columns = dict(zip(folktables.ACSIncome.features, features.T, strict=True))
    x, mask, names = _encode(columns, ACS_NUMERIC, ACS_CATEGORICAL)
    return Dataset(
        name,
        x,
        np.asarray(label, np.int64),
        2,
        None,
        float(x.min()),
        float(x.max()),
        y_regression=np.log(income),
        regression_target="log(PINCP): natural log of total personal income in USD",
        label_name="income PINCP > 50,000 USD",
        numeric_columns=mask,
        feature_names=names,
        origin=np.zeros(len(income), np.int8),
        origin_names=(f"ACS PUMS {params.year} 1-Year {params.state}",),
        source=path,
    )


ACS_PARTIAL_FILE = "acs_income_NY_partial.csv.gz"
ACS_PARTIAL_NUMERIC = ("AGEP", "SCHL", "WKHP")
ACS_PARTIAL_CATEGORICAL = ("COW", "MAR", "SEX")
ACS_PARTIAL_LABEL = "PINCP_GT_50000"


def parse_acs_partial(arg: str | None) -> str:
    """Only "NY" exists."""
    if arg is None or arg.upper() != "NY":
        raise InputError(
            f"--dataset acs_income_partial:{arg or ''}: only acs_income_partial:NY exists"
        )
    return "NY"


def locate_acs_partial(data_dir: str | None) -> tuple[bool, str]:
    """(available, where) for the partial NY extract."""
    path = data_dir_path(data_dir, ACS_PARTIAL_FILE)
    if path is None:
        return False, "no --data-dir given"
    return os.path.isfile(path), path


def load_acs_partial(data_dir: str | None) -> Dataset:
    """A partial ACSIncome NY 2018 extract: 6 of the 10 features and the binary label only.

    Inputs AGEP, SCHL, WKHP (numeric) and COW, MAR, SEX (one-hot). Label PINCP > 50,000. There is
    no income column, so a regression model regresses the 0/1 label (a linear probability model).

    Raises:
      InputError: the file missing or malformed.
    """
    name = "acs_income_partial:NY"
    available, path = locate_acs_partial(data_dir)
    if not available:
        raise missing(
            name, path, f"put {ACS_PARTIAL_FILE} in --data-dir (see shared/data/README.md)"
        )
    where = f"--dataset {name}: {path}"
    frame = _read_csv(path, f"--dataset {name}")
    needed = ACS_PARTIAL_NUMERIC + ACS_PARTIAL_CATEGORICAL + (ACS_PARTIAL_LABEL,)
    _require_columns(frame, needed, where)
    columns = _numeric_columns(frame, needed, where)
    label = columns.pop(ACS_PARTIAL_LABEL)
    if not np.all(np.isin(label, [0, 1])):
        raise InputError(f"{where}: {ACS_PARTIAL_LABEL} must be 0 or 1")
    if len(label) < 2:
        raise InputError(f"{where}: holds {len(label)} rows")
    x, mask, names = _encode(columns, ACS_PARTIAL_NUMERIC, ACS_PARTIAL_CATEGORICAL)
    return Dataset(
        name,
        x,
        label.astype(np.int64),
        2,
        None,
        float(x.min()),
        float(x.max()),
        y_regression=label.astype(np.float64),
        regression_target=(
            "the 0/1 label PINCP > 50000 (a linear probability model: this partial file has "
            "no income column)"
        ),
        label_name="income PINCP > 50,000 USD",
        numeric_columns=mask,
        feature_names=names,
        origin=np.zeros(len(label), np.int8),
        origin_names=("ACS PUMS 2018 1-Year NY (partial)",),
        source=path,
    )


# ---------------------------------------------------------------------------------------------
# Your own npz.


def parse_npz(arg: str | None) -> str:
    """The path of `npz:<PATH>`."""
    if not arg:
        raise InputError("--dataset npz: give a file, e.g. npz:/data/mine.npz")
    return os.path.expanduser(arg)


def locate_npz(data_dir: str | None, path: str | None) -> tuple[bool | None, str]:
    """(available, where): a given path is checked; the family is "bring your own"."""
    if path is None:
        return None, "the PATH you give (x_train, y_train [, x_test, y_test])"
    return os.path.isfile(path), path


def load_npz(path: str) -> Dataset:
    """Your own data from an .npz file (read with allow_pickle=False).

    Arrays: x_train [N, ...] and y_train [N]; optionally x_test and y_test (both or neither),
    pooled with the training arrays (the pipeline draws its own roles; `origin` keeps the
    source split). Inputs:
    - uint8: pixels, scaled to [0, 1]; shown as images when a sample is 2-D (grey) or 3-D with
      1, 3 or 4 channels last;
    - float, other integer or bool: used as they are (shown as images only when 2-D / 3-D and
      within [0, 1]); must be finite.
    Labels: integer or bool -> classification with classes 0..K-1 (K = largest train label + 1,
    at least 2 classes present, test labels within 0..K-1); float -> regression (finite).

    Raises:
      InputError: a missing or unreadable file, missing arrays, bad shapes or dtypes, non-finite
        values, or labels out of range (the message names the array).
    """
    where = f"--dataset npz:{path}"
    if not os.path.isfile(path):
        raise InputError(f"{where}: file not found")
    arrays = _read_npz(path, where, ("x_train", "y_train"))
    has_test = ("x_test" in arrays, "y_test" in arrays)
    if any(has_test) and not all(has_test):
        given = "x_test" if has_test[0] else "y_test"
        raise InputError(f"{where}: {given} without its pair (give x_test and y_test together)")
    splits = ("train", "test") if all(has_test) else ("train",)
    x_train, y_train = arrays["x_train"], arrays["y_train"]
    if x_train.ndim < 2 or len(x_train) < 2:
        raise InputError(
            f"{where}: x_train must have shape [N >= 2, ...features], got {list(x_train.shape)}"
        )
    sample_shape = x_train.shape[1:]
    kind = _input_kind(x_train, f"{where}: x_train")
    classification = _label_kind(y_train, f"{where}: y_train")
    for split in splits:
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.shape[1:] != sample_shape:
            raise InputError(
                f"{where}: x_{split} samples must have shape {list(sample_shape)} like "
                f"x_train, got {list(x.shape[1:])}"
            )
        if _input_kind(x, f"{where}: x_{split}") != kind:
            raise InputError(f"{where}: x_{split} dtype {x.dtype} differs from x_train's")
        if _label_kind(y, f"{where}: y_{split}") != classification:
            raise InputError(f"{where}: y_{split} dtype {y.dtype} differs from y_train's")
        if y.shape != (len(x),):
            raise InputError(
                f"{where}: y_{split} must have shape [{len(x)}] (one label per row of "
                f"x_{split}), got {list(y.shape)}"
            )
        if kind == "float" and not np.all(np.isfinite(x)):
            raise InputError(f"{where}: x_{split} has non-finite values")
        if not classification and not np.all(np.isfinite(y)):
            raise InputError(f"{where}: y_{split} has non-finite values")
    num_classes = None
    if classification:
        num_classes = int(y_train.max()) + 1
        _check_labels(y_train, len(x_train), f"{where}: y_train")
        if len(np.unique(y_train)) < 2:
            raise InputError(f"{where}: y_train needs at least 2 classes, got {np.unique(y_train)}")
        if "test" in splits:
            _check_labels(
                arrays["y_test"],
                len(arrays["x_test"]),
                f"{where}: y_test",
                num_classes=num_classes,
            )
    xs = [arrays[f"x_{s}"] for s in splits]
    ys = [arrays[f"y_{s}"] for s in splits]
    raw = np.concatenate(xs)
    if kind == "uint8":
        x = _scale_pixels(raw)
    else:
        x = raw.reshape(len(raw), -1)
        x = x.astype(np.float64 if x.dtype != np.float32 else np.float32)
    y = np.concatenate(ys)
    y = y.astype(np.int64) if classification else y.astype(np.float64)
    image_shape = None
    is_image_shape = len(sample_shape) == 2 or (
        len(sample_shape) == 3 and sample_shape[-1] in (1, 3, 4)
    )
    if is_image_shape and (kind == "uint8" or (x.min() >= 0 and x.max() <= 1)):
        image_shape = tuple(int(s) for s in sample_shape)
    return Dataset(
        f"npz:{os.path.basename(path)}",
        x,
        y,
        num_classes,
        image_shape,
        float(x.min()),
        float(x.max()),
        label_name=f"class 0-{num_classes - 1}" if classification else "real-valued target",
        origin=np.repeat(np.arange(len(splits), dtype=np.int8), [len(a) for a in ys]),
        origin_names=splits,
        source=path,
    )


# deflate expands at most ~1032:1; a member declaring more is lying about its size.
_DEFLATE_RATIO = 1100


def check_npy_members(path: str) -> None:
    """Checks, before anything is loaded, that every `.npy` member of the zip file `path` (an
    .npz, or a skops file) holds the bytes its header declares: numpy allocates the declared
    shape before reading, so a forged header (shape [10**12]) would otherwise ask for terabytes.

    Raises:
      ValueError: a member whose declared array does not fit in it (naming the member, its
        shape and sizes), an object array, or an unreadable header; and what `zipfile` raises
        on a file that is not a zip (BadZipFile, OSError, EOFError).
    """
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            ceiling = info.file_size
            if info.compress_type == zipfile.ZIP_STORED:
                ceiling = min(ceiling, info.compress_size)
            elif info.compress_type == zipfile.ZIP_DEFLATED:
                ceiling = min(ceiling, _DEFLATE_RATIO * info.compress_size + 1024)
            with archive.open(info) as member:
                version = np.lib.format.read_magic(member)
                if version == (1, 0):
                    shape, _, dtype = np.lib.format.read_array_header_1_0(member)
                elif version == (2, 0):
                    shape, _, dtype = np.lib.format.read_array_header_2_0(member)
                else:
                    raise ValueError(f"member {info.filename}: unsupported .npy version {version}")
            if dtype.hasobject:
                raise ValueError(f"member {info.filename}: object arrays need pickle; refused")
            declared = math.prod(shape) * dtype.itemsize
            if declared > ceiling:
                raise ValueError(
                    f"member {info.filename} declares shape {list(shape)} {dtype} "
                    f"({declared:,} bytes) but holds at most {ceiling:,} bytes"
                )


def _read_npz(path: str, where: str, required: tuple[str, ...]) -> dict[str, np.ndarray]:
    try:
        check_npy_members(path)
        with np.load(path, allow_pickle=False) as npz:
            absent = [k for k in required if k not in npz.files]
            if absent:
                raise InputError(
                    f"{where}: {path} lacks array(s) {', '.join(absent)} "
                    f"(has {', '.join(npz.files) or 'none'})"
                )
            return {k: npz[k] for k in npz.files}
    except InputError:
        raise
    # Not an npz, truncated (BadZipFile, EOFError), corrupt (BadZipFile: bad CRC, zlib.error), or
    # object arrays (ValueError).
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise InputError(f"{where}: cannot read {path} as .npz: {first}") from err


def _input_kind(x: np.ndarray, where: str) -> str:
    if x.dtype == np.uint8:
        return "uint8"
    if x.dtype.kind in "biuf":
        return "float"
    raise InputError(f"{where}: must be numeric (uint8 pixels or features), got dtype {x.dtype}")


def _label_kind(y: np.ndarray, where: str) -> bool:
    """True for class labels (integer / bool), False for real targets (float)."""
    if y.dtype.kind in "biu":
        return True
    if y.dtype.kind == "f":
        return False
    raise InputError(f"{where}: must be integer class labels or float targets, got {y.dtype}")


def _check_labels(y: np.ndarray, count: int, where: str, num_classes: int | None = None) -> None:
    if y.shape != (count,):
        raise InputError(f"{where}: must have shape [{count}], got {list(y.shape)}")
    if y.dtype.kind not in "biu":
        raise InputError(f"{where}: must be integer class labels, got dtype {y.dtype}")
    low, high = int(y.min()), int(y.max())
    if low < 0 or (num_classes is not None and high >= num_classes):
        top = "" if num_classes is None else f"..{num_classes - 1}"
        raise InputError(f"{where}: labels must lie in 0{top}, got range {low}..{high}")
