"""Reliability: resumable runs, SIGKILL, sweeps, determinism, float32 vs float64, edge cases."""

import json
import os
import signal
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import reference as ref
from jaxrecon import attacks, cli, features, models, pipeline, unlearning
from jaxrecon.errors import InputError, NumericalError

SMALL = ["--n-train", "300", "--deletions", "24", "--chunk-size", "4", "--model", "logistic"]


def _cmd(out):
    return [sys.executable, "-m", "jaxrecon.cli", "run", "--quiet", "--out", str(out), *SMALL]


def _chunks(out):
    folder = out / "chunks"
    if not folder.exists():
        return []
    return sorted(p for p in os.listdir(folder) if p.startswith("chunk-") and p.endswith(".npz"))


@pytest.fixture(scope="module")
def reference_csv(tmp_path_factory):
    out = tmp_path_factory.mktemp("uninterrupted") / "run"
    subprocess.run(_cmd(out), check=True, capture_output=True)
    return (out / "deletions.csv").read_bytes()


@pytest.mark.parametrize("kill_after_chunks", [1, 4])
def test_sigkill_then_rerun_gives_the_uninterrupted_result(
    tmp_path, reference_csv, kill_after_chunks
):
    out = tmp_path / "run"
    proc = subprocess.Popen(_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_chunks(out)) < kill_after_chunks and proc.poll() is None:
        assert time.time() < deadline, "run made no progress"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = len(_chunks(out))
    assert not (out / "deletions.csv").exists() or done == 6
    rerun = subprocess.run(_cmd(out), capture_output=True, text=True)
    assert rerun.returncode == 0, rerun.stderr
    assert not any(name.startswith(".") for name in os.listdir(out / "chunks"))
    assert (out / "deletions.csv").read_bytes() == reference_csv
    summary = json.loads((out / "summary.json").read_text())
    assert summary["chunks"]["reused"] == done
    assert summary["chunks"]["reused"] + summary["chunks"]["computed"] == 6
    rows = (out / "deletions.csv").read_text().splitlines()[1:]
    assert len(rows) == 24 and len({r.split(",")[0] for r in rows}) == 24


def test_other_config_refused_unless_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    base = ["run", "--quiet", "--out", str(out), "--n-train", "200", "--deletions", "6"]
    assert cli.main(base) == 0
    assert cli.main([*base[:-1], "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--overwrite" in err
    assert cli.main([*base[:-1], "8", "--overwrite"]) == 0
    assert len((out / "deletions.csv").read_text().splitlines()) == 9


def test_corrupt_or_foreign_chunk_is_recomputed(tmp_path):
    config = pipeline.RunConfig(model="ridge", n_train=200, deletions=8, chunk_size=4)
    out = str(tmp_path / "run")
    pipeline.prepare_out_dir(out, config)
    first = pipeline.run(config, progress=False, checkpoint_dir=out)
    with open(os.path.join(out, "chunks", "chunk-00000.npz"), "wb") as f:
        f.write(b"not a zip")
    again = pipeline.run(config, progress=False, checkpoint_dir=out)
    assert again.summary["chunks"] == {"size": 4, "computed": 1, "reused": 1}
    assert pipeline.rows_to_csv(again.rows) == pipeline.rows_to_csv(first.rows)


def test_config_hash_ignores_only_output_options():
    a = pipeline.RunConfig()
    assert pipeline.config_hash(a) == pipeline.config_hash(pipeline.RunConfig(save_arrays=True))
    assert pipeline.config_hash(a) != pipeline.config_hash(pipeline.RunConfig(seed=1))
    assert pipeline.config_hash(a) != pipeline.config_hash(pipeline.RunConfig(chunk_size=7))


def test_sweep_resumes_and_writes_one_table(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text(
        'models = ["ridge", "softmax"]\nseeds = [0, 1]\n[options]\nn_train = 200\ndeletions = 6\n'
    )
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(grid), "--out", str(out), "--quiet"]) == 0
    table = (out / "sweep.csv").read_text().splitlines()
    assert len(table) == 5 and table[0].startswith("run,dataset,model")
    stamp = os.path.getmtime(out / "digits__ridge__exact__seed1" / "summary.json")
    os.remove(out / "sweep.csv")
    assert cli.main(["sweep", str(grid), "--out", str(out), "--quiet"]) == 0
    assert os.path.getmtime(out / "digits__ridge__exact__seed1" / "summary.json") == stamp
    assert (out / "sweep.csv").read_text().splitlines() == table


@pytest.mark.parametrize(
    "content,needle",
    [
        ('model = ["ridge"]', "unknown key 'model'"),
        ('models = "ridge"', "models must be a non-empty list"),
        ('models = ["mlp"]', "--model"),
        ('[options]\nout = "x"', "options.out"),
        ("models = [", "not valid TOML"),
    ],
)
def test_bad_grid_files(tmp_path, capsys, content, needle):
    grid = tmp_path / "grid.toml"
    grid.write_text(content)
    assert cli.main(["sweep", str(grid), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err


def test_missing_grid_file(capsys, tmp_path):
    assert cli.main(["sweep", str(tmp_path / "none.json"), "--out", str(tmp_path)]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_float32_and_float64_agree_to_documented_tolerance():
    """README: per-deletion cosines within 0.01, medians within 1e-3."""
    for model in ("ridge", "softmax"):
        runs = [
            pipeline.run(
                pipeline.RunConfig(model=model, n_train=300, deletions=20, dtype=d), progress=False
            )
            for d in ("float64", "float32")
        ]
        c64, c32 = (np.array([r["hrec_cosine"] for r in run.rows]) for run in runs)
        assert np.max(np.abs(c64 - c32)) <= 0.01
        assert abs(np.median(c64) - np.median(c32)) <= 1e-3
        assert runs[1].arrays["theta_after"].dtype == np.float32


def test_non_finite_solve_is_reported_with_the_deletion():
    bad = unlearning.UnlearnResult(
        jnp.asarray([[1.0, 2.0], [np.nan, 0.0]]), jnp.asarray([0.0, np.nan]), jnp.zeros(2, int)
    )
    with pytest.raises(NumericalError, match="train_index 9 .pool index 42"):
        pipeline._check_finite(bad, np.array([3, 9]), np.arange(100) + 33)
    assert issubclass(NumericalError, InputError)


def test_small_n_below_dimension_with_l2():
    """n <= D with l2 > 0: still strictly convex; unlearning stays exact, HRec still runs."""
    result = pipeline.run(
        pipeline.RunConfig(model="ridge", n_train=40, deletions=10), progress=False
    )
    assert result.summary["unlearning"]["max_grad_norm"] <= 1e-8
    assert result.summary["data"]["feature_dim"] > 40
    assert np.isfinite(result.summary["attacks"]["hrec"]["cosine_median"])


def test_deleting_one_of_two_duplicates_is_exact(rng):
    x = rng.normal(size=(30, 3))
    x[7] = x[3]
    p = np.concatenate([x, np.ones((30, 1))], 1)
    y = (rng.normal(size=30) > 0).astype(np.int64)
    y[7] = y[3]
    model = models.logistic_model()
    P, Y = jnp.asarray(p), jnp.asarray(y)
    theta = ref.newton(
        lambda t: ref.logistic_grad(t, p, y, 1.0, np.ones(30)),
        lambda t: ref.logistic_hessian(t, p, 1.0, np.ones(30)),
        np.zeros(4),
    )
    w = np.ones(30)
    w[3] = 0
    factor = unlearning.hessian_cholesky(model, jnp.asarray(theta), P, l2=1.0)
    res = unlearning.unlearn_retrain(
        model, jnp.asarray(theta), P, Y, jnp.asarray(w), l2=1.0, precond_factor=factor
    )
    expected = ref.newton(
        lambda t: ref.logistic_grad(t, p, y, 1.0, w),
        lambda t: ref.logistic_hessian(t, p, 1.0, w),
        np.zeros(4),
    )
    np.testing.assert_allclose(res.params, expected, rtol=1e-10, atol=1e-12)


def test_zero_update_is_reported_as_no_signal():
    """A deletion that leaves θ unchanged (ridge with r_j = 0) gives score 0, not a division."""
    fmap = features.identity_features()
    theta = jnp.asarray([0.5, -1.0, 2.0])
    for model in (models.ridge_model(), models.logistic_model()):
        res = attacks.hrec(model, fmap, theta, theta, lambda v: 3.0 * v)
        assert float(res.score) == 0.0
        np.testing.assert_array_equal(res.x_hat, 0.0)
    res = attacks.hrec(models.ridge_model(), fmap, theta, theta, lambda v: 3.0 * v)
    assert np.isnan(float(res.y_hat))


def test_ridge_zero_residual_sample(rng):
    """Choose y_j so that the fit passes through sample j exactly: no signal, finite output."""
    _, p, y = make_regression(rng)
    h_inv = np.linalg.inv(p.T @ p + np.eye(p.shape[1]))
    j = 4
    others = np.arange(len(y)) != j
    a = p[j] @ h_inv
    y[j] = (a @ p[others].T @ y[others]) / (1 - a @ p[j])
    theta = jnp.asarray(h_inv @ p.T @ y)
    factor = unlearning.ridge_cholesky(jnp.asarray(p), l2=1.0)
    after = unlearning.unlearn_ridge(
        theta, factor, jnp.asarray(p), jnp.asarray(y), jnp.asarray([j]), l2=1.0
    ).params
    res = attacks.hrec(
        models.ridge_model(), features.identity_features(), theta, after, lambda v: v
    )
    assert np.all(np.isfinite(res.x_hat))
    assert float(res.score) == 0.0 or float(res.score) < 1.0


def make_regression(rng, n=25, d=3):
    x = rng.normal(size=(n, d))
    p = np.concatenate([x, np.ones((n, 1))], 1)
    return x, p, p @ rng.normal(size=d + 1)


def test_attack_hessian_condition_is_reported():
    result = pipeline.run(
        pipeline.RunConfig(model="logistic", n_train=200, deletions=4), progress=False
    )
    report = result.summary["attack_hessian"]
    assert report["min_eigenvalue"] >= 1.0 - 1e-9  # l2 = 1 bounds it below
    assert report["condition_number"] == pytest.approx(
        report["max_eigenvalue"] / report["min_eigenvalue"]
    )


def test_extreme_eigenvalues_power_iteration_matches_dense(rng):
    a = rng.normal(size=(30, 30))
    h = jnp.asarray(a @ a.T + np.eye(30))
    like = jnp.zeros(30)
    dense = attacks.hessian_extreme_eigenvalues(lambda v: h @ v, like)
    approx = attacks.hessian_extreme_eigenvalues(
        lambda v: h @ v, like, dense_limit=0, iterations=3000
    )
    eig = np.linalg.eigvalsh(np.asarray(h))
    np.testing.assert_allclose(dense, (eig[0], eig[-1]), rtol=1e-10)
    np.testing.assert_allclose(approx[1], eig[-1], rtol=1e-6)
    np.testing.assert_allclose(approx[0], eig[0], rtol=1e-2)


def test_jit_of_attack_functions_no_retrace_across_chunks():
    """Two chunks of a run share one compilation (no recompilation per deletion)."""
    traces = []
    model = models.logistic_model()
    fmap = features.identity_features()

    @jax.jit
    def attack(theta_after, theta, pub):
        traces.append(1)
        matvec = attacks.public_hessian_matvec(model, theta, pub, n_train=10, l2=1.0)
        return jax.vmap(lambda t: attacks.hrec(model, fmap, theta, t, matvec))(theta_after)

    pub = jnp.ones((5, 3))
    attack(jnp.ones((4, 3)), jnp.zeros(3), pub)
    attack(2 * jnp.ones((4, 3)), jnp.zeros(3), pub)
    assert len(traces) == 1
