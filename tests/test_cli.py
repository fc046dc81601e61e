"""The command line's contract: files, keys and columns, one-line errors with exit code 2 naming
the flag, nothing written on bad input, byte-identical reruns.
"""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxrecon import cli, pipeline
from jaxrecon.errors import InputError

SUMMARY_KEYS = {"config", "model", "unlearning", "attacks", "timing_s", "versions"}


def _cli(tmp_path, *extra):
    out = tmp_path / "out"
    code = cli.main(
        [
            "run",
            "--n-train",
            "300",
            "--deletions",
            "12",
            "--chunk-size",
            "5",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )
    return code, out


def test_cli_writes_the_contracted_files(tmp_path):
    code, out = _cli(tmp_path, "--save-arrays")
    assert code == 0
    assert sorted(os.listdir(out)) == [
        "arrays.npz",
        "cdf.png",
        "chunks",
        "deletions.csv",
        "reconstructions.png",
        "run.json",
        "summary.json",
    ]
    summary = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= set(summary)
    assert set(summary["model"]) >= {"train_score", "test_score", "score_name"}
    assert "max_grad_norm" in summary["unlearning"]
    assert set(summary["timing_s"]) == {"train", "setup", "unlearn", "attack"}
    assert summary["unlearning"]["kernel"] == "chord"  # softmax on digits: P = 650
    assert set(summary["versions"]) >= {"jaxrecon", "jax"}
    for name in ("hrec", "avg", "maxdiff"):
        assert set(summary["attacks"][name]) >= {
            "cosine_median",
            "cosine_p10",
            "cosine_mean",
            "label_accuracy",
        }
    assert summary["config"]["n_public"] == 1797 - 180 - 300
    with open(out / "deletions.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 12
    assert {
        "train_index",
        "true_label",
        "hrec_cosine",
        "hrec_label_correct",
        "avg_cosine",
        "maxdiff_cosine",
    } <= set(rows[0])
    arrays = np.load(out / "arrays.npz", allow_pickle=False)
    assert arrays["theta_before"].shape == (65, 10)
    assert arrays["theta_after"].shape == (12, 65, 10)
    assert arrays["recon_hrec"].shape == (12, 64)
    assert np.all(arrays["features_train"][:, -1] == 1)
    np.testing.assert_array_equal(arrays["deleted"], [int(r["train_index"]) for r in rows])
    assert len(np.intersect1d(arrays["train_index"], arrays["public_index"])) == 0


def test_arrays_let_anyone_recheck_hrec_without_jaxrecon(tmp_path):
    """Recompute HRec for ridge from arrays.npz with NumPy alone."""
    code, out = _cli(tmp_path, "--model", "ridge", "--save-arrays")
    assert code == 0
    a = np.load(out / "arrays.npz", allow_pickle=False)
    n, pub = len(a["train_index"]), a["features_public"]
    h = (n - 1) / len(pub) * pub.T @ pub + np.eye(pub.shape[1])
    g = (a["theta_after"] - a["theta_before"][None]) @ h
    np.testing.assert_allclose(g[:, :-1] / g[:, -1:], a["recon_hrec"], rtol=1e-8, atol=1e-10)


def test_same_seed_gives_byte_identical_deletions_csv(tmp_path):
    _, out1 = _cli(tmp_path / "a", "--model", "logistic")
    _, out2 = _cli(tmp_path / "b", "--model", "logistic")
    assert (out1 / "deletions.csv").read_bytes() == (out2 / "deletions.csv").read_bytes()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--dataset", "imagenet"], "--dataset"),
        (["--model", "mlp"], "--model"),
        (["--unlearning", "magic"], "--unlearning"),
        (["--attacks", "hrec,magic"], "--attacks"),
        (["--deletions", "5000"], "--deletions"),
        (["--deletions", "0"], "--deletions"),
        (["--l2", "-1"], "--l2"),
        (["--l2", "0"], "--l2"),
        (["--l2", "nan"], "--l2"),
        (["--n-train", "5000"], "--n-train"),
        (["--n-public", "0"], "--n-public"),
        (["--n-public", "100000"], "--n-public"),
        (["--dtype", "float16"], "--dtype"),
        (["--seed", "-3"], "--seed"),
        (["--n-train", "ten"], "--n-train"),
        (["--model", "softmax", "--dataset", "synthetic_regression"], "--model"),
    ],
)
def test_bad_options_exit_2_with_one_line(tmp_path, capsys, args, needle):
    out = tmp_path / "never"
    with pytest.raises(SystemExit) as exc:
        sys.exit(cli.main(["run", "--quiet", "--out", str(out), *args]))
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err and "Traceback" not in err
    assert not out.exists()


def test_unwritable_out_is_refused(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert cli.main(["run", "--quiet", "--out", str(blocker / "sub")]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_subprocess_bad_option_has_no_traceback(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "jaxrecon.cli",
            "run",
            "--model",
            "mlp",
            "--out",
            str(tmp_path / "x"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "--model" in proc.stderr


def test_config_validate_names_the_option():
    with pytest.raises(InputError, match="chunk_size"):
        pipeline.RunConfig(chunk_size=0).validate()
    with pytest.raises(InputError, match="duplicate"):
        pipeline.RunConfig(attacks=("hrec", "hrec")).validate()


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--features", "poly"], "--features"),
        (["--rff-dim", "0"], "--rff-dim"),
        (["--rff-bandwidth", "-1"], "--rff-bandwidth"),
        (["--rff-bandwidth", "inf"], "--rff-bandwidth"),
        (["--model", "ridge-onehot", "--dataset", "synthetic_regression"], "--model"),
    ],
)
def test_bad_new_options(tmp_path, capsys, args, needle):
    assert cli.main(["run", "--quiet", "--out", str(tmp_path / "o"), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and needle in err
    assert not (tmp_path / "o").exists()
