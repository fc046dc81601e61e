"""Real-data readers without network: tfds mocked, folktables / Adult / npz on tiny files."""

import gzip
import json
import os
import pathlib

import jax
import numpy as np
import pytest
import tensorflow_datasets as tfds

from jaxrecon import cli, data, datasets, pipeline
from jaxrecon.errors import InputError

SHARED_DATA = pathlib.Path(__file__).resolve().parent.parent.parent / "shared" / "data"
KEY = jax.random.key(0)


# ----------------------------------------------------------------------------------------------
# Pure helpers.


def test_standardize_uses_only_the_reference_rows(rng):
    x = rng.normal(3.0, 2.0, size=(50, 4))
    x[:, 2] = rng.integers(0, 2, 50)  # a one-hot-like column, left alone
    x[:, 3] = 7.0  # constant: only centred
    ref = np.arange(10, 30)
    mask = np.array([True, True, False, True])
    out = data.standardize(x, mask, ref)
    np.testing.assert_allclose(out[ref][:, :2].mean(0), 0, atol=1e-12)
    np.testing.assert_allclose(out[ref][:, :2].std(0), 1, rtol=1e-12)
    np.testing.assert_array_equal(out[:, 2], x[:, 2])
    np.testing.assert_array_equal(out[:, 3], 0)
    # Rows outside the reference set are transformed with the reference statistics.
    mean, std = x[ref, 0].mean(), x[ref, 0].std()
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - mean) / std, rtol=1e-12)
    assert out.dtype == np.float64 and out is not x
    with pytest.raises(InputError, match="columns"):
        data.standardize(x, mask[:3], ref)


def _tabular(num=40):
    x = np.arange(num * 3, dtype=np.float64).reshape(num, 3)
    return data.Dataset(
        "t",
        x,
        np.arange(num) % 2,
        2,
        None,
        0.0,
        float(x.max()),
        y_regression=x[:, 1] * 2,
        regression_target="column b",
        regression_drop=(1,),
        numeric_columns=np.array([True, True, False]),
        feature_names=("a", "b", "c"),
        origin=(np.arange(num) >= 30).astype(np.int8),
        origin_names=("train", "test"),
    )


def test_task_view_swaps_in_the_regression_target_and_drops_its_column():
    ds = _tabular()
    reg = data.task_view(ds, "regression")
    assert reg.num_classes is None and reg.feature_names == ("a", "c")
    np.testing.assert_array_equal(reg.x, ds.x[:, [0, 2]])
    np.testing.assert_array_equal(reg.y, ds.x[:, 1] * 2)
    np.testing.assert_array_equal(reg.numeric_columns, [True, False])
    assert data.task_view(ds, "binary") is ds
    assert pipeline.task_labels(reg, "regression").dtype == np.float64


def test_origin_counts():
    ds = _tabular()
    assert data.origin_counts(ds, np.array([0, 1, 35])) == {"train": 2, "test": 1}
    assert data.origin_counts(data.load_digits(), np.arange(5)) == {"all": 5}


@pytest.mark.parametrize(
    "name,expected",
    [
        ("mnist", ("mnist", None)),
        ("acs_income:ny", ("acs_income", datasets.AcsParams("NY", 2018))),
        ("acs_income:CA:2016", ("acs_income", datasets.AcsParams("CA", 2016))),
        ("acs_income_partial:NY", ("acs_income_partial", "NY")),
        ("npz:/a/b:c.npz", ("npz", "/a/b:c.npz")),
    ],
)
def test_parse_dataset_name(name, expected):
    assert data.parse_dataset_name(name) == expected


@pytest.mark.parametrize(
    "name,needle",
    [
        ("imagenet", "unknown data set"),
        ("mnist:3", "takes no parameters"),
        ("acs_income", "give a state"),
        ("acs_income:XX", "unknown state"),
        ("acs_income:NY:18", "YEAR"),
        ("acs_income_partial:CA", "only acs_income_partial:NY"),
        ("npz:", "give a file"),
    ],
)
def test_parse_dataset_name_rejects(name, needle):
    with pytest.raises(InputError, match=needle) as err:
        data.parse_dataset_name(name)
    assert str(err.value).startswith("--dataset") and "\n" not in str(err.value)


# ----------------------------------------------------------------------------------------------
# Images: tfds (mocked) and local npz files.


def test_tfds_images_through_mock_data(tmp_path):
    with tfds.testing.mock_data(num_examples=6):
        ds = data.load_dataset("mnist", key=KEY, data_dir=str(tmp_path), download=True)
        c1 = data.load_dataset("cifar10", key=jax.random.key(1), data_dir=None, download=True)
        c2 = data.load_dataset("cifar10", key=jax.random.key(2), data_dir=None, download=True)
    assert ds.x.shape == (12, 784) and ds.x.dtype == np.float32
    assert ds.image_shape == (28, 28) and ds.num_classes == 10
    assert 0 <= ds.x.min() and ds.x.max() <= 1
    assert ds.origin_names == ("train", "test") and list(np.bincount(ds.origin)) == [6, 6]
    assert ds.source.startswith("tfds mnist:3.0.1")
    assert c1.x.shape == (12, 3072) and c1.image_shape == (32, 32, 3)
    # Shuffled with the key: the same rows in another order.
    assert not np.array_equal(c1.x, c2.x)
    np.testing.assert_array_equal(np.sort(c1.x.sum(1)), np.sort(c2.x.sum(1)))


def test_missing_images_say_where_and_how_without_network(tmp_path):
    with pytest.raises(InputError) as err:
        data.load_dataset("fashion_mnist", key=KEY, data_dir=str(tmp_path / "none"))
    msg = str(err.value)
    assert "\n" not in msg and "fashion_mnist.npz" in msg and "--download" in msg
    assert not (tmp_path / "none").exists()
    available, where = data.DATASETS["fashion_mnist"].locate(str(tmp_path), None)
    assert available is False and "fashion_mnist.npz" in where


def test_tfds_preparing_without_tensorflow_says_so(tmp_path, monkeypatch):
    def no_tensorflow(*args, **kwargs):
        raise ModuleNotFoundError("No module named 'tensorflow'", name="tensorflow")

    monkeypatch.setattr(tfds, "data_source", no_tensorflow)
    with pytest.raises(InputError, match="needs TensorFlow to prepare mnist") as err:
        data.load_dataset("mnist", key=KEY, data_dir=str(tmp_path), download=True)
    assert "\n" not in str(err.value)


def _write_image_npz(path, n=30, shape=(28, 28), seed=0, **extra):
    r = np.random.default_rng(seed)
    arrays = {
        "x_train": r.integers(0, 256, (n,) + shape, dtype=np.uint8),
        "y_train": (np.arange(n) % 10).astype(np.uint8),
        "x_test": r.integers(0, 256, (n // 3,) + shape, dtype=np.uint8),
        "y_test": (np.arange(n // 3) % 10).astype(np.uint8),
    }
    arrays.update(extra)
    np.savez(path, **arrays)
    return arrays


def test_local_image_npz_wins_over_tfds_and_needs_no_network(tmp_path):
    arrays = _write_image_npz(tmp_path / "mnist.npz")
    ds = data.load_dataset("mnist", key=KEY, data_dir=str(tmp_path), download=True)
    assert ds.source == str(tmp_path / "mnist.npz")
    np.testing.assert_allclose(ds.x[:30], arrays["x_train"].reshape(30, -1) / 255, rtol=1e-6)
    np.testing.assert_array_equal(ds.y[30:], arrays["y_test"])
    assert data.DATASETS["mnist"].locate(str(tmp_path), None) == (True, ds.source)
    _write_image_npz(tmp_path / "cifar10.npz", shape=(28, 28))
    with pytest.raises(InputError, match=r"x_train must have shape \[N, 32, 32, 3\]"):
        data.load_dataset("cifar10", key=KEY, data_dir=str(tmp_path))


# ----------------------------------------------------------------------------------------------
# folktables (ACS Income) on a small PUMS-format CSV in folktables' layout.


def _write_pums(root, state_code="36", year=2018, n=80, seed=0):
    r = np.random.default_rng(seed)
    folder = root / str(year) / "1-Year"
    folder.mkdir(parents=True)
    cols = {
        "RT": ["P"] * n,
        "SERIALNO": [f"2018HU{i:07d}" for i in range(n)],
        "AGEP": r.integers(10, 80, n),
        "COW": r.integers(1, 9, n),
        "SCHL": r.integers(1, 25, n),
        "MAR": r.integers(1, 6, n),
        "OCCP": r.choice([10, 2000, 4720], n),
        "POBP": r.choice([36, 303], n),
        "RELP": r.integers(0, 3, n),
        "WKHP": r.integers(0, 60, n),
        "SEX": r.integers(1, 3, n),
        "RAC1P": r.integers(1, 4, n),
        "PINCP": r.choice([50.0, 20000.0, 60000.0, 120000.0], n),
        "PWGTP": r.integers(1, 50, n),
    }
    lines = [",".join(cols)] + [",".join(str(cols[c][i]) for c in cols) for i in range(n)]
    (folder / f"psam_p{state_code}.csv").write_text("\n".join(lines) + "\n")
    return cols


def test_acs_income_reads_a_local_folktables_root(tmp_path):
    cols = _write_pums(tmp_path)
    ds = data.load_dataset("acs_income:NY", key=KEY, data_dir=str(tmp_path))
    keep = (cols["AGEP"] > 16) & (cols["PINCP"] > 100) & (cols["WKHP"] > 0)
    assert len(ds.y) == keep.sum() and ds.name == "acs_income:NY:2018"
    np.testing.assert_array_equal(ds.y, cols["PINCP"][keep] > 50000)
    np.testing.assert_allclose(ds.y_regression, np.log(cols["PINCP"][keep]))
    assert ds.feature_names[:3] == ("AGEP", "SCHL", "WKHP")
    assert "OCCP=4720" in ds.feature_names and "SEX=2" in ds.feature_names
    np.testing.assert_array_equal(ds.x[:, 0], cols["AGEP"][keep])
    assert ds.numeric_columns.sum() == 3 and not ds.numeric_columns[3:].any()
    onehot = ds.x[:, 3:]
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    np.testing.assert_array_equal(onehot.sum(1), len(datasets.ACS_CATEGORICAL))
    available, where = data.DATASETS["acs_income"].locate(str(tmp_path), None)
    assert available and "NY:2018" in where


def test_acs_income_missing_is_one_line_without_network(tmp_path):
    with pytest.raises(InputError, match="psam_p06.csv.*--download"):
        data.load_dataset("acs_income:CA", key=KEY, data_dir=str(tmp_path))
    with pytest.raises(InputError, match="needs --data-dir"):
        data.load_dataset("acs_income:CA", key=KEY)
    assert list(tmp_path.iterdir()) == []


def test_acs_partial_reads_its_file_and_names_missing_columns(tmp_path):
    r = np.random.default_rng(0)
    n = 50
    header = "row,AGEP,COW,SCHL,MAR,WKHP,SEX,PINCP_GT_50000"
    rows = [
        f"{i},{r.integers(17, 90)},{r.integers(1, 9)},{r.integers(1, 25)},"
        f"{r.integers(1, 6)},{r.integers(1, 99)},{r.integers(1, 3)},{i % 2}"
        for i in range(n)
    ]
    path = tmp_path / datasets.ACS_PARTIAL_FILE
    with gzip.open(path, "wt") as f:
        f.write("\n".join([header] + rows) + "\n")
    ds = data.load_dataset("acs_income_partial:NY", key=KEY, data_dir=str(tmp_path))
    assert ds.x.shape[0] == n and ds.numeric_columns.sum() == 3
    np.testing.assert_array_equal(ds.y, np.arange(n) % 2)
    with gzip.open(path, "wt") as f:
        f.write("row,AGEP,COW\n1,20,1\n")
    with pytest.raises(InputError, match="missing column.*SCHL"):
        data.load_dataset("acs_income_partial:NY", key=KEY, data_dir=str(tmp_path))


# ----------------------------------------------------------------------------------------------
# UCI Adult, in both file layouts.


def _adult_rows(n, seed=0):
    r = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        age = int(r.integers(17, 80))
        edu = int(r.integers(1, 17))
        hours = int(r.integers(10, 70))
        rich = edu + hours / 10 + r.normal() > 13
        rows.append(
            [
                str(age),
                str(r.choice(["Private", "State-gov", "?"])),
                str(int(r.integers(10000, 500000))),
                "Some-edu",
                str(edu),
                str(r.choice(["Never-married", "Divorced", "Married-civ-spouse"])),
                str(r.choice(["Sales", "Tech-support", "?"])),
                str(r.choice(["Husband", "Wife", "Own-child"])),
                str(r.choice(["White", "Black"])),
                str(r.choice(["Male", "Female"])),
                str(int(r.choice([0, 0, 0, 5000]))),
                str(int(r.choice([0, 0, 1500]))),
                str(hours),
                str(r.choice(["United-States", "Mexico"])),
                ">50K" if rich else "<=50K",
            ]
        )
    return rows


def _write_adult(folder, n=400, layout="csv"):
    rows = _adult_rows(n)
    n_train = n * 2 // 3
    if layout == "csv":
        header = ",".join(datasets.ADULT_COLUMNS) + ",split"
        lines = [
            ",".join(row) + (",train" if i < n_train else ",test") for i, row in enumerate(rows)
        ]
        with gzip.open(folder / "adult.csv.gz", "wt") as f:
            f.write("\n".join([header] + lines) + "\n")
    else:  # the UCI originals: ", " separators, a junk first test line, "." after test labels
        (folder / "adult.data").write_text(
            "\n".join(", ".join(row) for row in rows[:n_train]) + "\n\n"
        )
        (folder / "adult.test").write_text(
            "|1x3 Cross validator\n"
            + "\n".join(", ".join(row) + "." for row in rows[n_train:])
            + "\n"
        )


def test_adult_csv_and_uci_files_agree(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write_adult(tmp_path / "a", layout="csv")
    _write_adult(tmp_path / "b", layout="uci")
    a = data.load_dataset("adult", key=KEY, data_dir=str(tmp_path / "a"))
    b = data.load_dataset("adult", key=KEY, data_dir=str(tmp_path / "b"))
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    np.testing.assert_array_equal(a.origin, b.origin)
    assert a.origin_names == b.origin_names == ("train", "test")
    assert a.feature_names == b.feature_names and "workclass=?" in a.feature_names
    assert "fnlwgt" not in a.feature_names and "education" not in a.feature_names
    hours = a.feature_names.index("hours_per_week")
    np.testing.assert_array_equal(a.y_regression, a.x[:, hours])
    assert a.regression_drop == (hours,)


def test_adult_bad_label_and_missing_file(tmp_path):
    with pytest.raises(InputError, match="adult.csv.gz") as err:
        data.load_dataset("adult", key=KEY, data_dir=str(tmp_path))
    assert "\n" not in str(err.value)
    with gzip.open(tmp_path / "adult.csv.gz", "wt") as f:
        f.write(",".join(datasets.ADULT_COLUMNS) + "\n")
        f.write("30,Private,1,HS,9,Divorced,Sales,Wife,White,Male,0,0,40,Mexico,maybe\n")
        f.write("30,Private,1,HS,9,Divorced,Sales,Wife,White,Male,0,0,40,Mexico,>50K\n")
    with pytest.raises(InputError, match="income must be <=50K or >50K, got 'maybe'"):
        data.load_dataset("adult", key=KEY, data_dir=str(tmp_path))


# ----------------------------------------------------------------------------------------------
# npz: bring your own data.


def test_npz_uint8_images_and_float_features(tmp_path):
    arrays = _write_image_npz(tmp_path / "img.npz", shape=(6, 6, 3))
    ds = data.load_dataset(f"npz:{tmp_path / 'img.npz'}", key=KEY)
    assert ds.image_shape == (6, 6, 3) and ds.x.shape == (40, 108) and ds.num_classes == 10
    np.testing.assert_allclose(ds.x[0], arrays["x_train"][0].reshape(-1) / 255, rtol=1e-6)
    x = np.random.default_rng(0).normal(size=(20, 5))
    np.savez(tmp_path / "tab.npz", x_train=x, y_train=x[:, 0] * 2.0)
    tab = data.load_dataset(f"npz:{tmp_path / 'tab.npz'}", key=KEY)
    assert tab.image_shape is None and tab.num_classes is None
    np.testing.assert_array_equal(tab.x, x)
    assert tab.origin_names == ("train",)


@pytest.mark.parametrize(
    "arrays,needle",
    [
        ({"x_train": np.zeros((4, 2))}, "lacks array.*y_train"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(3, int)}, r"y_train must have shape"),
        ({"x_train": np.zeros(4), "y_train": np.zeros(4, int)}, "x_train must have shape"),
        ({"x_train": np.full((4, 2), np.nan), "y_train": np.arange(4) % 2}, "non-finite"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.array([0, 1, -1, 1])}, "labels must lie"),
        ({"x_train": np.zeros((4, 2)), "y_train": np.zeros(4, int)}, "at least 2 classes"),
        (
            {"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2, "x_test": np.zeros((2, 2))},
            "x_test without its pair",
        ),
        (
            {
                "x_train": np.zeros((4, 2)),
                "y_train": np.arange(4) % 2,
                "x_test": np.zeros((2, 2)),
                "y_test": np.array([0, 5]),
            },
            r"y_test: labels must lie in 0..1",
        ),
        (
            {
                "x_train": np.zeros((4, 2)),
                "y_train": np.arange(4) % 2,
                "x_test": np.zeros((2, 3)),
                "y_test": np.array([0, 1]),
            },
            "x_test samples must have shape",
        ),
        ({"x_train": np.array([["a", "b"]] * 4), "y_train": np.arange(4) % 2}, "must be numeric"),
        ({"x_train": np.zeros((4, 2), object), "y_train": np.arange(4) % 2}, "cannot read"),
    ],
)
def test_npz_validation_names_the_array(tmp_path, arrays, needle):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=needle) as err:
        data.load_dataset(f"npz:{path}", key=KEY)
    assert "\n" not in str(err.value) and str(err.value).startswith("--dataset npz:")


def test_npz_missing_or_not_an_npz(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        data.load_dataset(f"npz:{tmp_path / 'nope.npz'}", key=KEY)
    (tmp_path / "text.npz").write_text("not a zip")
    with pytest.raises(InputError, match="cannot read"):
        data.load_dataset(f"npz:{tmp_path / 'text.npz'}", key=KEY)


# ----------------------------------------------------------------------------------------------
# End to end through the CLI.


def _run_cli(tmp_path, *args):
    out = tmp_path / "out"
    code = cli.main(
        ["run", "--n-train", "120", "--deletions", "8", "--out", str(out), "--quiet", *args]
    )
    return code, out


@pytest.mark.parametrize("model", ["logistic", "ridge"])
def test_adult_end_to_end(tmp_path, model):
    _write_adult(tmp_path)
    code, out = _run_cli(
        tmp_path, "--dataset", "adult", "--data-dir", str(tmp_path), "--model", model
    )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    d = s["data"]
    assert d["source_splits"]["train"]["train"] + d["source_splits"]["train"]["test"] == 120
    assert d["standardized_columns"]["statistics_from"] == "public split"
    if model == "ridge":
        assert "hours_per_week" in d["label_rule"] and "stand-in" in d["label_rule"]
        assert "hours_per_week" not in d["standardized_columns"]["columns"]
    else:
        assert d["label_rule"] == "binary: raw label (income >50K)"
    assert s["attacks"]["hrec"]["cosine_median"] > s["attacks"]["avg"]["cosine_median"]
    assert not (out / "reconstructions.png").exists()


def test_npz_images_end_to_end_writes_reconstructions(tmp_path):
    _write_image_npz(tmp_path / "mine.npz", n=200, shape=(5, 5))
    code, out = _run_cli(tmp_path, "--dataset", f"npz:{tmp_path / 'mine.npz'}")
    assert code == 0
    assert (out / "reconstructions.png").exists()
    s = json.loads((out / "summary.json").read_text())
    assert set(s["data"]["source_splits"]["test"]) <= {"train", "test"}


def test_missing_dataset_exits_2_with_one_line(tmp_path, capsys):
    code, out = _run_cli(tmp_path, "--dataset", "mnist", "--data-dir", str(tmp_path))
    assert code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mnist.npz" in err and "Traceback" not in err
    assert not out.exists()


def test_cli_download_reaches_tfds(tmp_path):
    with tfds.testing.mock_data(num_examples=8):
        code, out = _run_cli(
            tmp_path,
            *("--dataset", "mnist", "--download", "--model", "logistic"),
            *("--n-train", "6", "--n-public", "4", "--deletions", "2"),
        )
    assert code == 0
    s = json.loads((out / "summary.json").read_text())
    assert s["config"]["download"] is True and s["data"]["source"].startswith("tfds mnist")
    assert (out / "reconstructions.png").exists()


def test_datasets_subcommand_lists_every_data_set(tmp_path, capsys):
    _write_adult(tmp_path)
    assert cli.main(["datasets", "--data-dir", str(tmp_path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(data.DATASETS)
    by_name = {line.split()[0]: line.split()[1] for line in lines}
    assert by_name["adult"] == "yes" and by_name["mnist"] == "no" and by_name["digits"] == "yes"
    assert by_name["acs_income:<STATE>[:<YEAR>]"] == "no"


# ----------------------------------------------------------------------------------------------
# The real copies in ../shared/data (skipped when absent).


def _shared(name):
    path = SHARED_DATA / name
    if not path.exists():
        pytest.skip(f"real data {path} not present (see shared/data/README.md)")
    return str(SHARED_DATA)


@pytest.mark.parametrize(
    "name,shape,pool",
    [
        ("mnist", (28, 28), 70000),
        ("fashion_mnist", (28, 28), 70000),
        ("cifar10", (32, 32, 3), 30000),
    ],
)
def test_real_image_copies(name, shape, pool):
    ds = data.load_dataset(name, key=KEY, data_dir=_shared(f"{name}.npz"))
    assert ds.x.shape == (pool, int(np.prod(shape))) and ds.image_shape == shape
    assert ds.x.dtype == np.float32 and ds.x.min() == 0 and ds.x.max() == 1
    assert list(np.unique(ds.y)) == list(range(10))
    if name == "cifar10":  # stored sorted by class; shuffled on load
        assert len(np.unique(ds.y[:100])) > 5


def test_real_tabular_copies():
    adult = data.load_dataset("adult", key=KEY, data_dir=_shared("adult.csv.gz"))
    assert adult.x.shape[0] == 48842 and adult.y.sum() == 7841 + 3846
    assert data.origin_counts(adult, np.arange(48842)) == {"train": 32561, "test": 16281}
    acs = data.load_dataset(
        "acs_income_partial:NY", key=KEY, data_dir=_shared(os.path.join(datasets.ACS_PARTIAL_FILE))
    )
    assert acs.x.shape[0] == 97141 and abs(acs.y.mean() - 0.4096) < 1e-3
