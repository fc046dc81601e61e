"""Resumable runs: SIGKILL part-way and rerun gives the uninterrupted result; chunks from another
config or for other deletions are never reused; another run's folder is refused.
"""

import dataclasses
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from jaxrecon import cli, pipeline
from jaxrecon.store import ChunkStore

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


def test_chunks_of_another_config_or_other_deletions_are_never_reused(tmp_path):
    """A chunk file is reused only with the same config hash and the same deleted positions."""
    config = pipeline.RunConfig(model="ridge", n_train=200, deletions=8, chunk_size=4)
    store = ChunkStore.open(str(tmp_path), config, overwrite=False)
    saved = {"deleted": np.array([3, 9]), "theta_after": np.arange(6.0).reshape(2, 3)}
    store.save(0, saved)
    np.testing.assert_array_equal(
        store.load(0, np.array([3, 9]))["theta_after"], saved["theta_after"]
    )
    assert store.load(0, np.array([3, 10])) is None  # other deletions
    assert store.load(1, np.array([3, 9])) is None  # no such chunk
    other = dataclasses.replace(config, seed=1)
    assert ChunkStore(str(tmp_path), pipeline.config_hash(other)).load(0, saved["deleted"]) is None
    # End to end: a chunk copied in from a run of another config is recomputed, not reused.
    first = tmp_path / "first"
    pipeline.run(config, progress=False, checkpoint_dir=str(first))
    second = tmp_path / "second"
    pipeline.prepare_out_dir(str(second), other)
    expected = pipeline.run(other, progress=False, checkpoint_dir=str(second))
    shutil.copy(first / "chunks" / "chunk-00000.npz", second / "chunks" / "chunk-00000.npz")
    again = pipeline.run(other, progress=False, checkpoint_dir=str(second))
    assert again.summary["chunks"] == {"size": 4, "computed": 1, "reused": 1}
    assert pipeline.rows_to_csv(again.rows) == pipeline.rows_to_csv(expected.rows)
