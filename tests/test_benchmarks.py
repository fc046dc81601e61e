"""benchmarks/: run.py at tiny sizes (JSON keys, checks), the e2e runner, and gpu.sh (seconds)."""

import importlib.util
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
GPU_SH = ROOT / "benchmarks" / "gpu.sh"
KEYS = {
    "jaxrecon_s_per_deletion",
    "reference_s_per_deletion",
    "ratio",
    "flops_fraction",
    "matmul_flops_per_s",
}


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_run", ROOT / "benchmarks" / "run.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke_results(bench, tmp_path_factory):
    path = tmp_path_factory.mktemp("bench") / "smoke.json"
    assert bench.main(["--smoke", "--json", str(path)]) == 0
    return json.loads(path.read_text())


def test_smoke_json_has_every_benchmark_and_key(bench, smoke_results):
    assert smoke_results["matmul_flops_per_s"] > 0
    for name in bench.BENCHMARKS:
        entry = smoke_results[name]
        assert KEYS <= set(entry), name
        assert entry["jaxrecon_s_per_deletion"] > 0
        assert entry["reference_s_per_deletion"] > 0
        assert entry["ratio"] == pytest.approx(
            entry["reference_s_per_deletion"] / entry["jaxrecon_s_per_deletion"]
        )
        assert entry["flops_fraction"] > 0
        assert entry["compile_s"] >= 0


def test_smoke_checks_pass(bench, smoke_results):
    """Our solutions are exact and agree with scikit-learn / the NumPy loops, in the same run."""
    for name in ("ridge_exact_unlearning", "logistic_exact_unlearning", "softmax_exact_unlearning"):
        checks = smoke_results[name]["checks"]
        assert checks["grad_norm_ok"] and checks["max_grad_norm"] <= 1e-8, name
        assert checks["matches_sklearn"], name
    for name in ("logistic_exact_unlearning", "softmax_exact_unlearning"):
        checks = smoke_results[name]["checks"]
        assert checks["sklearn_converged"], name
        assert checks["passes_mean"] >= 1 and checks["passes_max"] >= 1, name
    for name in ("hrec_ridge", "hrec_softmax", "hrec_rff_softmax"):
        assert smoke_results[name]["checks"]["matches_numpy"], name
    assert smoke_results["hrec_ridge"]["checks"]["cosine_median"] > 0.5
    assert smoke_results["rff_inversion"]["checks"]["cosine_at_least_reference"]
    for name in ("rff_softmax_exact_unlearning", "cifar_softmax_exact_unlearning"):
        checks = smoke_results[name]["checks"]
        assert checks["grad_norm_ok"] and checks["matches_sklearn"], name
        assert checks["sklearn_converged"], name


def test_smoke_times_the_librarys_kernels(bench, smoke_results):
    """The benchmark times `unlearners.make_unlearn` / `make_attack`, whose choices it records."""
    assert smoke_results["ridge_exact_unlearning"]["kernel"] == "woodbury"
    for name in ("logistic_exact_unlearning", "softmax_exact_unlearning"):
        assert smoke_results[name]["kernel"] == "chord", name
    for name in ("hrec_ridge", "hrec_softmax", "hrec_rff_softmax"):
        assert smoke_results[name]["kernel"] == "hrec", name
        assert smoke_results[name]["hessian"] in ("dense", "matrix-free"), name
    # Smoke sizes are below scenario.DENSE_LIMIT: the library forms Ĥ once.
    assert smoke_results["hrec_ridge"]["hessian"] == "dense"


def test_table_lists_every_benchmark_and_target(bench, smoke_results):
    table = bench.format_table(smoke_results)
    for name in bench.BENCHMARKS:
        assert name in table
    assert table.count("MET ") + table.count("MISS") == sum(map(len, bench.TARGETS.values()))


def test_reference_from_reuses_reference_timings(bench, smoke_results, tmp_path):
    source = tmp_path / "ref.json"
    source.write_text(json.dumps(smoke_results))
    out = tmp_path / "f32.json"
    argv = ["--smoke", "--dtype", "float32", "--only", "hrec_ridge,ridge_exact_unlearning"]
    assert bench.main([*argv, "--reference-from", str(source), "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["environment"]["dtype"] == "float32"
    for name in ("hrec_ridge", "ridge_exact_unlearning"):
        assert (
            result[name]["reference_s_per_deletion"]
            == smoke_results[name]["reference_s_per_deletion"]
        )
    assert "logistic_exact_unlearning" not in result


def test_config_rejects_bad_values(bench):
    with pytest.raises(ValueError, match="dtype"):
        bench.get_config(dtype="float16")
    with pytest.raises(ValueError, match="unknown benchmarks"):
        bench.run(bench.get_config(smoke=True), ("nope",))


def test_quick_keeps_sizes(bench):
    full, quick = bench.get_config(), bench.get_config(quick=True)
    assert quick.repeats < full.repeats
    assert (quick.n_train, quick.deletions, quick.rff_dim) == (10_000, 1_000, 4096)
    assert (full.n_train, full.n_public, full.input_dim + 1) == (10_000, 10_000, 785)


def test_e2e_skips_unknown_dataset(bench):
    result = bench.run_e2e(dataset="no_such_data", n_train=50, n_public=50, deletions=2)
    assert "skipped" in result
    assert "no_such_data" in result["skipped"]
    assert "skipped" in bench.format_e2e(result)


def test_e2e_reports_stages_and_peak_memory(bench):
    result = bench.run_e2e(dataset="digits", n_train=300, n_public=300, deletions=8)
    assert set(result["stages_s"]) >= {"train", "unlearn", "attack"}
    assert result["wall_s"] >= sum(v for k, v in result["stages_s"].items() if k != "train") > 0
    assert result["peak_rss_bytes"] > 50 * 2**20
    assert result["max_grad_norm"] <= 1e-8


def test_gpu_sh_syntax():
    subprocess.run(["bash", "-n", str(GPU_SH)], check=True)


def _gpu_sh(tmp_path, env_extra, path_dirs):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPU_SH_")}
    env["PATH"] = os.pathsep.join([*map(str, path_dirs), "/usr/bin", "/bin"])
    env.update(env_extra)
    return subprocess.run(
        ["bash", str(GPU_SH), str(tmp_path / "out")],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is present")
def test_gpu_sh_dry_run_falls_back_to_cpu(tmp_path):
    proc = _gpu_sh(tmp_path, {"GPU_SH_DRY_RUN": "1"}, [])
    assert "falling back to CPU jax" in proc.stderr
    assert "jax>=0.6,<0.10.2" in proc.stdout and "cuda12" not in proc.stdout
    for needle in ("--dtype float64", "--dtype float32", "--json", "--reference-from"):
        assert needle in proc.stdout
    assert not (tmp_path / "out").exists()  # a dry run runs nothing


def test_gpu_sh_dry_run_installs_cuda_jax_when_nvidia_smi_works(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\necho 'GPU 0: Fake H200 (UUID: GPU-0)'\n")
    (fake / "nvidia-smi").chmod(0o755)
    proc = _gpu_sh(tmp_path, {"GPU_SH_DRY_RUN": "1"}, [fake])
    assert "jax[cuda12]>=0.6,<0.10.2" in proc.stdout
    assert 'default_backend() != "gpu"' in proc.stdout
    assert "falling back" not in proc.stderr


@pytest.mark.skipif(shutil.which("nvidia-smi") is not None, reason="a GPU is present")
def test_gpu_sh_cpu_fallback_runs(tmp_path):
    """The CPU fallback for real, with this interpreter and tiny sizes: both JSON files."""
    env = {"GPU_SH_PYTHON": sys.executable, "GPU_SH_ARGS": "--smoke --only hrec_ridge,hrec_softmax"}
    proc = _gpu_sh(tmp_path, env, [pathlib.Path(sys.executable).parent])
    assert "falling back to CPU jax" in proc.stderr
    for dtype in ("float64", "float32"):
        result = json.loads((tmp_path / "out" / f"bench_{dtype}.json").read_text())
        assert result["environment"]["dtype"] == dtype
        assert KEYS <= set(result["hrec_softmax"])


def test_kfac_correction_names_missing_data_and_bad_ranks(tmp_path, capsys):
    spec = importlib.util.spec_from_file_location(
        "bench_kfac_correction", ROOT / "benchmarks" / "kfac_correction.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main(["--data-dir", str(tmp_path)]) == 2
    assert "--data-dir" in capsys.readouterr().err
    with pytest.raises(SystemExit) as err:
        module.main(["--data-dir", str(tmp_path), "--ranks", "64,-1"])
    assert err.value.code == 2 and "--ranks must be >= 0" in capsys.readouterr().err
