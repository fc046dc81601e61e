"""The threat-model knobs (DESIGN §2): what the attacker believes (n, l2), which public data it
holds (`scenario.shifted_public`), whether it knows the label, in the library and `jaxrecon run`.
"""

import csv
import json

import jax
import numpy as np
import pytest

from jaxrecon import cli, data, engine, reconstruction, scenario
from jaxrecon.config import RunConfig
from jaxrecon.errors import InputError

N_TRAIN, N_PUBLIC = 200, 300


@pytest.fixture(scope="module")
def digits():
    return data.load_digits()


@pytest.fixture(scope="module")
def sc(digits):
    return scenario.make_scenario(
        digits, model="softmax", key=jax.random.key(0), n_train=N_TRAIN, n_public=N_PUBLIC
    )


def _npz(path, shape, num=40, classes=10):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, size=(num, *shape), dtype=np.uint8)
    y = np.arange(num) % classes
    np.savez(path, x_train=x, y_train=y)
    return data.load_dataset(f"npz:{path}", key=jax.random.key(0))


def test_assumed_n_and_l2_scale_the_attackers_hessian_exactly(digits):
    """Ĥ − l2·I = ((n−1)/m) Σ ∇²ℓ: the believed n scales the data part by (n'−1)/(n−1)."""
    sc = scenario.make_scenario(digits, model="logistic", key=jax.random.key(0), n_train=N_TRAIN)
    theta = scenario.fit(sc).params
    config = RunConfig(n_train=N_TRAIN, assumed_n=800, assumed_l2=2.5)
    believer = engine.attacker_of(config, sc)
    assert int(believer.n_train) == 800 and float(believer.l2) == 2.5
    eye = np.eye(sc.param_count)
    truth = np.asarray(reconstruction.attacker_hessian(sc, theta)) - 1.0 * eye
    believed = np.asarray(reconstruction.attacker_hessian(sc, theta, believer)) - 2.5 * eye
    np.testing.assert_allclose(believed, truth * (800 - 1) / (N_TRAIN - 1), rtol=1e-12, atol=1e-14)


def test_balance_draws_the_long_tail_from_pool_rows_only(sc):
    public = scenario.shifted_public(sc, "balance:4", key=jax.random.key(1))
    counts = np.bincount(np.asarray(public.labels), minlength=10)
    assert counts.sum() == N_PUBLIC
    np.testing.assert_array_less(np.abs(counts - N_PUBLIC * scenario.class_weights(4, 10)), 1)
    assert counts[0] / counts[-1] == pytest.approx(4, rel=0.1)
    info = sc.info
    pool = np.setdiff1d(np.arange(len(info.dataset.y)), np.r_[info.roles.train, info.roles.test])
    pool_rows = {row.tobytes() for row in info.dataset.x[pool]}
    assert all(row.tobytes() in pool_rows for row in np.asarray(public.x))
    np.testing.assert_array_equal(public.features[:, -1], 1)
    # R = 1 is uniform; a huge R saturates class 0 and spreads its shortfall over the others.
    uniform = scenario.shifted_public(sc, "balance:1", key=jax.random.key(1))
    assert set(np.bincount(np.asarray(uniform.labels))) == {N_PUBLIC // 10}
    steep = np.bincount(scenario.shifted_public(sc, "balance:1e4", key=jax.random.key(1)).labels)
    first = np.sum(np.asarray(sc.info.dataset.y)[pool] == 0)
    assert steep.sum() == N_PUBLIC and steep[0] == first and np.all(np.diff(steep) <= 0)


def test_noise_zero_is_no_shift_and_noise_stays_in_the_box(sc):
    for same in ("none", "noise:0"):
        public = scenario.shifted_public(sc, same, key=jax.random.key(1))
        for got, want in zip(public, sc.public, strict=True):
            np.testing.assert_array_equal(got, want)
    noisy = scenario.shifted_public(sc, "noise:0.3", key=jax.random.key(1))
    x = np.asarray(noisy.x)
    assert x.min() >= sc.box[0] and x.max() <= sc.box[1] and not np.allclose(x, sc.public.x)
    np.testing.assert_array_equal(noisy.labels, sc.public.labels)
    np.testing.assert_array_equal(noisy.features, sc.feature_map.apply(noisy.x))


def test_another_data_set_of_the_same_shape_is_public_data(sc, digits, tmp_path):
    other = _npz(tmp_path / "other.npz", (8, 8))
    public = scenario.shifted_public(
        sc, f"dataset:npz:{tmp_path / 'other.npz'}", key=jax.random.key(1), dataset=other
    )
    # Fewer rows than m: every one of them, in order, labelled by the model's rule.
    np.testing.assert_array_equal(public.x, other.x)
    np.testing.assert_array_equal(public.labels, other.y)
    np.testing.assert_array_equal(public.features, sc.feature_map.apply(public.x))
    many = scenario.shifted_public(
        sc, "dataset:npz:x", key=jax.random.key(1), dataset=_npz(tmp_path / "big.npz", (8, 8), 500)
    )
    assert many.x.shape == (N_PUBLIC, 64)
    mismatch = _npz(tmp_path / "small.npz", (7, 7))
    with pytest.raises(InputError, match=r"^public_shift: .*shape \[7, 7\]"):
        scenario.shifted_public(sc, "dataset:npz:x", key=jax.random.key(1), dataset=mismatch)
    with pytest.raises(InputError, match="^public_shift: .*own data set"):
        scenario.shifted_public(sc, "dataset:digits", key=jax.random.key(1), dataset=digits)


@pytest.mark.parametrize(
    "spec", ["balance:0.5", "balance:", "noise:-1", "noise:x", "noise:inf", "shuffle:2", "none:1"]
)
def test_bad_shift_specs_name_the_argument(sc, spec):
    with pytest.raises(InputError, match="^public_shift: ") as err:
        scenario.shifted_public(sc, spec, key=jax.random.key(1))
    assert spec in str(err.value) and "\n" not in str(err.value)


def test_balance_refuses_regression(digits):
    ridge = scenario.make_scenario(digits, model="ridge", key=jax.random.key(0), n_train=N_TRAIN)
    with pytest.raises(InputError, match="^public_shift: balance:2 needs a classifier"):
        scenario.shifted_public(ridge, "balance:2", key=jax.random.key(1))


def _cli(out, *extra):
    args = ["run", "--model", "logistic", "--n-train", str(N_TRAIN), "--n-public", str(N_PUBLIC)]
    args += ["--deletions", "4", "--chunk-size", "4", "--out", str(out), "--quiet"]
    return cli.main([*args, *extra])


def test_cli_attacker_knobs_reach_the_attack_and_summary(tmp_path, monkeypatch):
    built = []
    make_attack = reconstruction.make_attack

    def recording(*args, **kwargs):
        built.append(make_attack(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(reconstruction, "make_attack", recording)
    knobs = ["--assumed-n", "500", "--assumed-l2", "0.5", "--public-shift", "balance:3"]
    assert _cli(tmp_path / "o", *knobs, "--label-known", "--attacks", "hrec,gradmatch") == 0
    (attack,) = built
    assert attack.attacker.label_known and "gradmatch" in attack.names
    assert int(attack.attacker.n_train) == 500 and float(attack.attacker.l2) == 0.5
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["attacker"] == {
        "n_train": 500,
        "l2": 0.5,
        "n_public": N_PUBLIC,
        "public_shift": "balance:3",
        "label_known": True,
        "truth": {"n_train": N_TRAIN, "l2": 1.0},
    }
    assert summary["config"]["assumed_n"] == 500 and summary["config"]["label_known"] is True


def test_assumed_n_equal_to_the_truth_changes_nothing(tmp_path):
    assert _cli(tmp_path / "a") == 0
    assert _cli(tmp_path / "b", "--assumed-n", str(N_TRAIN), "--label-unknown") == 0
    a, b = ((tmp_path / d / "deletions.csv").read_bytes() for d in "ab")
    assert a == b and len(list(csv.DictReader(a.decode().splitlines()))) == 4
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["attacker"]["n_train"] == N_TRAIN and summary["attacker"]["label_known"] is False


def test_cli_loads_the_public_shift_data_set(tmp_path):
    _npz(tmp_path / "other.npz", (8, 8))
    assert _cli(tmp_path / "o", "--public-shift", f"dataset:npz:{tmp_path / 'other.npz'}") == 0
    summary = json.loads((tmp_path / "o" / "summary.json").read_text())
    assert summary["attacker"]["n_public"] == 40 and summary["data"]["n_public"] == N_PUBLIC


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--assumed-n", "1"], "--assumed-n"),
        (["--assumed-n", "ten"], "--assumed-n"),
        (["--assumed-l2", "0"], "--assumed-l2"),
        (["--assumed-l2", "nan"], "--assumed-l2"),
        (["--public-shift", "balance:0.5"], "--public-shift"),
        (["--public-shift", "dataset:imagenet"], "--public-shift"),
        (["--public-shift", "noise"], "--public-shift"),
        (["--label-known", "--label-unknown"], "--label-unknown"),
        (["--model", "ridge", "--public-shift", "balance:2"], "--public-shift"),
    ],
)
def test_bad_knobs_exit_2_with_one_line_naming_the_flag(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        raise SystemExit(cli.main(["run", "--quiet", "--n-train", "200", "--out", str(out), *args]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_config_hash_sees_every_knob():
    from jaxrecon.config import config_hash

    base = config_hash(RunConfig())
    for change in (
        {"assumed_n": 5},
        {"assumed_l2": 2.0},
        {"public_shift": "noise:0.1"},
        {"label_known": True},
    ):
        assert config_hash(RunConfig(**change)) != base
