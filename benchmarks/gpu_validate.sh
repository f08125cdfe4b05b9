#!/usr/bin/env bash
# GPU validation in one prepared run: the CuPy kernels' correctness tests, then `infersim validate
# --device gpu`, writing the CSV, summary and plots to the folder given (default benchmarks/results/gpu).
# Installs nothing: it needs numpy, numba, cupy, matplotlib and pyyaml, which the GPU image has; the
# simulator's simpy and pydantic are not needed. Runs from the repository root without an install.
# It calibrates the GPU, then validates against the registry spec and against the calibrated one, on the
# quick sweep (under 8 minutes on an H100); pass --full as the second argument for the full sweeps.
# It also times cuBLAS fp16 GEMMs of Llama layer shapes (the `gemm` family) against the tile model.
# Attention is timed on the tensor-core kernel (kernels/cuda/attention_mma.cu, fp16) and top-p below the SM
# count on the split-row kernel (top_p_split.cu); both were written without a GPU (issue 12), so their
# correctness tests run first, against the references and the kernels' NumPy emulations: a kernel that
# fails to compile keeps its validation rows with the error as their explanation, and the run goes on.
# Each CUDA kernel's prediction is on the SMs its grid occupies (kernels/launch.py).
# It writes 14 files; where only a few files come back from a remote GPU machine, pack them, e.g.
#   benchmarks/gpu_validate.sh /tmp/h100 && tar -czf "$OUT/h100.tgz" -C /tmp h100
set -euo pipefail
cd "$(dirname "$0")/.."
root="$PWD"
sweep="--quick"
[ "${2:-}" = "--full" ] && sweep=""
out="$(realpath -m "${1:-benchmarks/results/gpu}")"
mkdir -p "$out"
# The source tree maps to the package the way pyproject.toml does, without installing it.
shim="$(mktemp -d)"
mkdir -p "$shim/infersim"
for f in infersim/*.py; do ln -s "$PWD/$f" "$shim/infersim/"; done
ln -s "$PWD/roofline" "$shim/infersim/roofline"
ln -s "$PWD/kernels" "$shim/infersim/kernels"
ln -s "$PWD/sim" "$shim/infersim/sim"
if ! python3 -c "import pytest" 2>/dev/null; then  # the tests use only pytest's skip marker and raises
    cat > "$shim/pytest.py" <<'SHIM'
import contextlib
import re


class _Mark:
    def skipif(self, *args, **kwargs):
        return lambda f: f


mark = _Mark()


@contextlib.contextmanager
def raises(kind, match=None):
    try:
        yield
    except kind as err:
        if match and not re.search(match, str(err)):
            raise AssertionError(f"{err!r} does not match {match!r}") from err
    else:
        raise AssertionError(f"did not raise {kind.__name__}")
SHIM
fi
export PYTHONPATH="$shim${PYTHONPATH:+:$PYTHONPATH}"
cd "$shim"  # python -m puts the working directory first on sys.path: it must not be the source tree
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/device.txt"
set +e
INFERSIM_ROOT="$root" python3 - <<'PY' 2>&1 | tee "$out/correctness.txt"
import os, sys, traceback
sys.argv = ["gpu-tests"]
import importlib.util, pathlib
spec = importlib.util.spec_from_file_location("t", pathlib.Path(os.environ["INFERSIM_ROOT"]) / "tests/test_kernels_gpu.py")
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
failed = 0
for name in sorted(n for n in dir(mod) if n.startswith("test_")):
    try:
        getattr(mod, name)()
        print(f"PASS {name}")
    except Exception:
        failed += 1
        print(f"FAIL {name}")
        traceback.print_exc()
sys.exit(1 if failed else 0)
PY
tests_status=${PIPESTATUS[0]}
set -e
[ "$tests_status" = 0 ] || echo "some GPU kernels disagree with their references: see $out/correctness.txt"
timeout 120 python3 -m infersim.cli calibrate --device gpu --out "$out/hardware-calibrated.yaml" 2>&1 | tee "$out/calibrate.txt" || true
timeout 300 python3 -m infersim.cli validate --device gpu --out "$out/registry" $sweep | tee "$out/validate-registry.txt"
if [ -s "$out/hardware-calibrated.yaml" ]; then
    timeout 300 python3 -m infersim.cli validate --device gpu --out "$out/calibrated" \
        --hardware "$out/hardware-calibrated.yaml" $sweep | tee "$out/validate-calibrated.txt"
fi
