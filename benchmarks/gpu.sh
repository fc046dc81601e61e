#!/usr/bin/env bash
# jaxrecon benchmarks on one accelerator, in float64 and float32 (under 5 minutes on one GPU).
#
#   bash benchmarks/gpu.sh [OUT_DIR]            # writes OUT_DIR/bench_float{64,32}.json
#                                               # (default OUT_DIR: benchmarks/results)
#
# With a working `nvidia-smi` it installs jax[cuda12] (pinned below 0.10.2, which miscompiles our
# nested while loops) into a fresh virtual environment and checks that jax sees the GPU; without
# one it falls back to CPU jax and says so. Then it runs `benchmarks/run.py --quick` in float64
# (which also times the scikit-learn / NumPy references on the host CPU) and in float32 (reusing
# those reference timings via --reference-from, so the references run once).
#
# Environment:
#   GPU_SH_DRY_RUN=1    print the commands instead of running them
#   GPU_SH_PYTHON=PATH  use this interpreter as it is (no virtual environment, nothing installed)
#   GPU_SH_VENV=DIR     where to create the virtual environment (default: benchmarks/.venv-gpu)
#   GPU_SH_ARGS="..."   extra arguments for benchmarks/run.py (e.g. "--only hrec_softmax")
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

out_dir="${1:-benchmarks/results}"
dry_run="${GPU_SH_DRY_RUN:-0}"
venv="${GPU_SH_VENV:-benchmarks/.venv-gpu}"
read -r -a extra_args <<<"${GPU_SH_ARGS:-}"

run() {
  echo "+ $*"
  if [[ "$dry_run" != 1 ]]; then
    "$@"
  fi
}

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  backend=gpu
  jax_spec="jax[cuda12]>=0.6,<0.10.2"
  echo "gpu.sh: found $(nvidia-smi -L | head -n 1)"
else
  backend=cpu
  jax_spec="jax>=0.6,<0.10.2"
  echo "gpu.sh: no NVIDIA GPU (nvidia-smi missing or failing): falling back to CPU jax;" \
    "the timings below are CPU timings" >&2
fi

if [[ -n "${GPU_SH_PYTHON:-}" ]]; then
  python="$GPU_SH_PYTHON"
  echo "gpu.sh: using $python as it is (GPU_SH_PYTHON is set; nothing installed)"
else
  python="$venv/bin/python"
  run python3 -m venv "$venv"
  run "$python" -m pip install -q --upgrade pip
  # Only what the benchmarks import (jaxrecon is used from this checkout, not installed).
  run "$python" -m pip install -q "$jax_spec" "numpy>=1.26" scipy "scikit-learn>=1.3" \
    "tqdm>=4.60" "matplotlib>=3.7"
fi

if [[ "$backend" == gpu ]]; then
  run "$python" -c 'import jax, sys; print("jax", jax.__version__, jax.devices()); sys.exit(jax.default_backend() != "gpu")'
fi

run mkdir -p "$out_dir"
run "$python" benchmarks/run.py --quick --dtype float64 --json "$out_dir/bench_float64.json" \
  ${extra_args[@]+"${extra_args[@]}"}
run "$python" benchmarks/run.py --quick --dtype float32 \
  --reference-from "$out_dir/bench_float64.json" --json "$out_dir/bench_float32.json" \
  ${extra_args[@]+"${extra_args[@]}"}
echo "gpu.sh: $backend results in $out_dir/bench_float64.json and $out_dir/bench_float32.json"
