"""Audits of released models (`jaxrecon.audit`, `jaxrecon.auditing`, `jaxrecon audit`).

Mathematical facts: with the retained data's Hessian (public data = the retained records) and a
Newton-step θ⁻, HRec through the audit recovers the deleted record and its label to round-off,
and the update-scale estimate recovers n exactly; stationarity on the training set gives λ/n
exactly; HRec depends on (n, λ) only through λ/(n−1); SGD's shrinking λ is corrected exactly.
The per-coordinate regulariser the conversions need is checked against NumPy.
"""

import contextlib
import csv
import importlib.util
import io
import json
import pathlib
import pickle
import re
import subprocess
import sys
import warnings
import zipfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import skops.io as sio
from sklearn.linear_model import LogisticRegression

import jaxrecon as jr
import reference as ref
from jaxrecon import attacks, auditing, cli, data, models, snapshots, solvers
from jaxrecon.errors import InputError

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOL = ref.TOL[np.float64]


@pytest.fixture(scope="module")
def digits():
    ds = data.load_digits()
    return ds.x[:200], ds.y[:200]


def _labels(name, y):
    return {"ridge": y.astype(float), "softmax": y % 3, "ridge-onehot": y % 3}.get(
        name, (y >= 5).astype(np.int64)
    )


def _problem(digits, name, bias_penalty, l2=2.0):
    """(model, x, labels, p, λ rows, θ⁺) with θ⁺ our exact optimum under the per-coordinate λ."""
    x, y = digits
    labels = _labels(name, y)
    k = 3 if name in ("softmax", "ridge-onehot") else None
    model = models.make_model(name, k)
    p = np.hstack([x, np.ones((len(x), 1))])
    rows = np.full(model.param_shape(p.shape[1]), l2)
    rows[-1] = l2 * bias_penalty
    theta = solvers.fit_newton(
        model, jnp.asarray(p), jnp.asarray(labels), l2=jnp.asarray(rows), weights=jnp.ones(len(p))
    ).params
    assert np.all(np.isfinite(theta))
    return model, x, labels, p, rows, np.asarray(theta)


def _newton_after(model, theta, p, labels, rows, j, l2_after=None):
    """θ⁻: one Newton step from θ⁺ on the retained objective (λ⁻ = l2_after, default λ)."""
    rows_after = rows if l2_after is None else l2_after
    w = np.ones(len(p))
    w[j] = 0
    args = (jnp.asarray(p), jnp.asarray(labels))
    h = models.dense_hessian(
        model,
        jnp.asarray(theta),
        args[0],
        l2=jnp.asarray(rows_after),
        weights=jnp.asarray(w),
        labels=args[1],
    )
    g = models.gradient(
        model, jnp.asarray(theta), *args, l2=jnp.asarray(rows_after), weights=jnp.asarray(w)
    )
    return np.asarray(theta - jnp.linalg.solve(h, g.reshape(-1)).reshape(theta.shape))


# ---------------------------------------------------------------------------------------------
# Per-coordinate l2 in the shared kernels (scalar l2 unchanged).


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_per_coordinate_l2_in_hessians_objective_and_gradient(digits, name):
    model, _, labels, p, rows, theta = _problem(digits, name, bias_penalty=0.3)
    rng = np.random.default_rng(0)
    rows = rows * rng.uniform(0.5, 2.0, rows.shape)
    w = np.ones(len(p))
    if name == "logistic":
        data_part = ref.logistic_hessian(theta, p, 0.0, w)
    else:
        data_part = ref.softmax_hessian(theta, p, 0.0, w)
    expected = data_part + np.diag(rows.reshape(-1))
    args = dict(weights=jnp.asarray(w), labels=jnp.asarray(labels))
    dense = models.dense_hessian(
        model, jnp.asarray(theta), jnp.asarray(p), l2=jnp.asarray(rows), **args
    )
    np.testing.assert_allclose(dense, expected, rtol=TOL["exact"], atol=TOL["exact"])
    # The public Hessian: matrix-free equals dense, and a constant array equals the scalar.
    v = jnp.asarray(rng.normal(size=theta.shape))
    kw = dict(n_train=150, public_labels=jnp.asarray(labels))
    mv = attacks.public_hessian_matvec(
        model, jnp.asarray(theta), jnp.asarray(p), l2=jnp.asarray(rows), **kw
    )
    mat = attacks.public_hessian_matrix(
        model, jnp.asarray(theta), jnp.asarray(p), l2=jnp.asarray(rows), **kw
    )
    np.testing.assert_allclose(
        mv(v), (mat @ v.reshape(-1)).reshape(v.shape), rtol=1e-10, atol=1e-10
    )
    scalar = attacks.public_hessian_matvec(model, jnp.asarray(theta), jnp.asarray(p), l2=2.0, **kw)
    full = attacks.public_hessian_matvec(
        model, jnp.asarray(theta), jnp.asarray(p), l2=jnp.full(theta.shape, 2.0), **kw
    )
    np.testing.assert_array_equal(scalar(v), full(v))
    # The gradient is the derivative of the objective, per coordinate too.
    obj = lambda t: models.objective(  # noqa: E731
        model, t, jnp.asarray(p), jnp.asarray(labels), l2=jnp.asarray(rows), weights=jnp.asarray(w)
    )
    grad = models.gradient(
        model,
        jnp.asarray(theta),
        jnp.asarray(p),
        jnp.asarray(labels),
        l2=jnp.asarray(rows),
        weights=jnp.asarray(w),
    )
    np.testing.assert_allclose(jax.grad(obj)(jnp.asarray(theta)), grad, rtol=1e-10, atol=1e-10)
    with pytest.raises(ValueError, match="shaped like the parameters"):
        attacks.public_hessian_matvec(
            model, jnp.asarray(theta), jnp.asarray(p), l2=jnp.ones(3), **kw
        )


# ---------------------------------------------------------------------------------------------
# Exactness through the audit.


@pytest.mark.parametrize(
    "name,bias_penalty", [("ridge", 0.0), ("logistic", 0.0), ("softmax", 0.3), ("svm", 1.0)]
)
def test_audit_is_exact_with_the_true_hessian(tmp_path, digits, name, bias_penalty):
    """Public data = the retained records, θ⁻ = a Newton step with their Hessian: HRec's
    reconstruction and label are exact, and so is the update-scale estimate of n."""
    model, x, labels, p, rows, theta = _problem(digits, name, bias_penalty)
    np.savez(tmp_path / "before.npz", theta=theta, model=name, l2=2.0, bias_penalty=bias_penalty)
    before = snapshots.load_snapshot(str(tmp_path / "before.npz"))
    z = p @ theta
    derivative = np.abs(np.asarray(jax.vmap(model.dloss_z)(jnp.asarray(z), jnp.asarray(labels))))
    j = int(np.argmax(derivative.reshape(len(p), -1).max(axis=1)))  # leaves a trace (svm)
    after_theta = _newton_after(model, theta, p, labels, rows, j)
    np.savez(tmp_path / "after.npz", theta=after_theta)
    after = snapshots.load_snapshot(str(tmp_path / "after.npz"))
    keep = np.arange(len(p)) != j
    result = auditing.run_audit(
        before,
        [after],
        x[keep],
        labels[keep],
        n_train=len(p),
        truth_x=x[j : j + 1],
        truth_y=labels[j : j + 1],
    )
    np.testing.assert_allclose(result.hrec.x_hat[0], x[j], atol=1e-8)
    if name == "ridge":
        assert float(result.hrec.y_hat[0]) == pytest.approx(labels[j], abs=1e-8)
    else:
        assert int(result.hrec.y_hat[0]) == labels[j]
        assert result.estimates.n_train == pytest.approx(len(p), rel=1e-6)
    assert result.truth["hrec"]["cosine"][0] == pytest.approx(1.0, abs=1e-12)
    assert result.beliefs.l2_bias == pytest.approx(2.0 * bias_penalty)


@pytest.mark.parametrize("name", ["ridge", "logistic"])
def test_stationarity_estimate_is_exact_on_the_training_set(digits, name):
    model, x, labels, p, rows, theta = _problem(digits, name, bias_penalty=0.0)
    pattern = jnp.asarray(rows / 2.0)
    atk = auditing.make_audit_attacker(jnp.asarray(x), jnp.asarray(labels), n_train=2, l2=0.0)
    rho, residual = auditing.stationarity_l2_per_sample(
        model, jnp.asarray(theta), atk.public, pattern
    )
    assert float(rho) == pytest.approx(2.0 / len(p), rel=1e-8)
    assert float(residual) < 1e-6


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_hrec_depends_on_n_and_l2_only_through_their_ratio(digits, name):
    model, x, labels, p, rows, theta = _problem(digits, name, bias_penalty=0.3)
    afters = np.stack([_newton_after(model, theta, p, labels, rows, j) for j in (3, 40)])
    public = (jnp.asarray(x[100:]), jnp.asarray(labels[100:]))

    def recon(n, lam):
        atk = auditing.make_audit_attacker(*public, n_train=n, l2=jnp.asarray(rows) * lam)
        return auditing.hrec_batch(model, jnp.asarray(theta), jnp.asarray(afters), atk).x_hat

    nominal = recon(200, 1.0)
    np.testing.assert_allclose(recon(2 * 199 + 1, 2.0), nominal, rtol=1e-10, atol=1e-12)
    assert float(jnp.max(jnp.abs(recon(2 * 199 + 1, 1.0) - nominal))) > 1e-6


def test_sgd_shrinking_l2_is_corrected_exactly(digits):
    """SGD minimises (1/n)Σℓ + α/2‖w‖², i.e. λ = n·α before and (n−1)·α after the deletion;
    the audit adds the known shift (λ⁻ − λ⁺)Λθ⁺ and is exact again."""
    alpha = 0.01
    model, x, labels, p, rows, theta = _problem(digits, "logistic", 0.0, l2=len(digits[0]) * alpha)
    j = 11
    after_rows = np.where(rows > 0, (len(p) - 1) * alpha, 0.0)
    after_theta = _newton_after(model, theta, p, labels, rows, j, l2_after=after_rows)
    sgd = snapshots.Snapshot(
        theta, "logistic", l2_per_sample=alpha, bias_penalty=0.0, n_train=len(p), kind="sgd"
    )
    keep = np.arange(len(p)) != j
    result = auditing.run_audit(sgd, [sgd._replace(params=after_theta)], x[keep], labels[keep])
    np.testing.assert_allclose(result.hrec.x_hat[0], x[j], atol=1e-8)
    assert result.beliefs.l2 == pytest.approx(len(p) * alpha)
    assert result.beliefs.l2_after == pytest.approx((len(p) - 1) * alpha)
    # Read as a fixed λ = n·α (no shift), the same pair is not exact.
    fixed = sgd._replace(l2=len(p) * alpha, l2_per_sample=None)
    wrong = auditing.run_audit(fixed, [fixed._replace(params=after_theta)], x[keep], labels[keep])
    assert float(np.max(np.abs(wrong.hrec.x_hat[0] - x[j]))) > 1e-3


def test_sklearn_refits_audit_beats_the_baselines():
    """The experiment's smoke configuration: real scikit-learn refits (exact retraining), skops
    files, public digits: HRec beats Avg with n given and with n estimated."""
    spec = importlib.util.spec_from_file_location(
        "audit_sklearn", ROOT / "experiments" / "audit_sklearn.py"
    )
    exp = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = exp
    spec.loader.exec_module(exp)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = exp.run(exp.get_config(smoke=True))
    assert exp.markdown_table(results).count("\n") == 1 + len(results)
    for r in results.values():
        for which in ("given", "estimated"):
            truth = r[which]["truth"]
            assert truth["hrec"]["cosine_median"] > truth["avg"]["cosine_median"] + 0.05
            assert truth["hrec"]["label_accuracy"] == 1.0
        assert 0.5 * 300 < r["estimated"]["n_train"] < 2 * 300


def test_readme_audit_snippet_runs():
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Auditing released models") :]
    snippet = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    namespace = {}
    exec(compile(snippet, "README.md (Auditing released models)", "exec"), namespace)
    result = namespace["result"]
    assert float(result.truth["hrec"]["cosine"][0]) > 0.95
    assert bool(result.truth["hrec"]["label_correct"][0])
    assert min(float(v[0]) for v in result.sensitivity.values()) > 0.95


# ---------------------------------------------------------------------------------------------
# Inputs, reports and the command line.


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A multinomial LogisticRegression on digits 0-2 before and after deleting training record
    6, as skops files, and the public records (the other digits 0-2) as the CLI reads them.

    Returns (folder, x, y): x[:200] trained on, x[200:] public."""
    ds = data.load_digits()
    keep = ds.y < 3
    x, y = ds.x[keep], ds.y[keep]
    folder = tmp_path_factory.mktemp("released")

    def fit(rows):
        return LogisticRegression(C=1.0, tol=1e-10, max_iter=5000).fit(x[rows], y[rows])

    train = np.arange(200)
    before, after = fit(train), fit(np.delete(train, 6))
    sio.dump(before, folder / "before.skops")
    sio.dump(after, folder / "after.skops")
    for name, est in (("before", before), ("after", after)):
        with open(folder / f"{name}.pkl", "wb") as f:
            pickle.dump(est, f)
    np.savez(folder / "public.npz", x=x[200:], y=y[200:])
    np.savez(folder / "deleted.npz", x=x[6:7], y=y[6:7])
    return folder, x, y


def _load(folder):
    before = snapshots.load_snapshot(str(folder / "before.skops"), argument="before")
    after = snapshots.load_snapshot(str(folder / "after.skops"), argument="after")
    return before, after


@pytest.mark.parametrize(
    "kwargs,argument,match",
    [
        (dict(public_x=np.ones((10, 5))), "public", r"\[rows, 64\]"),
        (dict(public_y=np.full(337, 7)), "public", "label 7 is not one of"),
        (dict(truth_x=np.ones((2, 64))), "truth", "one row per deletion"),
        (dict(n_train=1), "n_train", "integer >= 2"),
        (dict(l2=-1.0), "l2", "finite number >= 0"),
        (dict(model="svm"), "model", "holds a 'softmax' model"),
    ],
)
def test_run_audit_input_errors(released, kwargs, argument, match):
    folder, x, y = released
    before, after = _load(folder)
    args = dict(public_x=x[200:], public_y=y[200:]) | kwargs
    public = (args.pop("public_x"), args.pop("public_y"))
    with pytest.raises(InputError, match=match) as err:
        auditing.run_audit(before, [after], *public, **args)
    assert err.value.argument == argument


def test_summary_and_arrays_of_an_audit(released):
    folder, x, y = released
    before, after = _load(folder)
    result = auditing.run_audit(before, [after, after], x[200:], y[200:], truth_x=x[[6, 6]])
    out = json.loads(json.dumps(auditing.summary(result)))
    assert out["beliefs"]["n_source"].startswith("estimated: update scale over 2")
    assert out["beliefs"]["l2_source"] == "snapshot" and out["beliefs"]["n_train"] > 1
    assert out["before"]["classes"] == [0, 1, 2] and len(out["deletions"]) == 2
    row = out["deletions"][0]
    assert set(row["sensitivity_cosine"]) == {"n_train x0.5", "n_train x2", "l2 x0.5", "l2 x2"}
    assert all(0.9 < c <= 1 + 1e-12 for c in row["sensitivity_cosine"].values())
    assert row["hrec_cosine"] > row["avg_cosine"]
    arrays = auditing.arrays(result)
    assert arrays["hrec_x"].shape == (2, 64) and arrays["sensitivity_cosine"].shape == (4, 2)
    assert "truth" in out and out["attacker_hessian"]["condition_number"] is None  # flat shift


def _cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "jaxrecon.cli", "audit", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "JAX_PLATFORMS": "cpu"},
    )


def test_cli_audit_writes_its_files_and_refuses_bad_input(released, tmp_path):
    released = released[0]
    files = {
        k: str(released / f"{k}.{ext}")
        for k, ext in (
            ("before", "skops"),
            ("after", "skops"),
            ("public", "npz"),
            ("deleted", "npz"),
        )
    }
    out = tmp_path / "audit"
    ok = _cli(
        "--before",
        files["before"],
        "--after",
        files["after"],
        "--public",
        files["public"],
        "--deleted",
        files["deleted"],
        "--n-train",
        "200",
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert ok.returncode == 0, ok.stderr
    assert "hrec cos" in ok.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["deletions"][0]["hrec_cosine"] > summary["deletions"][0]["avg_cosine"]
    with np.load(out / "reconstruction.npz") as arrays:
        hrec_x = arrays["hrec_x"]
    assert hrec_x.shape == (1, 64)
    rows, x_csv = _csv_x(out / "reconstructions.csv")  # the aliases --deleted, --n-train work
    np.testing.assert_array_equal(x_csv, hrec_x)
    assert rows[0]["hrec_label_correct"] == "1" and (out / "reconstructions.png").exists()
    again = _cli(
        "--before",
        files["before"],
        "--after",
        files["after"],
        "--public",
        files["public"],
        "--out",
        str(out),
        cwd=tmp_path,
    )
    assert again.returncode == 2 and "--out:" in again.stderr and "--overwrite" in again.stderr
    # A truncated snapshot: one line naming the flag, exit 2, nothing written.
    raw = (released / "before.skops").read_bytes()
    (tmp_path / "cut.skops").write_bytes(raw[: len(raw) // 2])
    fresh = tmp_path / "fresh"
    bad = _cli(
        "--before",
        str(tmp_path / "cut.skops"),
        "--after",
        files["after"],
        "--public",
        files["public"],
        "--out",
        str(fresh),
        cwd=tmp_path,
    )
    assert bad.returncode == 2
    assert bad.stderr.startswith("jaxrecon: error: --before: cannot read")
    assert bad.stderr.count("\n") == 1 and not (fresh / "summary.json").exists()
    rows = _cli(
        "--before",
        files["before"],
        "--after",
        files["after"],
        "--public",
        files["public"],
        "--deleted",
        files["public"],
        "--out",
        str(fresh),
        cwd=tmp_path,
    )
    assert rows.returncode == 2 and "--truth: need one row per deletion" in rows.stderr
    assert not (fresh / "summary.json").exists()


def _main(*args):
    """`jaxrecon audit ...` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = cli.main(["audit", *args])
    return code, out.getvalue(), err.getvalue()


def _csv_x(path):
    """reconstructions.csv's rows and its x0.. columns as a [B, d] array."""
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    columns = [k for k in rows[0] if re.fullmatch(r"x\d+", k)]
    return rows, np.array([[float(r[k]) for k in columns] for r in rows])


# ---------------------------------------------------------------------------------------------
# Acceptance: the audit of jaxrecon's own runs reproduces their HRec.


@pytest.mark.parametrize("name", ["logistic", "softmax"])
def test_cli_audit_of_our_own_run_reproduces_its_hrec(tmp_path, name):
    """θ⁺ and θ⁻ of a scenario saved as plain arrays w, b (npz and safetensors), the public
    split as the attacker's data, --n and --l2 the attacker's beliefs: the audit's HRec is
    `make_attack`'s HRec to round-off (no bias_penalty stated: penalised like the weights)."""
    from safetensors.numpy import save_file

    sc = jr.make_scenario(data.load_digits(), model=name, n_train=150, key=jax.random.key(0))
    theta = np.asarray(jr.fit(sc).params)
    deleted = jr.draw_deletions(sc, 3)
    after = np.asarray(jr.make_unlearn(sc, theta)(deleted).params)
    ref = jr.make_attack(sc, jnp.asarray(theta), ["hrec"])(after, deleted)["hrec"]
    np.savez(tmp_path / "public.npz", x=np.asarray(sc.public.x), y=np.asarray(sc.public.labels))
    x_del = np.asarray(sc.train.x)[deleted]
    np.savez(tmp_path / "truth.npz", x=x_del, y=np.asarray(sc.train.labels)[deleted])
    for fmt in ("npz", "safetensors"):
        paths = []
        for tag, t in [("before", theta)] + [(f"after{i}", a) for i, a in enumerate(after)]:
            path = str(tmp_path / f"{tag}.{fmt}")
            arrays = {"w": np.ascontiguousarray(t[:-1]), "b": np.asarray(t[-1])}
            np.savez(path, **arrays) if fmt == "npz" else save_file(arrays, path)
            paths.append(path)
        out = tmp_path / fmt
        code, stdout, stderr = _main(
            "--before", paths[0], "--after", *paths[1:], "--public", str(tmp_path / "public.npz"),
            "--model-family", name, "--n", "150", "--l2", str(float(sc.l2)),
            "--truth", str(tmp_path / "truth.npz"), "--out", str(out), "--quiet",
        )  # fmt: skip
        assert code == 0, stderr
        with np.load(out / "reconstruction.npz") as arrays:
            assert float(np.max(np.abs(arrays["hrec_x"] - np.asarray(ref.x_hat)))) < 1e-9
            np.testing.assert_array_equal(arrays["hrec_y"], np.asarray(ref.y_hat))
        rows, x_csv = _csv_x(out / "reconstructions.csv")
        assert float(np.max(np.abs(x_csv - np.asarray(ref.x_hat)))) < 1e-9
        assert [r["after"] for r in rows] == paths[1:]
        cosines = [float(r["hrec_cosine"]) for r in rows]
        np.testing.assert_allclose(cosines, np.asarray(jr.cosine_similarity(ref.x_hat, x_del)))
        assert {"hrec_label_correct", "avg_cosine", "maxdiff_mse"} <= set(rows[0])
        summary = json.loads((out / "summary.json").read_text())
        assert summary["beliefs"]["n_source"] == "given" and summary["beliefs"]["l2_bias"] == 1.0
        assert (out / "reconstructions.png").stat().st_size > 0  # 64 = 8 x 8 pixels


def test_sequence_of_releases_reproduces_sequential_runs(tmp_path):
    """Releases θ0..θ3 from `unlearn_sequence` (one record fewer each): `jaxrecon.audit(...,
    sequence=True)` and `jaxrecon audit --sequence` equal `Attack.apply_pairs` with the
    attacker's n one smaller per step (what `jaxrecon run --sequential` reports)."""
    sc = jr.make_scenario(data.load_digits(), model="logistic", n_train=150, key=jax.random.key(1))
    theta = jr.fit(sc).params
    deleted = jr.draw_deletions(sc, 3)
    seq = jax.jit(jr.unlearn_sequence)(jr.make_unlearn(sc, theta), deleted)
    n_steps = 150 - np.arange(3)
    attack = jr.make_attack(sc, theta, ["hrec"])
    ref = attack.apply_pairs(seq.before, seq.after, jnp.asarray(deleted), n_steps)["hrec"]
    releases = [np.asarray(seq.before[0])] + list(np.asarray(seq.after))
    public = (np.asarray(sc.public.x), np.asarray(sc.public.labels))
    results = jr.audit(
        releases[0], releases[1:], public, model_family="logistic", n=150, l2=1.0, sequence=True
    )
    assert [r.beliefs.n_train for r in results] == list(n_steps)
    x_hat = np.concatenate([np.asarray(r.hrec.x_hat) for r in results])
    assert float(np.max(np.abs(x_hat - np.asarray(ref.x_hat)))) < 1e-9
    # Every θ_i against θ0 instead (the default mode) is a different, wrong attack.
    wrong = jr.audit(releases[0], releases[1:], public, model_family="logistic", n=150, l2=1.0)
    assert float(np.max(np.abs(np.asarray(wrong.hrec.x_hat)[1:] - x_hat[1:]))) > 1e-3
    paths = []
    for i, t in enumerate(releases):
        paths.append(str(tmp_path / f"r{i}.npz"))
        np.savez(paths[-1], w=t[:-1], b=t[-1])
    np.savez(tmp_path / "public.npz", x=public[0], y=public[1])
    code, _, stderr = _main(
        "--before", paths[0], "--after", *paths[1:], "--public", str(tmp_path / "public.npz"),
        "--model-family", "logistic", "--n", "150", "--l2", "1", "--sequence",
        "--out", str(tmp_path / "out"), "--quiet",
    )  # fmt: skip
    assert code == 0, stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["sequence"] == paths and len(summary["steps"]) == 3
    assert [s["before"]["source"] for s in summary["steps"]] == paths[:-1]
    rows, x_csv = _csv_x(tmp_path / "out" / "reconstructions.csv")
    assert float(np.max(np.abs(x_csv - np.asarray(ref.x_hat)))) < 1e-9
    assert [r["before"] for r in rows] == paths[:-1]


def test_rff_audit_inverts_the_features_back_to_the_input(tmp_path):
    """Random Fourier features, the true Hessian (public data = the retained training records,
    θ⁻ a Newton step): HRec's p̂ is φ(x_j), and the embedding inversion gives back x_j."""
    sc = jr.make_scenario(
        data.load_digits(), model="logistic", n_train=120, features="rff", rff_dim=200,
        key=jax.random.key(0),
    )  # fmt: skip
    theta = jr.fit(sc).params
    j = 7
    after = jr.make_unlearn(sc, theta, "newton")(jnp.asarray([j])).params[0]
    keep = np.arange(120) != j
    x, y = np.asarray(sc.train.x), np.asarray(sc.train.labels)
    rff = sc.feature_params
    np.savez(tmp_path / "rff.npz", weights=np.asarray(rff.weights), phases=np.asarray(rff.phases))
    result = jr.audit(
        np.asarray(theta), np.asarray(after), (x[keep], y[keep]), model_family="logistic",
        n=120, l2=float(sc.l2), features="rff", rff_params=str(tmp_path / "rff.npz"),
        truth=(x[j : j + 1], y[j : j + 1]),
    )  # fmt: skip
    assert result.hrec.x_hat.shape == (1, 64)
    assert float(result.truth["hrec"]["cosine"][0]) > 0.99
    assert bool(result.truth["hrec"]["label_correct"][0])
    assert auditing.feature_info(result) == {"name": "rff", "num_features": 200, "input_dim": 64}
    with pytest.raises(InputError, match="required with features 'rff'") as err:
        jr.audit(np.asarray(theta), np.asarray(after), (x, y), features="rff")
    assert err.value.argument == "rff_params"
    with pytest.raises(InputError, match="10 random features, but .* 200 feature rows") as err:
        bad = {"weights": np.ones((10, 64)), "phases": np.ones(10)}
        jr.audit(theta, after, (x, y), model_family="logistic", features="rff", rff_params=bad)
    assert err.value.argument == "rff_params"


def test_library_audit_takes_estimators_and_speaks_the_flags_names(released):
    """`jaxrecon.audit` on in-memory scikit-learn estimators equals the audit of their skops
    files; its errors name its own arguments (n, model_family, truth)."""
    folder, x, y = released
    estimators = []
    for name in ("before", "after"):
        with open(folder / f"{name}.pkl", "rb") as f:
            estimators.append(pickle.load(f))
    kw = dict(n=200, truth=(x[6:7], y[6:7]))
    memory = jr.audit(*estimators, (x[200:], y[200:]), **kw)
    files = jr.audit(str(folder / "before.skops"), [str(folder / "after.skops")],
                     str(folder / "public.npz"), **kw)  # fmt: skip
    np.testing.assert_array_equal(memory.hrec.x_hat, files.hrec.x_hat)
    assert float(memory.truth["hrec"]["cosine"][0]) > 0.9
    assert bool(memory.truth["hrec"]["label_correct"][0])
    for kwargs, argument in [
        (dict(n=1), "n"),
        (dict(model_family="svm"), "model_family"),
        (dict(truth=np.ones((2, 64))), "truth"),
        (dict(features="pca"), "features"),
    ]:
        with pytest.raises(InputError) as err:
            jr.audit(*estimators, (x[200:], y[200:]), **kwargs)
        assert err.value.argument == argument and str(err.value).startswith(f"{argument}: ")


def test_cli_refuses_pickles_and_forged_files_without_writing(released, tmp_path):
    """No --trust-pickle: a pickle is refused (one line, exit 2, no --out folder); with it the
    pickled LogisticRegression audits and a warning says that it ran code. A forged npz header
    (shape [10**12]) and a w without b are one line each, nothing written."""
    folder = released[0]
    common = ["--after", str(folder / "after.skops"), "--public", str(folder / "public.npz")]
    out = tmp_path / "out"
    code, _, stderr = _main("--before", str(folder / "before.pkl"), *common, "--out", str(out))
    assert code == 2 and stderr.count("\n") == 1
    assert stderr.startswith("jaxrecon: error: --before:") and "--trust-pickle" in stderr
    assert not out.exists()
    code, stdout, stderr = _main(
        "--before", str(folder / "before.pkl"), *common, "--trust-pickle", "--n", "200",
        "--out", str(out),
    )  # fmt: skip
    assert code == 0, stderr
    assert f"jaxrecon: warning: unpickling {folder / 'before.pkl'} runs code from it" in stderr
    assert (out / "summary.json").exists() and "wrote summary.json" in stdout
    forged = tmp_path / "forged.npz"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f8", "fortran_order": False, "shape": (10**12,)}
    )
    with zipfile.ZipFile(forged, "w") as archive:
        archive.writestr("w.npy", header.getvalue() + bytes(8))
    np.savez(tmp_path / "no_bias.npz", w=np.ones(65))
    for bad, flag, why in [
        (["--before", str(forged)], "--before", "declares shape [1000000000000]"),
        (["--before", str(tmp_path / "no_bias.npz")], "--before", "HRec needs the bias"),
        (["--before", str(folder / "before.skops"), "--features", "rff"], "--rff-params",
         "required"),
        (["--before", str(folder / "before.skops"), "--n", "1"], "--n", "integer >= 2"),
        (["--before", str(folder / "before.skops"), "--model", "svm"], "--model-family", "svm"),
    ]:  # fmt: skip
        fresh = tmp_path / "fresh"
        code, _, stderr = _main(*bad, *common, "--out", str(fresh))
        assert code == 2 and stderr.count("\n") == 1, stderr
        assert stderr.startswith(f"jaxrecon: error: {flag}:") and why in stderr
        assert not fresh.exists()
