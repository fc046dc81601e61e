"""Released models in, θ in jaxrecon's layout out (`jaxrecon.snapshots`), and file readers that
fail cleanly on truncated or corrupt files.

The conversions are checked as mathematical facts against our own trainer: scikit-learn's fitted
θ is the minimiser of jaxrecon's objective Σℓ + ½Σ_c λ_c θ_c² with the converted per-coordinate
λ (equal to `solvers.fit_newton`'s solution, or `scenario.fit`'s where the conventions coincide,
and a stationary point of it), and NOT with the wrong convention (penalised intercept, λ = C).
"""

import gzip
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skops.io as sio
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression, Ridge, SGDClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from jaxrecon import auditing, data, models, scenario, snapshots, solvers
from jaxrecon.errors import InputError


@pytest.fixture(scope="module")
def digits():
    """300 digits (pixels in [0, 1]) with features p = [x, 1]."""
    ds = data.load_digits()
    x, y = ds.x[:300], ds.y[:300]
    return x, y, np.hstack([x, np.ones((len(x), 1))])


def _fit_ours(model_name, p, labels, l2_rows, k=None):
    model = models.make_model(model_name, k)
    return solvers.fit_newton(
        model,
        jnp.asarray(p),
        jnp.asarray(labels),
        l2=jnp.asarray(l2_rows),
        weights=jnp.ones(len(p)),
        tol=1e-13,
    )


def _rel(a, b):
    return float(np.linalg.norm(np.asarray(a) - b) / np.linalg.norm(b))


def _stationarity(snap, p, labels, l2_rows):
    """‖∇L(θ)‖ / ‖∇L(0)‖ of jaxrecon's objective at the snapshot's θ."""
    k = snap.params.shape[1] if snap.params.ndim == 2 else None
    model = models.make_model(snap.model, k)
    return float(
        solvers.relative_grad_norm(
            model,
            jnp.asarray(snap.params),
            jnp.asarray(p),
            jnp.asarray(labels),
            l2=jnp.asarray(l2_rows),
            weights=jnp.ones(len(p)),
        )
    )


# ---------------------------------------------------------------------------------------------
# scikit-learn conversions against our trainer.


def test_ridge_is_our_ridge_with_an_unpenalised_intercept(digits):
    x, y, p = digits
    snap = snapshots.from_estimator(Ridge(alpha=2.0).fit(x, y.astype(float)))
    assert snap.model == "ridge" and snap.l2 == 2.0 and snap.bias_penalty == 0.0
    rows = snapshots.penalty_rows(snap, snap.l2)
    assert rows[-1] == 0 and np.all(rows[:-1] == 2.0)
    ours = _fit_ours("ridge", p, y.astype(float), rows)
    assert _rel(snap.params, ours.params) < 1e-10
    # The wrong convention (intercept penalised like the weights) is measurably different.
    assert _stationarity(snap, p, y.astype(float), np.full_like(rows, 2.0)) > 1e-4


@pytest.mark.parametrize("solver", ["newton-cholesky", "lbfgs"])
def test_binary_logistic_regression_is_ours_with_l2_one_over_c(digits, solver):
    x, y, p = digits
    yb = (y >= 5).astype(int)
    est = LogisticRegression(C=0.5, solver=solver, tol=1e-12, max_iter=10_000).fit(x, yb)
    snap = snapshots.from_estimator(est)
    assert (snap.model, snap.l2, snap.bias_penalty) == ("logistic", 2.0, 0.0)
    assert list(snap.classes) == [0, 1]
    ours = _fit_ours("logistic", p, yb, snapshots.penalty_rows(snap, snap.l2))
    assert _rel(snap.params, ours.params) < (1e-10 if solver == "newton-cholesky" else 1e-5)
    wrong = snapshots.penalty_rows(snap, 0.5)  # λ = C instead of 1/C
    assert _stationarity(snap, p, yb, wrong) > 100 * _stationarity(
        snap, p, yb, snapshots.penalty_rows(snap, snap.l2)
    )


def test_liblinear_logistic_penalises_the_scaled_intercept(digits):
    x, y, p = digits
    yb = (y >= 5).astype(int)
    est = LogisticRegression(
        C=0.5, solver="liblinear", intercept_scaling=2.0, tol=1e-12, max_iter=10_000
    ).fit(x, yb)
    snap = snapshots.from_estimator(est)
    assert snap.bias_penalty == pytest.approx(0.25)  # bias λ = 1/(C s²)
    ours = _fit_ours("logistic", p, yb, snapshots.penalty_rows(snap, snap.l2))
    assert _rel(snap.params, ours.params) < 1e-6


def test_multinomial_logistic_regression_is_our_softmax(digits):
    x, y, p = digits
    keep = y < 3
    est = LogisticRegression(C=0.5, tol=1e-12, max_iter=10_000).fit(x[keep], y[keep])
    snap = snapshots.from_estimator(est)
    assert snap.model == "softmax" and snap.params.shape == (65, 3)
    rows = snapshots.penalty_rows(snap, snap.l2)
    # The unpenalised intercepts leave a flat direction (a common shift of all K intercepts),
    # so compare stationarity rather than a solve: θ_sklearn is a minimiser of our objective.
    assert _stationarity(snap, p[keep], y[keep], rows) < 1e-6
    assert _stationarity(snap, p[keep], y[keep], np.full_like(rows, 2.0)) > 1e-3
    # With a vanishing intercept penalty our Newton solution is sklearn's (intercepts sum to 0).
    ours = _fit_ours("softmax", p[keep], y[keep], np.where(rows > 0, rows, 1e-10), k=3)
    assert _rel(snap.params, ours.params) < 1e-5


def test_linear_svc_is_our_svm_scenario_fit(digits):
    """With intercept_scaling 1, LinearSVC's objective is jaxrecon's own (bias penalised):
    `scenario.fit` on the same rows gives the same θ."""
    sc = scenario.make_scenario(
        data.load_digits(),
        model="svm",
        l2=2.0,
        key=jax.random.key(0),
        roles=data.Split(np.arange(300), np.arange(300, 400), np.arange(400, 450)),
    )
    x, labels = np.asarray(sc.train.x), np.asarray(sc.train.labels)
    est = LinearSVC(C=0.5, tol=1e-12, max_iter=200_000).fit(x, labels)
    snap = snapshots.from_estimator(est)
    assert (snap.model, snap.l2, snap.bias_penalty) == ("svm", 2.0, 1.0)
    assert _rel(snap.params, np.asarray(jax.jit(scenario.fit)(sc).params)) < 1e-6


@pytest.mark.parametrize("scaling", [3.0])
def test_linear_svc_intercept_scaling_and_one_vs_rest(digits, scaling):
    x, y, p = digits
    yb = (y >= 5).astype(int)
    est = LinearSVC(C=0.5, intercept_scaling=scaling, tol=1e-12, max_iter=200_000).fit(x, yb)
    snap = snapshots.from_estimator(est)
    assert snap.bias_penalty == pytest.approx(1 / scaling**2)
    ours = _fit_ours("svm", p, yb, snapshots.penalty_rows(snap, snap.l2))
    assert _rel(snap.params, ours.params) < 1e-6
    keep = y < 3
    ovr = snapshots.from_estimator(
        LinearSVC(C=0.5, tol=1e-12, max_iter=200_000).fit(x[keep], y[keep])
    )
    assert ovr.params.shape == (65, 3)
    ours = _fit_ours("svm", p[keep], y[keep], snapshots.penalty_rows(ovr, ovr.l2), k=3)
    assert _rel(ovr.params, ours.params) < 1e-6


def test_sgd_classifier_records_n_and_approaches_our_logistic(digits):
    x, y, p = digits
    yb = (y >= 5).astype(int)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est = SGDClassifier(
            loss="log_loss", alpha=0.01, max_iter=300, tol=None, average=True, random_state=0
        ).fit(x, yb)
    snap = snapshots.from_estimator(est)
    assert snap.n_train == 300 and snap.l2 is None and snap.l2_per_sample == 0.01
    ours = _fit_ours("logistic", p, yb, snapshots.penalty_rows(snap, 300 * 0.01))
    # SGD is only near the optimum of (1/n)Σℓ + α/2‖w‖², i.e. ours with λ = n·α.
    assert _rel(snap.params, ours.params) < 0.05
    assert _rel(snap.params, ours.params) < _rel(
        snap.params, _fit_ours("logistic", p, yb, snapshots.penalty_rows(snap, 0.01)).params
    )


@pytest.mark.parametrize(
    "make,why",
    [
        (lambda: Ridge(fit_intercept=False), "fit_intercept"),
        (lambda: LogisticRegression(C=1.0, l1_ratio=1.0, solver="saga"), "penalty"),
        (lambda: LogisticRegression(class_weight="balanced"), "class_weight"),
        (lambda: LinearSVC(loss="hinge"), "squared_hinge"),
        (lambda: SGDClassifier(loss="hinge"), "log_loss"),
        (lambda: make_pipeline(StandardScaler(), Ridge()), "not supported"),
    ],
)
def test_unsupported_estimators_are_refused(digits, make, why):
    x, y, _ = digits
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = make().fit(x, (y >= 5).astype(int))
    with pytest.raises(InputError, match=why) as err:
        snapshots.from_estimator(est, argument="before")
    assert err.value.argument == "before"


def test_more_refusals(digits):
    x, y, _ = digits
    with pytest.raises(InputError, match="not fitted"):
        snapshots.from_estimator(Ridge())
    with pytest.raises(InputError, match="multi-target"):
        snapshots.from_estimator(Ridge().fit(x, np.stack([y, y], axis=1).astype(float)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        sgd = SGDClassifier(loss="log_loss", max_iter=5).fit(x, y % 3)
    with pytest.raises(InputError, match="one-vs-rest"):
        snapshots.from_estimator(sgd)


# ---------------------------------------------------------------------------------------------
# File formats: every reader gives the same θ.


@pytest.fixture(scope="module")
def softmax_estimator(digits):
    x, y, _ = digits
    keep = y < 3
    return LogisticRegression(C=1.0, max_iter=1000).fit(x[keep], y[keep])


def test_skops_file_equals_the_estimator(tmp_path, softmax_estimator):
    path = tmp_path / "m.skops"
    sio.dump(softmax_estimator, path)
    snap = snapshots.load_snapshot(str(path), argument="before")
    ref = snapshots.from_estimator(softmax_estimator)
    np.testing.assert_array_equal(snap.params, ref.params)
    assert snap.model == "softmax" and snap.kind == ref.kind and snap.source == str(path)


class _Sneaky:
    """A type skops does not trust: a file holding one must never be loaded."""


def test_skops_file_with_untrusted_types_is_refused(tmp_path, softmax_estimator):
    est = LogisticRegression().fit(np.eye(4), [0, 1, 0, 1])
    est.extra_ = _Sneaky()
    path = tmp_path / "m.skops"
    sio.dump(est, path)
    with pytest.raises(InputError, match="refused.*_Sneaky") as err:
        snapshots.load_snapshot(str(path), argument="after")
    assert err.value.argument == "after"


def test_npz_safetensors_and_flax_files_give_the_same_theta(tmp_path, softmax_estimator):
    from flax import serialization
    from safetensors.numpy import save_file

    ref = snapshots.from_estimator(softmax_estimator)
    theta = ref.params
    np.savez(tmp_path / "a.npz", theta=theta, model="softmax", l2=1.0, n_train=300)
    weight, bias = theta[:-1].T.copy(), theta[-1].copy()  # an nn.Linear: weight [K, d]
    save_file(
        {"weight": weight, "bias": bias}, str(tmp_path / "b.safetensors"), {"model": "softmax"}
    )
    save_file({"theta": theta}, str(tmp_path / "c.safetensors"), {"l2": "0.5"})
    tree = {
        "params": {"Dense_0": {"kernel": theta[:-1], "bias": theta[-1]}},
        "jaxrecon": {"model": "softmax", "bias_penalty": 0.0, "classes": ["a", "b", "c"]},
    }
    (tmp_path / "d.msgpack").write_bytes(serialization.msgpack_serialize(tree))
    a = snapshots.load_snapshot(str(tmp_path / "a.npz"))
    b = snapshots.load_snapshot(str(tmp_path / "b.safetensors"))
    c = snapshots.load_snapshot(str(tmp_path / "c.safetensors"), model="softmax")
    d = snapshots.load_snapshot(str(tmp_path / "d.msgpack"))
    for snap in (a, b, c, d):
        np.testing.assert_array_equal(snap.params, theta)
        assert snap.model == "softmax"
    assert (a.l2, a.n_train, c.l2, d.bias_penalty) == (1.0, 300, 0.5, 0.0)
    assert list(d.classes) == ["a", "b", "c"]
    # A binary nn.Linear (K = 1) is a [D] vector.
    save_file({"weight": weight[:1], "bias": bias[:1]}, str(tmp_path / "e.safetensors"))
    e = snapshots.load_snapshot(str(tmp_path / "e.safetensors"), model="logistic")
    np.testing.assert_array_equal(e.params, theta[:, 0])


@pytest.mark.parametrize(
    "arrays,match",
    [
        ({"v": np.ones(3)}, "need arrays 'w' and 'b'"),
        ({"w": np.ones(3)}, "no bias 'b': HRec needs the bias"),
        ({"w": np.ones((3, 2)), "b": np.ones(3)}, "do not form a dense layer"),
        ({"theta": np.array([1.0, np.nan, 2.0])}, "non-finite"),
        ({"theta": np.ones((2, 3, 4))}, r"\[D >= 2\] or \[D, K\]"),
        ({"theta": np.ones(3), "model": "lasso"}, "model: must be one of"),
        ({"theta": np.ones(3), "l2": -1.0}, "l2: must be a finite number >= 0"),
        ({"theta": np.ones(3), "n_train": 2.5}, "n_train: must be an integer"),
        ({"theta": np.ones((3, 2)), "model": "ridge"}, r"ridge model has θ of shape \[D\]"),
        ({"theta": np.ones((3, 4)), "classes": np.arange(3)}, "distinct classes"),
    ],
)
def test_bad_npz_snapshots_name_the_argument(tmp_path, arrays, match):
    path = tmp_path / "s.npz"
    np.savez(path, **arrays)
    with pytest.raises(InputError, match=match) as err:
        snapshots.load_snapshot(str(path), argument="before")
    assert err.value.argument == "before"


def test_model_argument_must_agree_with_the_file(tmp_path, softmax_estimator):
    path = tmp_path / "m.skops"
    sio.dump(softmax_estimator, path)
    with pytest.raises(InputError, match="holds a 'softmax' model") as err:
        snapshots.load_snapshot(str(path), model="svm")
    assert err.value.argument == "model"
    with pytest.raises(InputError, match="unknown snapshot format"):
        snapshots.load_snapshot(str(tmp_path / "m.h5"))
    with pytest.raises(InputError, match="file not found"):
        snapshots.load_snapshot(str(tmp_path / "missing.npz"))


def test_check_pair_compares_what_both_state(softmax_estimator):
    ref = snapshots.from_estimator(softmax_estimator)
    snapshots.check_pair(ref, ref._replace(l2=None, kind="npz"))  # unstated: not compared
    with pytest.raises(InputError, match="l2 2.0 differs") as err:
        snapshots.check_pair(ref, ref._replace(l2=2.0))
    assert err.value.argument == "after"
    with pytest.raises(InputError, match="shape"):
        snapshots.check_pair(ref, ref._replace(params=ref.params[:, :2]))


# ---------------------------------------------------------------------------------------------
# Truncated and corrupt files: one InputError naming the argument, never a traceback.


def _damaged(path, tmp_path, how):
    raw = path.read_bytes()
    out = tmp_path / f"{how}-{path.name}"
    if how == "truncated":
        out.write_bytes(raw[: len(raw) // 2])
    else:
        middle = len(raw) // 2
        out.write_bytes(raw[:middle] + bytes(64) + raw[middle + 64 :])
    return out


@pytest.mark.parametrize("how", ["truncated", "corrupt"])
def test_damaged_snapshot_files_are_input_errors(tmp_path, softmax_estimator, how):
    from flax import serialization
    from safetensors.numpy import save_file

    theta = snapshots.from_estimator(softmax_estimator).params
    files = [tmp_path / name for name in ("m.skops", "m.npz", "m.safetensors", "m.msgpack")]
    sio.dump(softmax_estimator, files[0])
    np.savez_compressed(files[1], theta=theta, model="softmax")
    save_file({"theta": theta}, str(files[2]), {"model": "softmax"})
    files[3].write_bytes(serialization.msgpack_serialize({"theta": theta}))
    for path in files:
        damaged = _damaged(path, tmp_path, how)
        try:
            snap = snapshots.load_snapshot(str(damaged), argument="before", model="softmax")
        except InputError as err:
            assert err.argument == "before" and str(err).startswith("before: ")
            assert str(damaged) in str(err) and "\n" not in str(err)
        else:
            # Corrupt bytes inside raw array data can still parse: then they are the parameters.
            assert how == "corrupt" and snap.params.shape == theta.shape


def test_dataset_readers_report_truncated_and_corrupt_files(tmp_path):
    """npz: a truncated zip is BadZipFile, a corrupt member a CRC error; csv.gz: EOFError or a
    zlib error. Each is one InputError line."""
    x = np.random.default_rng(0).random((200, 5))
    good = tmp_path / "good.npz"
    np.savez_compressed(good, x_train=x, y_train=np.arange(200) % 2)
    for how in ("truncated", "corrupt"):
        bad = _damaged(good, tmp_path, how)
        with pytest.raises(InputError, match="cannot read") as err:
            data.load_dataset(f"npz:{bad}", key=jax.random.key(0))
        assert str(bad) in str(err.value) and "\n" not in str(err.value)
        with pytest.raises(InputError, match="cannot read") as err:  # --public, --truth
            auditing.load_records(str(bad), "public")
        assert str(err.value).startswith(f"public: cannot read {bad}")
    folder = tmp_path / "adult"
    folder.mkdir()
    with gzip.open(folder / "full.csv.gz", "wt") as f:
        f.write("age,income\n" + "".join(f"{i},{i % 2}\n" for i in range(20000)))
    for how in ("truncated", "corrupt"):
        (folder / "adult.csv.gz").write_bytes(
            _damaged(folder / "full.csv.gz", tmp_path, how).read_bytes()
        )
        with pytest.raises(InputError, match="--dataset adult"):
            data.load_dataset("adult", key=jax.random.key(0), data_dir=str(folder))


def test_folktables_root_and_tfds_copy_damaged_are_one_line(tmp_path):
    """A PUMS file cut short (its last row ragged) or corrupt, and a prepared tfds copy whose
    metadata is truncated or garbage: one InputError line naming the file or folder."""
    from test_datasets import _write_pums

    _write_pums(tmp_path)
    pums = tmp_path / "2018" / "1-Year" / "psam_p36.csv"
    raw = pums.read_bytes()
    for damaged in (raw[: len(raw) // 2], raw[:100] + bytes(range(200, 256)) + raw[156:]):
        pums.write_bytes(damaged)
        with pytest.raises(InputError, match="cannot read|could not read") as err:
            data.load_dataset("acs_income:NY", key=jax.random.key(0), data_dir=str(tmp_path))
        assert str(pums) in str(err.value) and "\n" not in str(err.value)
    folder = tmp_path / "tfds" / "mnist" / "3.0.1"
    folder.mkdir(parents=True)
    (folder / "mnist-train.array_record-00000-of-00001").write_bytes(b"\x00garbage" * 64)
    for info in ('{"name": "mnist", "vers', "\x00\x01 not json"):
        (folder / "dataset_info.json").write_text(info)
        with pytest.raises(InputError, match="could not read") as err:
            data.load_dataset("mnist", key=jax.random.key(0), data_dir=str(tmp_path / "tfds"))
        assert str(tmp_path / "tfds") in str(err.value) and "\n" not in str(err.value)


# ---------------------------------------------------------------------------------------------
# Plain arrays w and b, forged sizes, pickle only when trusted.


def test_w_and_b_arrays_from_any_framework(tmp_path):
    """θ = [w; b], bias row last, for a scalar-output and a multi-output model; no bias penalty
    stated (jaxrecon's convention: penalised like the weights); the same from safetensors, from
    an array and from a `Snapshot`."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(0)
    w, b = rng.normal(size=(5, 3)), rng.normal(size=3)
    np.savez(tmp_path / "m.npz", w=w, b=b)
    save_file({"w": w, "b": b}, str(tmp_path / "m.safetensors"))
    np.savez(tmp_path / "s.npz", w=w[:, 0], b=np.float64(b[0]))
    for path in ("m.npz", "m.safetensors"):
        snap = snapshots.load_snapshot(str(tmp_path / path), model="softmax")
        np.testing.assert_array_equal(snap.params, np.vstack([w, b]))
        assert snap.bias_penalty is None and snapshots.penalty_rows(snap, 2.0)[-1, 0] == 2.0
    scalar = snapshots.load_snapshot(str(tmp_path / "s.npz"))
    np.testing.assert_array_equal(scalar.params, np.append(w[:, 0], b[0]))
    array = snapshots.as_snapshot(np.vstack([w, b]), argument="after", model="softmax")
    np.testing.assert_array_equal(array.params, np.vstack([w, b]))
    assert snapshots.as_snapshot(array, argument="after") is array
    with pytest.raises(InputError, match="need a file, estimator or array") as err:
        snapshots.as_snapshot(object(), argument="after")
    assert err.value.argument == "after"


def _forged_npz(path, shape):
    """An .npz whose member theta.npy declares `shape` but holds 16 bytes."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": tuple(shape)}
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("theta.npy", header.getvalue() + bytes(16))


def _forged_safetensors(path, shape):
    """A safetensors file whose header declares `shape` (F64) over 16 bytes of data."""
    import json

    nbytes = int(np.prod(shape, dtype=object)) * 8
    header = json.dumps({"theta": {"dtype": "F64", "shape": shape, "data_offsets": [0, nbytes]}})
    header = header.encode() + b" " * (-len(header) % 8)
    path.write_bytes(len(header).to_bytes(8, "little") + header + bytes(16))


@pytest.mark.parametrize("fmt", ["npz", "safetensors", "dataset npz"])
def test_a_huge_declared_shape_is_refused_before_allocating(tmp_path, fmt):
    """shape [10**12] float64 would be 8 TB: refused from the header (a MemoryError or an
    allocation would mean it was trusted)."""
    path = tmp_path / ("m.safetensors" if fmt == "safetensors" else "m.npz")
    (_forged_safetensors if fmt == "safetensors" else _forged_npz)(path, [10**12])
    with pytest.raises(InputError, match=r"declares shape \[1000000000000\]") as err:
        if fmt == "dataset npz":
            data.load_dataset(f"npz:{path}", key=jax.random.key(0))
        else:
            snapshots.load_snapshot(str(path), argument="before", model="logistic")
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_pickle_and_joblib_only_when_trusted(tmp_path, softmax_estimator):
    import pickle

    import joblib

    with open(tmp_path / "m.pkl", "wb") as f:
        pickle.dump(softmax_estimator, f)
    joblib.dump({"w": np.ones((4, 3)), "b": np.zeros(3)}, tmp_path / "m.joblib")
    for name in ("m.pkl", "m.joblib"):
        with pytest.raises(InputError, match="refused: unpickling runs code.*--trust-pickle"):
            snapshots.load_snapshot(str(tmp_path / name), argument="before")
    with pytest.warns(snapshots.UnsafeLoadWarning, match="unpickling .*m.pkl runs code from it"):
        snap = snapshots.load_snapshot(str(tmp_path / "m.pkl"), trust_pickle=True)
    np.testing.assert_array_equal(snap.params, snapshots.from_estimator(softmax_estimator).params)
    with pytest.warns(snapshots.UnsafeLoadWarning):
        arrays = snapshots.load_snapshot(str(tmp_path / "m.joblib"), trust_pickle=True)
    assert arrays.params.shape == (5, 3) and np.all(arrays.params[-1] == 0)
    (tmp_path / "cut.pkl").write_bytes((tmp_path / "m.pkl").read_bytes()[:50])
    with pytest.warns(snapshots.UnsafeLoadWarning), pytest.raises(InputError, match="cut.pkl"):
        snapshots.load_snapshot(str(tmp_path / "cut.pkl"), trust_pickle=True)
