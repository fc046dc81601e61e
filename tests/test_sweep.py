"""`jaxrecon sweep`: a grid of runs, resumable, one combined table; bad grid files."""

import os

import pytest

from jaxrecon import cli


def test_sweep_resumes_and_writes_one_table(tmp_path):
    grid = tmp_path / "grid.toml"
    grid.write_text('models = ["ridge"]\nseeds = [0, 1]\n[options]\nn_train = 200\ndeletions = 6\n')
    out = tmp_path / "sweep"
    assert cli.main(["sweep", str(grid), "--out", str(out), "--quiet"]) == 0
    table = (out / "sweep.csv").read_text().splitlines()
    assert len(table) == 3 and table[0].startswith("run,dataset,model")
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
        ('models = ["mlp"]', "model: unknown value 'mlp'"),
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
