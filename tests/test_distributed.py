"""One run over two JAX processes (2 CPU devices each) writes the 1-process run's deletions.csv.

The processes are local subprocesses joined by `jax.distributed` through a coordinator on
127.0.0.1; each has a timeout so a hung coordinator cannot hang the suite.
"""

import json
import os
import shutil
import socket
import subprocess
import sys

import pytest

from jaxrecon import cli

TIMEOUT_S = 120
# Ridge (closed form) keeps compilation short; the engine's chunk loop is the same for every model.
SIZES = ["--model", "ridge", "--n-train", "200", "--n-public", "100", "--deletions", "16"]
SIZES += ["--chunk-size", "4"]


def _env() -> dict[str, str]:
    """Two host devices per process, CPU only, and no cluster settings to autodetect."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SLURM_", "OMPI_", "PMI_", "JAX_COORDINATOR", "JAX_PROCESS"))
    }
    return env | {
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(out, quiet=True) -> list[str]:
    return [sys.executable, "-m", "jaxrecon.cli", "run", "--out", str(out), *SIZES] + (
        ["--quiet"] if quiet else []
    )


# Process 1 fails its first chunk, as a non-finite solve would.
FAILING_PROCESS_1 = """
import sys, jax
from jaxrecon import cli, engine
from jaxrecon.errors import NumericalError
check = engine._check_finite
def fail_on_1(*args):
    if jax.process_index() == 1:
        raise NumericalError("deletion 7 returned non-finite parameters")
    return check(*args)
engine._check_finite = fail_on_1
sys.exit(cli.main(sys.argv[1:]))
"""


def _run_processes(
    out, processes: int, quiet=True, program=None
) -> list[subprocess.CompletedProcess]:
    """Runs the command as `processes` processes of one run; returns them when all finished."""
    port = _free_port()
    command = _command(out, quiet)
    if program is not None:
        command[1:3] = ["-c", program]
    procs = [
        subprocess.Popen(
            command
            + ["--coordinator", f"127.0.0.1:{port}"]
            + ["--num-processes", str(processes), "--process-id", str(i)],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(processes)
    ]
    done = []
    try:
        for proc in procs:
            stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
            done.append(subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return done


def _run_one(out) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(out), env=_env(), capture_output=True, text=True, timeout=TIMEOUT_S
    )


def _summary(out) -> dict:
    with open(out / "summary.json") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The run by one process (2 devices), computed once for the module."""
    out = tmp_path_factory.mktemp("reference") / "run"
    proc = _run_one(out)
    assert proc.returncode == 0, proc.stderr
    return out


def test_two_processes_write_the_one_process_run(tmp_path, reference):
    two = _run_processes(tmp_path / "two", 2, quiet=False)
    for i, proc in enumerate(two):
        assert proc.returncode == 0, f"process {i}: {proc.stderr}"
    # Only process 0 shows the progress bar and the table.
    assert "unlearn+attack" in two[0].stderr and "wrote" in two[0].stdout
    assert "unlearn+attack" not in two[1].stderr and "wrote" not in two[1].stdout
    # Same chunking and the same per-device kernels: the same bytes.
    expected = (reference / "deletions.csv").read_bytes()
    assert (tmp_path / "two" / "deletions.csv").read_bytes() == expected
    summary = _summary(tmp_path / "two")
    assert summary["chunks"] == {"size": 4, "computed": 4, "reused": 0, "processes": 2}
    assert summary["attacks"] == _summary(reference)["attacks"]
    # Each process saved its own chunks (chunk k by process k % 2) into the shared folder.
    chunks = sorted(os.listdir(tmp_path / "two" / "chunks"))
    assert chunks == [f"chunk-{k:05d}.npz" for k in range(4)]
    assert sorted(os.listdir(reference)) == sorted(os.listdir(tmp_path / "two"))

    # Resumed by one process (another process count, same config hash): nothing recomputed.
    os.remove(tmp_path / "two" / "deletions.csv")
    again = _run_one(tmp_path / "two")
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "two" / "deletions.csv").read_bytes() == expected
    assert _summary(tmp_path / "two")["chunks"] == {"size": 4, "computed": 0, "reused": 4}


def test_resumed_by_two_processes_computes_only_the_missing_chunks(tmp_path, reference):
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    os.remove(out / "deletions.csv")
    for k in (1, 2):  # one chunk of each process
        os.remove(out / "chunks" / f"chunk-{k:05d}.npz")
    two = _run_processes(out, 2)
    for i, proc in enumerate(two):
        assert proc.returncode == 0, f"process {i}: {proc.stderr}"
    assert (out / "deletions.csv").read_bytes() == (reference / "deletions.csv").read_bytes()
    assert _summary(out)["chunks"] == {"size": 4, "computed": 2, "reused": 2, "processes": 2}


def test_a_failing_process_stops_the_others_instead_of_hanging(tmp_path):
    zero, one = _run_processes(tmp_path / "o", 2, program=FAILING_PROCESS_1)
    assert one.returncode == 2 and one.stderr.endswith(
        "jaxrecon: error: deletion 7 returned non-finite parameters\n"
    ), one.stderr
    assert zero.returncode == 2, zero.stderr
    assert zero.stderr.strip().splitlines()[-1].startswith("jaxrecon: error: process 1 of the run")
    assert not (tmp_path / "o" / "deletions.csv").exists()


@pytest.mark.parametrize(
    "args, flag",
    [
        (["--coordinator", "127.0.0.1:1234"], "--num-processes"),
        (["--num-processes", "2", "--process-id", "0"], "--coordinator"),
        (["--coordinator", "127.0.0.1:1234", "--num-processes", "2"], "--process-id"),
        (["--coordinator", "nohost", "--num-processes", "2", "--process-id", "0"], "--coordinator"),
        (
            ["--coordinator", "h:99999", "--num-processes", "2", "--process-id", "0"],
            "--coordinator",
        ),
        (
            ["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"],
            "--num-processes",
        ),
        (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"], "--process-id"),
        (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "-1"], "--process-id"),
    ],
)
def test_bad_distributed_flags_exit_2_with_one_line(tmp_path, capsys, args, flag):
    out = tmp_path / "o"
    assert cli.main(["run", "--quiet", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"jaxrecon: error: {flag}:") and err.count("\n") == 1, err
    assert not out.exists()


def test_distributed_without_a_cluster_names_the_flag(tmp_path):
    # A fresh process: jax.distributed must start before JAX initialises its backends.
    out = tmp_path / "o"
    proc = subprocess.run(
        _command(out) + ["--distributed"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
    )
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("jaxrecon: error: --distributed:"), proc.stderr
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert not out.exists()
