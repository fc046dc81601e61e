"""The deletion axis sharded over 4 (forced host) devices gives the 1-device results."""

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxrecon import cli


def _run(out, devices, model, extra_env=None):
    env = dict(os.environ, **(extra_env or {}))
    cmd = [
        sys.executable,
        "-m",
        "jaxrecon.cli",
        "run",
        "--quiet",
        "--out",
        str(out),
        "--model",
        model,
        "--n-train",
        "300",
        "--deletions",
        "18",
        "--chunk-size",
        "5",
        "--devices",
        str(devices),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    with open(out / "deletions.csv") as f:
        return list(csv.DictReader(f))


@pytest.mark.parametrize("model", ["ridge", "softmax"])
def test_four_devices_match_one(tmp_path, model):
    one = _run(tmp_path / "one", 1, model)
    four = _run(
        tmp_path / "four", 4, model, {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    )
    assert [r["train_index"] for r in one] == [r["train_index"] for r in four]
    for column in one[0]:
        a, b = [r[column] for r in one], [r[column] for r in four]
        if any("." in v for v in a):  # real-valued columns: equal to float tolerance
            np.testing.assert_allclose(
                np.array(a, float), np.array(b, float), rtol=1e-9, atol=1e-15
            )
        else:
            assert a == b, column


def test_more_devices_than_visible_is_refused(tmp_path, capsys):
    assert cli.main(["run", "--quiet", "--devices", "64", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "--devices" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
